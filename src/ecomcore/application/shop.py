"""The Shop: the application service every caller goes through.

A thin façade: each command method takes typed keyword parameters, validates them into a
command (``InvalidCommand`` before anything is touched) and hands it to the handler of its
area (``ecomcore.application.handlers``), which runs in one transaction, again when it
loses an optimistic-concurrency race (``unit_of_work.transact``). Queries load aggregates
as they are now, or as they were at a version.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, overload
from uuid import UUID

from pydantic import BaseModel

from ecomcore.application import commands as cmd
from ecomcore.application.commands import CartItem, validated
from ecomcore.application.handlers import after_sales, catalogue, checkout, coupons, payment, shipping, stock, sweeper
from ecomcore.application.queries import AggregateId, Id, MaybeId, MaybeMoment, MaybeVersion, checked
from ecomcore.application.receipts import CheckoutReceipt, PaymentReceipt, RefundReceipt
from ecomcore.application.unit_of_work import UnitOfWork, transact
from ecomcore.domain.after_sales import RefundableSummary, RefundRecord, ReturnCase
from ecomcore.domain.aggregate import Aggregate
from ecomcore.domain.catalogue import Catalogue, Merchant, Promotion, Sku, Warehouse
from ecomcore.domain.checkout import CancelReason, Checkout
from ecomcore.domain.coupon import Coupon, CouponCampaign, IssueChannel, Validity
from ecomcore.domain.errors import NotFound
from ecomcore.domain.order import Order
from ecomcore.domain.pricing import CouponTerms, FreightTemplate, PromotionTerms
from ecomcore.domain.recommendation import Recommendation
from ecomcore.domain.shipment import Shipment
from ecomcore.domain.stock_item import StockItem, stock_item_id
from ecomcore.infrastructure.catalogue import open_catalogue
from ecomcore.infrastructure.clock import Clock, SystemClock
from ecomcore.infrastructure.due_work import DueWork
from ecomcore.infrastructure.log_index import CouponOwners
from ecomcore.infrastructure.settings import Settings
from ecomcore.infrastructure.store import EventStore, store_errors

#: A command or a catalogue value.
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
P = ParamSpec("P")

#: Units by order line number, e.g. ``{1: 2, 3: 1}``.
LineUnits = Mapping[int, int]
_NO_UNITS: LineUnits = MappingProxyType({})
#: A cart item: a ``CartItem`` or a mapping with its fields (``{"sku_id": …, "quantity": …}``).
CartEntry = CartItem | Mapping[str, Any]


class Shop:
    """Open a shop on an event store URL (default: a SQLite file) and send it commands.

    Every command takes keyword arguments; the four catalogue registrations also take the
    catalogue value itself (a ``Sku``, ``Warehouse``, ``Merchant`` or ``Promotion``).
    """

    def __init__(
        self,
        store_url: str | None = None,
        *,
        clock: Clock | None = None,
        settings: Settings | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        settings = settings or Settings()
        if store_url is not None:
            settings = settings.model_copy(update={"store_url": store_url})
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.store = EventStore(settings, snapshotting=(StockItem, CouponCampaign))
        self.catalogue: Catalogue = catalogue or open_catalogue(settings.store_url)
        self._coupon_owners = CouponOwners(self.store)
        #: What may be due for the sweeper, followed incrementally from the log.
        self._due_work = DueWork(self.store)

    def close(self) -> None:
        self.store.close()
        dispose = getattr(self.catalogue, "dispose", None)
        if dispose:
            dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _unit_of_work(self, now: datetime | None = None, *, command: bool = True) -> UnitOfWork:
        return UnitOfWork(
            self.store,
            now=now or self.clock.now(),
            catalogue=self.catalogue.current(),
            settings=self.settings,
            locks=self.store.locks() if command else None,
        )

    def _transact(self, handler: Callable[Concatenate[UnitOfWork, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        return transact(self._unit_of_work, self.settings.max_attempts, handler, *args, **kwargs)

    def _run(self, handler: Callable[[UnitOfWork, M], R], command_type: type[M], **fields: Any) -> R:
        """Validate the command from its fields, then run its handler in a transaction."""
        return self._transact(handler, validated(command_type, **fields))

    def _read(self, query: Callable[[UnitOfWork], R], now: datetime | None = None) -> R:
        """Run a query on the store as it is now; what it borrowed goes back to the cache.

        A failure of the store is raised as its typed error (``StoreUnavailable``, …)."""
        with store_errors():
            uow = self._unit_of_work(now, command=False)
            try:
                return query(uow)
            finally:
                uow.end()

    def _load(
        self, cls: type[Aggregate], aggregate_id: UUID, version: int | None = None, *, query: str = "load"
    ) -> Any:
        """The aggregate as it is now or at ``version``, after checking the arguments of ``query``
        (the public method's name, e.g. ``order``: a bad id is reported as ``order_id``)."""
        id_name = "aggregate_id" if query == "load" else f"{query}_id"
        aggregate_id, version = checked(
            query, **{id_name: (AggregateId, aggregate_id), "version": (MaybeVersion, version)}
        )
        if version is None:
            # The caller gets a copy: the cached aggregate stays the next command's.
            return self._read(lambda uow: copy.deepcopy(uow.get(cls, aggregate_id)))
        with store_errors():
            found = self.store.load(aggregate_id, version=version)
        if not isinstance(found, cls):
            raise NotFound(f"{aggregate_id} is a {type(found).__name__}, not a {cls.__name__}")
        return found

    def _moment(self, query: str, now: datetime | None) -> datetime:
        """``now`` checked (aware, within bounds), or the clock's now when it is left out."""
        (checked_now,) = checked(query, now=(MaybeMoment, now))
        return checked_now or self.clock.now()

    # ------------------------------------------------------------------ catalogue

    @overload
    def register_sku(self, sku: Sku, /) -> Sku: ...
    @overload
    def register_sku(
        self, /, *, sku_id: str, spu_id: str, merchant_id: str, category_path: Sequence[str], brand_id: str,
        unit_price: int, weight_g: int, title: str,
    ) -> Sku: ...
    def register_sku(self, sku: Sku | None = None, /, **fields: Any) -> Sku:
        value = _given_or_built(Sku, sku, fields)
        with store_errors():
            return catalogue.register_sku(self.catalogue, value)

    @overload
    def register_warehouse(self, warehouse: Warehouse, /) -> Warehouse: ...
    @overload
    def register_warehouse(self, /, *, warehouse_id: str, region: str, priority: int) -> Warehouse: ...
    def register_warehouse(self, warehouse: Warehouse | None = None, /, **fields: Any) -> Warehouse:
        value = _given_or_built(Warehouse, warehouse, fields)
        with store_errors():
            return catalogue.register_warehouse(self.catalogue, value)

    @overload
    def register_merchant(self, merchant: Merchant, /) -> Merchant: ...
    @overload
    def register_merchant(
        self, /, *, merchant_id: str, name: str, freight: FreightTemplate | Mapping[str, Any] | None = None
    ) -> Merchant: ...
    def register_merchant(self, merchant: Merchant | None = None, /, **fields: Any) -> Merchant:
        value = _given_or_built(Merchant, merchant, fields)
        with store_errors():
            return catalogue.register_merchant(self.catalogue, value)

    @overload
    def add_promotion(self, promotion: Promotion, /) -> Promotion: ...
    @overload
    def add_promotion(
        self, /, *, promotion_id: str, terms: PromotionTerms | Mapping[str, Any], starts_at: datetime, ends_at: datetime
    ) -> Promotion: ...
    def add_promotion(self, promotion: Promotion | None = None, /, **fields: Any) -> Promotion:
        value = _given_or_built(Promotion, promotion, fields)
        with store_errors():
            return catalogue.add_promotion(self.catalogue, value)

    # ------------------------------------------------------------------ stock

    def set_up_stock(
        self, *, sku_id: str, warehouse_id: str, safety_stock: int = 0, reorder_quantity: int = 0
    ) -> UUID:
        """Create the StockItem of a SKU in a warehouse, or update its safety stock."""
        return self._run(
            stock.set_up_stock, cmd.SetUpStock,
            sku_id=sku_id, warehouse_id=warehouse_id, safety_stock=safety_stock, reorder_quantity=reorder_quantity,
        )

    def receive_stock(self, *, sku_id: str, warehouse_id: str, quantity: int, reference: str) -> int:
        """Inbound receipt (入库); returns the new on-hand quantity."""
        return self._run(
            stock.receive_stock, cmd.ReceiveStock,
            sku_id=sku_id, warehouse_id=warehouse_id, quantity=quantity, reference=reference,
        )

    def count_stock(self, *, sku_id: str, warehouse_id: str, counted_quantity: int, reason: str = "stocktake") -> int:
        """Stocktake (盘点); returns the shortage it revealed (0 if none)."""
        return self._run(
            stock.count_stock, cmd.CountStock,
            sku_id=sku_id, warehouse_id=warehouse_id, counted_quantity=counted_quantity, reason=reason,
        )

    def write_off_stock(self, *, sku_id: str, warehouse_id: str, quantity: int, reason: str) -> int:
        """Units leave stock for good (damaged, lost); returns the new on-hand quantity."""
        return self._run(
            stock.write_off_stock, cmd.WriteOffStock,
            sku_id=sku_id, warehouse_id=warehouse_id, quantity=quantity, reason=reason,
        )

    def stock_item(self, sku_id: str, warehouse_id: str, *, version: int | None = None) -> StockItem:
        sku_id, warehouse_id = checked("stock_item", sku_id=(Id, sku_id), warehouse_id=(Id, warehouse_id))
        return self._load(StockItem, stock_item_id(sku_id, warehouse_id), version, query="stock_item")

    def available(self, sku_id: str, warehouse_id: str | None = None) -> int:
        """Units that can be reserved now, in one warehouse or over all of them."""
        sku_id, warehouse_id = checked("available", sku_id=(Id, sku_id), warehouse_id=(MaybeId, warehouse_id))
        return self._read(lambda uow: stock.available(uow, sku_id, warehouse_id))

    # ------------------------------------------------------------------ coupons

    def create_campaign(
        self,
        *,
        name: str,
        terms: CouponTerms | Mapping[str, Any],
        claim_starts_at: datetime,
        claim_ends_at: datetime,
        validity: Validity | Mapping[str, Any],
        total_quantity: int,
        per_customer_limit: int = 1,
        campaign_id: UUID | None = None,
    ) -> UUID:
        """A coupon campaign; creating the same ``campaign_id`` again changes nothing."""
        return self._run(
            coupons.create_campaign, cmd.CreateCampaign,
            name=name, terms=terms, claim_starts_at=claim_starts_at, claim_ends_at=claim_ends_at, validity=validity,
            total_quantity=total_quantity, per_customer_limit=per_customer_limit, campaign_id=campaign_id,
        )

    def issue_coupon(self, *, campaign_id: UUID, customer_id: str, channel: IssueChannel = IssueChannel.CLAIM) -> UUID:
        """One coupon of the campaign for the customer; returns its id."""
        return self._run(
            coupons.issue_coupon, cmd.IssueCoupon, campaign_id=campaign_id, customer_id=customer_id, channel=channel
        )

    def recommend_coupons(
        self, customer_id: str, cart: Iterable[CartEntry], now: datetime | None = None
    ) -> Recommendation:
        """The customer's usable coupons that save most on this cart (spec §5.3); changes nothing.

        One merchant coupon per merchant order and one platform coupon per checkout; ties go
        to the coupon that expires first, then the lower id.  Pass the result's coupon ids
        to ``checkout`` to use them.
        """
        if isinstance(cart, (str, bytes)) or not isinstance(cart, Iterable):
            items: Any = cart  # refused by the command's validation below, as a cart
        else:
            items = tuple(cart)
        query = validated(cmd.RecommendCoupons, customer_id=customer_id, items=items)
        at = self._moment("recommend_coupons", now)
        return self._read(lambda uow: coupons.recommend_coupons(uow, query, self._coupon_owners), at)

    def coupon_ids_of(self, customer_id: str) -> list[UUID]:
        """Every coupon ever issued to a customer, oldest first."""
        (customer_id,) = checked("coupon_ids_of", customer_id=(Id, customer_id))
        with store_errors():
            return self._coupon_owners.coupons_of(customer_id)

    def coupon(self, coupon_id: UUID, *, version: int | None = None) -> Coupon:
        return self._load(Coupon, coupon_id, version, query="coupon")

    def campaign(self, campaign_id: UUID) -> CouponCampaign:
        return self._load(CouponCampaign, campaign_id, query="campaign")

    # ------------------------------------------------------------------ checkout and payment

    def checkout(
        self,
        *,
        customer_id: str,
        items: Sequence[CartEntry],
        shipping_address: str,
        merchant_coupon_ids: Sequence[UUID] = (),
        platform_coupon_id: UUID | None = None,
        client_request_id: str | None = None,
    ) -> CheckoutReceipt:
        """Split the cart by merchant, reserve all stock and lock the coupons, all or nothing.

        Retrying with the same ``client_request_id`` returns the first checkout.
        """
        return self._run(
            checkout.place_checkout, cmd.PlaceCheckout,
            customer_id=customer_id, items=items, shipping_address=shipping_address,
            merchant_coupon_ids=merchant_coupon_ids, platform_coupon_id=platform_coupon_id,
            client_request_id=client_request_id,
        )

    def pay(self, *, checkout_id: UUID, payment_id: str, amount: int, provider_txn: str) -> PaymentReceipt:
        """Record the payment of a whole checkout; the same payment id again is a no-op."""
        return self._run(
            payment.pay_checkout, cmd.PayCheckout,
            checkout_id=checkout_id, payment_id=payment_id, amount=amount, provider_txn=provider_txn,
        )

    def cancel(self, *, checkout_id: UUID, reason: CancelReason = CancelReason.CUSTOMER) -> None:
        """Cancel a whole checkout before payment: stock released, coupons unlocked."""
        self._run(checkout.cancel_checkout, cmd.CancelCheckout, checkout_id=checkout_id, reason=reason)

    def confirm_receipt(self, *, order_id: UUID, customer_id: str) -> None:
        """The customer confirms the goods arrived (确认收货): the order completes."""
        self._run(checkout.confirm_receipt, cmd.ConfirmReceipt, order_id=order_id, customer_id=customer_id)

    def checkout_of(self, checkout_id: UUID) -> Checkout:
        return self._load(Checkout, checkout_id, query="checkout")

    def order(self, order_id: UUID, *, version: int | None = None) -> Order:
        return self._load(Order, order_id, version, query="order")

    # ------------------------------------------------------------------ time-driven

    def expire_overdue_orders(self, now: datetime | None = None) -> list[UUID]:
        """Cancel every unpaid checkout past its payment deadline; returns their ids."""
        at = self._moment("expire_overdue_orders", now)
        with store_errors():
            return sweeper.expire_overdue_checkouts(self._due_work, self._transact, at)

    def expire_coupons(self, now: datetime | None = None) -> list[UUID]:
        """Mark available coupons past their validity as expired."""
        at = self._moment("expire_coupons", now)
        with store_errors():
            return sweeper.expire_coupons(self._due_work, self._transact, at)

    def complete_orders(self, now: datetime | None = None) -> list[UUID]:
        """Complete delivered orders whose after-sales window has passed."""
        at = self._moment("complete_orders", now)
        with store_errors():
            return sweeper.complete_orders(self._due_work, self._transact, at, self.settings.after_sales_window)

    def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """All time-driven work, once: for a scheduler to call."""
        now = self._moment("sweep", now)
        return {
            "expired_checkouts": len(self.expire_overdue_orders(now)),
            "expired_coupons": len(self.expire_coupons(now)),
            "completed_orders": len(self.complete_orders(now)),
        }

    # ------------------------------------------------------------------ shipping

    def dispatch(self, *, shipment_id: UUID, carrier: str, tracking_number: str) -> None:
        """The parcel leaves the warehouse (出库): its units leave stock."""
        self._run(
            shipping.dispatch_shipment, cmd.DispatchShipment,
            shipment_id=shipment_id, carrier=carrier, tracking_number=tracking_number,
        )

    def update_tracking(self, *, shipment_id: UUID, occurred_at: datetime, status: str, location: str = "") -> bool:
        """A carrier's scan; returns whether it was new."""
        return self._run(
            shipping.update_tracking, cmd.UpdateTracking,
            shipment_id=shipment_id, occurred_at=occurred_at, status=status, location=location,
        )

    def deliver(self, *, shipment_id: UUID) -> None:
        self._run(shipping.deliver_shipment, cmd.DeliverShipment, shipment_id=shipment_id)

    def report_delivery_failure(self, *, shipment_id: UUID, reason: str) -> None:
        self._run(shipping.report_delivery_failure, cmd.ReportDeliveryFailure, shipment_id=shipment_id, reason=reason)

    def shipment(self, shipment_id: UUID, *, version: int | None = None) -> Shipment:
        return self._load(Shipment, shipment_id, version, query="shipment")

    # ------------------------------------------------------------------ after-sales (售后)

    def refund_only(
        self, *, order_id: UUID, refund_id: str, lines: LineUnits, reason: str, shipment_id: UUID | None = None
    ) -> RefundReceipt:
        """仅退款: refund units whose goods do not come back, priced from the order's history.

        ``refund_id`` is the payment provider's: the same id again returns the same receipt.
        ``shipment_id`` takes the units from that parcel only (the one that was lost, say).
        """
        return self._run(
            after_sales.refund_only, cmd.RefundOnly,
            order_id=order_id, refund_id=refund_id, lines=lines, reason=reason, shipment_id=shipment_id,
        )

    def request_return(
        self, *, order_id: UUID, customer_id: str, lines: LineUnits, reason: str, request_id: str | None = None
    ) -> UUID:
        """退货: the customer asks to send delivered units back; returns the return id.

        Retrying with the same ``request_id`` names the same return.
        """
        return self._run(
            after_sales.request_return, cmd.RequestReturn,
            order_id=order_id, customer_id=customer_id, lines=lines, reason=reason, request_id=request_id,
        )

    def approve_return(self, *, order_id: UUID, return_id: UUID) -> None:
        self._run(after_sales.approve_return, cmd.ApproveReturn, order_id=order_id, return_id=return_id)

    def reject_return(self, *, order_id: UUID, return_id: UUID, reason: str) -> None:
        self._run(after_sales.reject_return, cmd.RejectReturn, order_id=order_id, return_id=return_id, reason=reason)

    def ship_return(self, *, order_id: UUID, return_id: UUID, carrier: str, tracking_number: str) -> UUID:
        """The customer sends an approved return with a carrier; returns the return shipment's id."""
        return self._run(
            after_sales.ship_return, cmd.ShipReturn,
            order_id=order_id, return_id=return_id, carrier=carrier, tracking_number=tracking_number,
        )

    def receive_return(
        self, *, order_id: UUID, return_id: UUID, sellable: LineUnits = _NO_UNITS, damaged: LineUnits = _NO_UNITS
    ) -> None:
        """Check a return in: sellable units go back into stock, damaged ones are written off."""
        self._run(
            after_sales.receive_return, cmd.ReceiveReturn,
            order_id=order_id, return_id=return_id, sellable=sellable, damaged=damaged,
        )

    def refund_return(self, *, order_id: UUID, return_id: UUID, refund_id: str) -> RefundReceipt:
        """Refund a received return; the same refund id again is a no-op."""
        return self._run(
            after_sales.refund_return, cmd.RefundReturn, order_id=order_id, return_id=return_id, refund_id=refund_id
        )

    def refundable(self, order_id: UUID) -> RefundableSummary:
        """Each line's net paid, refunded and still refundable, computed from the order's history."""
        return self.order(order_id).refundable()

    def refunds(self, order_id: UUID) -> list[RefundRecord]:
        """The order's refund history, late-payment refunds included, oldest first."""
        return self.order(order_id).refund_history

    def return_case(self, order_id: UUID, return_id: UUID) -> ReturnCase:
        (return_id,) = checked("return_case", return_id=(AggregateId, return_id))
        return self.order(order_id).return_case(return_id)


def _given_or_built(value_type: type[M], given: M | None, fields: dict[str, Any]) -> M:
    """The catalogue value as given, or built (and validated) from its fields."""
    if given is None:
        return validated(value_type, **fields)
    if fields:
        raise TypeError(f"pass either a {value_type.__name__} or its fields, not both")
    if not isinstance(given, value_type):
        raise TypeError(f"expected {value_type.__name__}, got {type(given).__name__}")
    return given
