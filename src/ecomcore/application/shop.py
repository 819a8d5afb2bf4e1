"""The Shop: the application service every caller goes through.

Each command validates its input, loads the aggregates it needs, applies the rules
and saves every changed aggregate in one transaction.  A command that loses an
optimistic-concurrency race is run again from the start, a bounded number of times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4, uuid5

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic
from pydantic import BaseModel, ValidationError

from ecomcore.application import commands as cmd
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.after_sales import RefundableSummary, RefundKind, RefundPlan, RefundRecord, ReturnCase
from ecomcore.domain.aggregate import Aggregate, DomainEvent
from ecomcore.domain.allocation import Allocation, allocate
from ecomcore.domain.catalogue import Catalogue, Merchant, Promotion, Sku, Warehouse
from ecomcore.domain.checkout import CancelReason, Checkout, checkout_id_for_request
from ecomcore.domain.coupon import Coupon, CouponCampaign, CouponState
from ecomcore.domain.errors import (
    ConcurrencyConflict,
    InvalidCommand,
    NotFound,
    PromotionConflict,
)
from ecomcore.domain.order import Order, OrderLine, OrderState, order_id_for
from ecomcore.domain.parcels import PlannedParcel
from ecomcore.domain.pricing import (
    AppliedCoupon,
    CouponSlots,
    MerchantCart,
    PricedItem,
    best_promotion,
    price_checkout,
)
from ecomcore.domain.recommendation import CandidateCoupon, Recommendation, recommend
from ecomcore.domain.renames import former_topics
from ecomcore.domain.shipment import (
    ParcelItem,
    Shipment,
    TrackingUpdate,
    plan_parcels,
    return_shipment_id_for,
    shipment_id_for,
)
from ecomcore.domain.stock_item import ReleaseReason, StockItem, stock_item_id
from ecomcore.domain.values import require_amount_within
from ecomcore.infrastructure.catalogue import open_catalogue
from ecomcore.infrastructure.clock import Clock, SystemClock
from ecomcore.infrastructure.log_index import CouponOwners
from ecomcore.infrastructure.settings import Settings
from ecomcore.infrastructure.store import EventStore

C = TypeVar("C", bound=BaseModel)
R = TypeVar("R")


def _validated(command_type: type[C], given: C | None, fields: dict[str, Any]) -> C:
    """The command (or catalogue value) as given, or built from keyword fields."""
    if given is not None:
        if fields:
            raise TypeError("pass either a command object or its fields, not both")
        if not isinstance(given, command_type):
            raise TypeError(f"expected {command_type.__name__}, got {type(given).__name__}")
        return given
    try:
        return command_type.model_validate(fields)
    except ValidationError as error:
        raise InvalidCommand(command_type.__name__, error.errors(include_url=False, include_context=False)) from None


class Shop:
    """Open a shop on an event store URL (default: a SQLite file) and send it commands."""

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

    def close(self) -> None:
        self.store.close()
        dispose = getattr(self.catalogue, "dispose", None)
        if dispose:
            dispose()

    def __enter__(self) -> Shop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _transact(self, work: Callable[[UnitOfWork, datetime], R]) -> R:
        """Run ``work`` and save what it changed atomically, retrying on conflicts."""
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            uow = UnitOfWork(self.store)
            result = work(uow, self.clock.now())
            try:
                uow.commit()
            except IntegrityError as conflict:
                if attempt == attempts:
                    raise ConcurrencyConflict(
                        f"gave up after {attempts} attempts: other writers kept changing the same records"
                    ) from conflict
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            return result
        raise AssertionError("unreachable")

    def _load(self, cls: type[Aggregate], aggregate_id: UUID, version: int | None = None) -> Any:
        uow = UnitOfWork(self.store)
        if version is None:
            return uow.get(cls, aggregate_id)
        found = self.store.load(aggregate_id, version=version)
        if not isinstance(found, cls):
            raise NotFound(f"{aggregate_id} is not a {cls.__name__}")
        return found

    # ------------------------------------------------------------------ catalogue

    def register_sku(self, sku: Sku | None = None, /, **fields: Any) -> Sku:
        sku = _validated(Sku, sku, fields)
        if self.catalogue.merchant(sku.merchant_id) is None:
            raise NotFound(f"sku {sku.sku_id} names merchant {sku.merchant_id}, which is not registered")
        self.catalogue.add_sku(sku)
        return sku

    def register_warehouse(self, warehouse: Warehouse | None = None, /, **fields: Any) -> Warehouse:
        warehouse = _validated(Warehouse, warehouse, fields)
        self.catalogue.add_warehouse(warehouse)
        return warehouse

    def register_merchant(self, merchant: Merchant | None = None, /, **fields: Any) -> Merchant:
        merchant = _validated(Merchant, merchant, fields)
        self.catalogue.add_merchant(merchant)
        return merchant

    def add_promotion(self, promotion: Promotion | None = None, /, **fields: Any) -> Promotion:
        promotion = _validated(Promotion, promotion, fields)
        if self.catalogue.merchant(promotion.terms.merchant_id) is None:
            raise NotFound(f"merchant {promotion.terms.merchant_id} is not registered")
        for other in self.catalogue.promotions(promotion.terms.merchant_id):
            if promotion.conflicts_with(other):
                raise PromotionConflict(
                    f"promotion {promotion.promotion_id} overlaps promotion {other.promotion_id} "
                    f"({other.starts_at:%Y-%m-%d %H:%M} to {other.ends_at:%Y-%m-%d %H:%M}) in time and goods, "
                    "and one of them is exclusive",
                    other_promotion_id=other.promotion_id,
                )
        self.catalogue.add_promotion(promotion)
        return promotion

    def _sku(self, sku_id: str) -> Sku:
        sku = self.catalogue.sku(sku_id)
        if sku is None:
            raise NotFound(f"sku {sku_id} is not in the catalogue")
        return sku

    def _warehouse(self, warehouse_id: str) -> Warehouse:
        warehouse = self.catalogue.warehouse(warehouse_id)
        if warehouse is None:
            raise NotFound(f"warehouse {warehouse_id} is not registered")
        return warehouse

    # ------------------------------------------------------------------ stock

    def set_up_stock(self, command: cmd.SetUpStock | None = None, /, **fields: Any) -> UUID:
        """Create the StockItem of a SKU in a warehouse, or update its safety stock."""
        c = _validated(cmd.SetUpStock, command, fields)
        self._sku(c.sku_id), self._warehouse(c.warehouse_id)

        def work(uow: UnitOfWork, now: datetime) -> UUID:
            item = uow.find(StockItem, stock_item_id(c.sku_id, c.warehouse_id))
            if item is None:
                item = uow.add(
                    StockItem.set_up(
                        c.sku_id, c.warehouse_id, now, safety_stock=c.safety_stock, reorder_quantity=c.reorder_quantity
                    )
                )
            else:
                item.set_safety_stock(c.safety_stock, c.reorder_quantity, now)
            return item.id

        return self._transact(work)

    def _stock_item(self, uow: UnitOfWork, sku_id: str, warehouse_id: str, now: datetime) -> StockItem:
        item = uow.find(StockItem, stock_item_id(sku_id, warehouse_id))
        if item is None:
            self._sku(sku_id), self._warehouse(warehouse_id)
            item = uow.add(StockItem.register(sku_id, warehouse_id, now))
        return item

    def receive_stock(self, command: cmd.ReceiveStock | None = None, /, **fields: Any) -> int:
        """Inbound receipt (入库); returns the new on-hand quantity."""
        c = _validated(cmd.ReceiveStock, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> int:
            item = self._stock_item(uow, c.sku_id, c.warehouse_id, now)
            item.receive(c.quantity, c.reference, now)
            return item.on_hand

        return self._transact(work)

    def count_stock(self, command: cmd.CountStock | None = None, /, **fields: Any) -> int:
        """Stocktake (盘点); returns the shortage it revealed (0 if none)."""
        c = _validated(cmd.CountStock, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> int:
            item = self._stock_item(uow, c.sku_id, c.warehouse_id, now)
            shortage = max(0, item.reserved(now) - c.counted_quantity)
            item.count(c.counted_quantity, c.reason, now)
            return shortage

        return self._transact(work)

    def write_off_stock(self, command: cmd.WriteOffStock | None = None, /, **fields: Any) -> int:
        c = _validated(cmd.WriteOffStock, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> int:
            item = uow.get(StockItem, stock_item_id(c.sku_id, c.warehouse_id), "stock item")
            item.write_off(c.quantity, c.reason, now)
            return item.on_hand

        return self._transact(work)

    def stock_item(self, sku_id: str, warehouse_id: str, *, version: int | None = None) -> StockItem:
        return self._load(StockItem, stock_item_id(sku_id, warehouse_id), version)

    def available(self, sku_id: str, warehouse_id: str | None = None) -> int:
        """Units that can be reserved now, in one warehouse or over all of them."""
        now = self.clock.now()
        uow = UnitOfWork(self.store)
        warehouses = [warehouse_id] if warehouse_id else [w.warehouse_id for w in self.catalogue.warehouses()]
        total = 0
        for wid in warehouses:
            item = uow.find(StockItem, stock_item_id(sku_id, wid))
            total += item.available(now) if item else 0
        return total

    # ------------------------------------------------------------------ coupons

    def create_campaign(self, command: cmd.CreateCampaign | None = None, /, **fields: Any) -> UUID:
        c = _validated(cmd.CreateCampaign, command, fields)
        if not c.terms.is_platform and self.catalogue.merchant(c.terms.funding) is None:
            raise NotFound(f"campaign is funded by merchant {c.terms.funding}, which is not registered")
        campaign_id = c.campaign_id or uuid4()

        def work(uow: UnitOfWork, now: datetime) -> UUID:
            if uow.find(CouponCampaign, campaign_id) is not None:
                return campaign_id  # creating the same campaign again changes nothing
            uow.add(
                CouponCampaign.create(
                    campaign_id,
                    now,
                    **c.model_dump(exclude={"campaign_id"}),
                )
            )
            return campaign_id

        return self._transact(work)

    def issue_coupon(self, command: cmd.IssueCoupon | None = None, /, **fields: Any) -> UUID:
        c = _validated(cmd.IssueCoupon, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> UUID:
            campaign = uow.get(CouponCampaign, c.campaign_id, "coupon campaign")
            coupon = uow.add(campaign.issue(c.customer_id, c.channel, now))
            return coupon.id

        return self._transact(work)

    def coupon(self, coupon_id: UUID, *, version: int | None = None) -> Coupon:
        return self._load(Coupon, coupon_id, version)

    def campaign(self, campaign_id: UUID) -> CouponCampaign:
        return self._load(CouponCampaign, campaign_id)

    # ------------------------------------------------------------------ checkout

    def checkout(self, command: cmd.Checkout | None = None, /, **fields: Any) -> cmd.CheckoutReceipt:
        """Split the cart by merchant, reserve all stock and lock the coupons, all or nothing."""
        c = _validated(cmd.Checkout, command, fields)
        checkout_id = checkout_id_for_request(c.client_request_id) if c.client_request_id else uuid4()
        quantities, by_merchant = self._split_cart(c.items)
        warehouses = self.catalogue.warehouses()

        def work(uow: UnitOfWork, now: datetime) -> cmd.CheckoutReceipt:
            existing = uow.find(Checkout, checkout_id)
            if existing is not None:
                return _checkout_receipt(existing)
            deadline = now + self.settings.payment_timeout
            allocations = self._allocate(uow, by_merchant, quantities, warehouses, now)
            coupons = self._coupons_for(uow, c, set(by_merchant), now)
            price = price_checkout(self._carts(by_merchant, quantities, coupons, now), coupons.platform)
            # One Pay settles the checkout, and no amount may exceed MAX_AMOUNT; this also
            # bounds freight, which the inputs alone do not (see ecomcore.domain.values).
            require_amount_within("the checkout's payable", price.payable)
            platform_coupon_id = c.platform_coupon_id
            order_ids = tuple(order_id_for(checkout_id, merchant_id) for merchant_id in by_merchant)
            for order_id, order_price in zip(order_ids, price.orders, strict=True):
                lines = tuple(
                    OrderLine(
                        line_no=n,
                        sku=self._sku(line.key),
                        quantity=quantities[line.key],
                        gross=line.gross,
                        promotion_discount=line.promotion_discount,
                        merchant_coupon_discount=line.merchant_coupon_discount,
                        platform_coupon_discount=line.platform_coupon_discount,
                        net=line.net,
                        allocations=allocations[line.key],
                    )
                    for n, line in enumerate(order_price.lines, start=1)
                )
                for line in lines:
                    for allocation in line.allocations:
                        stock = uow.get(StockItem, stock_item_id(line.sku.sku_id, allocation.warehouse_id))
                        stock.reserve(order_id, allocation.quantity, deadline, now)
                merchant_coupon = coupons.merchant.get(order_price.merchant_id)
                uow.add(
                    Order.place(
                        order_id,
                        now,
                        checkout_id=checkout_id,
                        customer_id=c.customer_id,
                        merchant_id=order_price.merchant_id,
                        currency=self.settings.currency,
                        lines=lines,
                        promotion_id=order_price.promotion_id,
                        merchant_coupon_id=UUID(merchant_coupon.coupon_id) if merchant_coupon else None,
                        platform_coupon_id=platform_coupon_id if price.platform_coupon_discount else None,
                        freight=order_price.freight,
                        payable=order_price.payable,
                        payment_deadline=deadline,
                        shipping_address=c.shipping_address,
                    )
                )
            coupon_ids = (*c.merchant_coupon_ids, *([platform_coupon_id] if platform_coupon_id else []))
            for coupon_id in coupon_ids:
                coupon = uow.get(Coupon, coupon_id)
                locked_for = tuple(
                    oid
                    for oid, op in zip(order_ids, price.orders, strict=True)
                    if coupon.terms.is_platform or op.merchant_id == coupon.terms.funding
                )
                coupon.lock(c.customer_id, checkout_id, locked_for, now)
            checkout = uow.add(
                Checkout.place(
                    checkout_id,
                    now,
                    customer_id=c.customer_id,
                    order_ids=order_ids,
                    payable=price.payable,
                    payment_deadline=deadline,
                    client_request_id=c.client_request_id,
                    coupon_ids=coupon_ids,
                )
            )
            return _checkout_receipt(checkout)

        return self._transact(work)

    def _split_cart(self, items: tuple[cmd.CartItem, ...]) -> tuple[dict[str, int], dict[str, list[Sku]]]:
        """Quantities by SKU, and the cart's SKUs by merchant (first split)."""
        quantities: dict[str, int] = {}
        for item in items:
            quantities[item.sku_id] = quantities.get(item.sku_id, 0) + item.quantity
        by_merchant: dict[str, list[Sku]] = {}
        for sku_id in quantities:
            sku = self._sku(sku_id)
            by_merchant.setdefault(sku.merchant_id, []).append(sku)
        return quantities, by_merchant

    def _carts(
        self,
        by_merchant: dict[str, list[Sku]],
        quantities: dict[str, int],
        coupons: CouponSlots,
        now: datetime,
    ) -> list[MerchantCart]:
        carts = []
        for merchant_id, merchant_skus in by_merchant.items():
            items = tuple(_priced(sku, quantities[sku.sku_id]) for sku in merchant_skus)
            carts.append(
                MerchantCart(
                    merchant_id=merchant_id,
                    items=items,
                    promotion=best_promotion(self.catalogue.promotions(merchant_id), items, now),
                    coupon=coupons.merchant.get(merchant_id),
                    freight=self._merchant(merchant_id).freight,
                )
            )
        return carts

    def recommend_coupons(
        self, customer_id: str, cart: Iterable[cmd.CartItem | dict[str, Any]], now: datetime | None = None
    ) -> Recommendation:
        """The customer's usable coupons that save most on this cart (spec §5.3); changes nothing.

        One merchant coupon per merchant order and one platform coupon per checkout; ties go
        to the coupon that expires first, then the lower id.  Pass the result's coupon ids
        to ``checkout`` to use them.
        """
        query = _validated(cmd.RecommendCoupons, None, {"customer_id": customer_id, "items": tuple(cart)})
        now = now or self.clock.now()
        quantities, by_merchant = self._split_cart(query.items)
        uow = UnitOfWork(self.store)
        candidates = []
        for coupon_id in self.coupon_ids_of(query.customer_id):
            coupon = uow.get(Coupon, coupon_id)
            if coupon.usable_by(query.customer_id, now):
                assert coupon.terms is not None and coupon.valid_until is not None
                candidates.append(
                    CandidateCoupon(coupon_id=str(coupon.id), terms=coupon.terms, valid_until=coupon.valid_until)
                )
        return recommend(self._carts(by_merchant, quantities, CouponSlots(), now), candidates)

    def coupon_ids_of(self, customer_id: str) -> list[UUID]:
        """Every coupon ever issued to a customer, oldest first."""
        return self._coupon_owners.coupons_of(customer_id)

    def _merchant(self, merchant_id: str) -> Merchant:
        merchant = self.catalogue.merchant(merchant_id)
        if merchant is None:
            raise NotFound(f"merchant {merchant_id} is not registered")
        return merchant

    def _allocate(
        self,
        uow: UnitOfWork,
        by_merchant: dict[str, list[Sku]],
        quantities: dict[str, int],
        warehouses: list[Warehouse],
        now: datetime,
    ) -> dict[str, tuple[Allocation, ...]]:
        """What every warehouse has available of the cart's SKUs, allocated by the domain's rule."""
        available: dict[tuple[str, str], int] = {}
        for skus in by_merchant.values():
            for sku in skus:
                for warehouse in warehouses:
                    item = uow.find(StockItem, stock_item_id(sku.sku_id, warehouse.warehouse_id))
                    available[sku.sku_id, warehouse.warehouse_id] = item.available(now) if item else 0
        orders = [{sku.sku_id: quantities[sku.sku_id] for sku in skus} for skus in by_merchant.values()]
        return allocate(orders, warehouses, available)

    def _coupons_for(self, uow: UnitOfWork, c: cmd.Checkout, merchants: set[str], now: datetime) -> CouponSlots:
        """The chosen coupons, each checked usable by this customer now, in their slots."""
        merchant_coupons = [
            self._usable_coupon(uow, coupon_id, c.customer_id, now) for coupon_id in c.merchant_coupon_ids
        ]
        platform_coupon = (
            self._usable_coupon(uow, c.platform_coupon_id, c.customer_id, now)
            if c.platform_coupon_id is not None
            else None
        )
        return CouponSlots.fill(merchant_coupons, platform_coupon, merchants)

    def _usable_coupon(self, uow: UnitOfWork, coupon_id: UUID, customer_id: str, now: datetime) -> AppliedCoupon:
        coupon = uow.get(Coupon, coupon_id, "coupon")
        coupon.check_usable(customer_id, now)
        assert coupon.terms is not None
        return AppliedCoupon(coupon_id=str(coupon.id), terms=coupon.terms)

    def checkout_of(self, checkout_id: UUID) -> Checkout:
        return self._load(Checkout, checkout_id)

    def order(self, order_id: UUID, *, version: int | None = None) -> Order:
        return self._load(Order, order_id, version)

    def shipment(self, shipment_id: UUID, *, version: int | None = None) -> Shipment:
        return self._load(Shipment, shipment_id, version)

    # ------------------------------------------------------------------ payment

    def pay(self, command: cmd.Pay | None = None, /, **fields: Any) -> cmd.PaymentReceipt:
        """Record the payment of a whole checkout; the same payment id again is a no-op."""
        c = _validated(cmd.Pay, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> cmd.PaymentReceipt:
            checkout = uow.get(Checkout, c.checkout_id, "checkout")
            orders = [uow.get(Order, oid) for oid in checkout.order_ids]
            if checkout.recorded_payment(c.payment_id, c.amount):
                return _payment_receipt(checkout, orders, c.payment_id)
            if not checkout.takes_payment_on_time(now):
                return self._take_late_payment(uow, checkout, orders, c, now)
            checkout.mark_paid(c.payment_id, c.amount, c.provider_txn, now)
            for order in orders:
                order.pay(c.payment_id, order.payable, c.provider_txn, now)
                for line in order.lines:
                    for allocation in line.allocations:
                        stock = uow.get(StockItem, stock_item_id(line.sku.sku_id, allocation.warehouse_id))
                        stock.confirm(order.id, now)
                self._plan_shipments(uow, order, now)
            for coupon_id in checkout.coupon_ids:
                uow.get(Coupon, coupon_id).redeem(checkout.id, now)
            return _payment_receipt(checkout, orders, c.payment_id)

        return self._transact(work)

    def _take_late_payment(
        self, uow: UnitOfWork, checkout: Checkout, orders: list[Order], c: cmd.Pay, now: datetime
    ) -> cmd.PaymentReceipt:
        """Money that came after cancellation or the deadline is real: record it, refund it."""
        if checkout.is_open:
            self._cancel_checkout(uow, checkout, CancelReason.TIMEOUT, now)
        checkout.record_late_payment(c.payment_id, c.amount, c.provider_txn, now)
        shares = checkout.late_payment_shares(c.amount, [order.payable for order in orders])
        for order, share in zip(orders, shares, strict=True):
            if share:
                order.record_late_payment(c.payment_id, share, c.provider_txn, now)
        return _payment_receipt(checkout, orders, c.payment_id)

    def _plan_shipments(self, uow: UnitOfWork, order: Order, now: datetime) -> None:
        """Second split: delivery notes per warehouse, parcels by weight (发货拆单)."""
        assert order.checkout_id is not None
        parcels = plan_parcels(order.lines, self.settings.parcel_weight_limit_g)
        planned = []
        for number, parcel in enumerate(parcels, start=1):
            shipment_id = shipment_id_for(order.id, number)
            uow.add(
                Shipment.plan(
                    shipment_id,
                    now,
                    order_id=order.id,
                    checkout_id=order.checkout_id,
                    merchant_id=order.merchant_id,
                    warehouse_id=parcel.warehouse_id,
                    items=parcel.items,
                )
            )
            lines = {item.line_no: item.quantity for item in parcel.items}
            planned.append(PlannedParcel(shipment_id=shipment_id, lines=lines))
        order.plan_shipments(tuple(planned), now)

    # ------------------------------------------------------------------ cancellation and expiry

    def cancel(self, command: cmd.Cancel | None = None, /, **fields: Any) -> None:
        """Cancel a whole checkout before payment: stock released, coupons unlocked."""
        c = _validated(cmd.Cancel, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> None:
            checkout = uow.get(Checkout, c.checkout_id, "checkout")
            self._cancel_checkout(uow, checkout, c.reason, now)

        self._transact(work)

    def _cancel_checkout(self, uow: UnitOfWork, checkout: Checkout, reason: CancelReason, now: datetime) -> None:
        """Cancel the checkout and all its orders: stock released, coupons unlocked."""
        if not checkout.cancel(reason, now):
            return  # cancelled already
        release_reason = reason.release_reason
        orders = [uow.get(Order, oid) for oid in checkout.order_ids]
        for order in orders:
            order.cancel(reason, now)
            for line in order.lines:
                for allocation in line.allocations:
                    stock = uow.get(StockItem, stock_item_id(line.sku.sku_id, allocation.warehouse_id))
                    stock.release(order.id, release_reason, now)
        for coupon_id in checkout.coupon_ids:
            coupon = uow.get(Coupon, coupon_id)
            if coupon.state is CouponState.LOCKED and coupon.checkout_id == checkout.id:
                coupon.unlock(release_reason, now)

    def expire_overdue_orders(self, now: datetime | None = None) -> list[UUID]:
        """Cancel every unpaid checkout past its payment deadline; returns their ids."""
        now = now or self.clock.now()
        expired = []
        for checkout_id in self._aggregate_ids_with(Checkout.Placed):
            def work(uow: UnitOfWork, _: datetime, checkout_id: UUID = checkout_id) -> bool:
                checkout = uow.get(Checkout, checkout_id)
                if not checkout.is_overdue(now):
                    return False
                self._cancel_checkout(uow, checkout, CancelReason.TIMEOUT, now)
                return True

            if self._transact(work):
                expired.append(checkout_id)
        return expired

    def expire_coupons(self, now: datetime | None = None) -> list[UUID]:
        """Mark available coupons past their validity as expired."""
        now = now or self.clock.now()
        expired = []
        for coupon_id in self._aggregate_ids_with(Coupon.Issued):
            def work(uow: UnitOfWork, _: datetime, coupon_id: UUID = coupon_id) -> bool:
                return uow.get(Coupon, coupon_id).expire(now)

            if self._transact(work):
                expired.append(coupon_id)
        return expired

    def complete_orders(self, now: datetime | None = None) -> list[UUID]:
        """Complete delivered orders whose after-sales window has passed."""
        now = now or self.clock.now()
        window = self.settings.after_sales_window
        completed = []
        for order_id in self._aggregate_ids_with(Order.ShipmentDelivered):
            def work(uow: UnitOfWork, _: datetime, order_id: UUID = order_id) -> bool:
                order = uow.get(Order, order_id)
                return order.delivered_at is not None and order.complete_if_window_passed(
                    order.delivered_at + window, now
                )

            if self._transact(work):
                completed.append(order_id)
        return completed

    def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """All time-driven work, once: for a scheduler to call."""
        now = now or self.clock.now()
        return {
            "expired_checkouts": len(self.expire_overdue_orders(now)),
            "expired_coupons": len(self.expire_coupons(now)),
            "completed_orders": len(self.complete_orders(now)),
        }

    def _aggregate_ids_with(self, event_type: type[DomainEvent], batch: int = 1000) -> Iterator[UUID]:
        """Ids of aggregates that recorded ``event_type`` (under its current or a former
        name), streamed from the notification log."""
        topics = [get_topic(event_type), *former_topics(event_type)]
        seen: set[UUID] = set()
        start = 1
        while True:
            notifications = self.store.recorder.select_notifications(start, batch, topics=topics)
            for n in notifications:
                if n.originator_id not in seen:
                    seen.add(n.originator_id)
                    yield UUID(str(n.originator_id))
            if len(notifications) < batch:
                return
            start = notifications[-1].id + 1

    # ------------------------------------------------------------------ shipping

    def dispatch(self, command: cmd.Dispatch | None = None, /, **fields: Any) -> None:
        """The parcel leaves the warehouse (出库): its units leave stock."""
        c = _validated(cmd.Dispatch, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> None:
            shipment = uow.get(Shipment, c.shipment_id, "shipment")
            if not shipment.dispatch(c.carrier, c.tracking_number, now):
                return
            assert shipment.order_id is not None
            order = uow.get(Order, shipment.order_id)
            for item in shipment.items:
                stock = uow.get(StockItem, stock_item_id(item.sku_id, shipment.warehouse_id))
                stock.dispatch(order.id, shipment.id, item.quantity, now)
            order.shipment_dispatched(shipment.id, now)

        self._transact(work)

    def update_tracking(self, command: cmd.UpdateTracking | None = None, /, **fields: Any) -> bool:
        c = _validated(cmd.UpdateTracking, command, fields)
        update = TrackingUpdate(occurred_at=c.occurred_at, status=c.status, location=c.location)

        def work(uow: UnitOfWork, now: datetime) -> bool:
            return uow.get(Shipment, c.shipment_id, "shipment").track(update, now)

        return self._transact(work)

    def deliver(self, command: cmd.Deliver | None = None, /, **fields: Any) -> None:
        c = _validated(cmd.Deliver, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> None:
            shipment = uow.get(Shipment, c.shipment_id, "shipment")
            if shipment.deliver(now):
                assert shipment.order_id is not None
                uow.get(Order, shipment.order_id).shipment_delivered(shipment.id, now)

        self._transact(work)

    def report_delivery_failure(self, command: cmd.ReportDeliveryFailure | None = None, /, **fields: Any) -> None:
        c = _validated(cmd.ReportDeliveryFailure, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> None:
            shipment = uow.get(Shipment, c.shipment_id, "shipment")
            if shipment.fail(c.reason, now):
                assert shipment.order_id is not None
                uow.get(Order, shipment.order_id).shipment_failed(shipment.id, c.reason, now)

        self._transact(work)

    def confirm_receipt(self, command: cmd.ConfirmReceipt | None = None, /, **fields: Any) -> None:
        c = _validated(cmd.ConfirmReceipt, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> None:
            order = self._customer_order(uow, c.order_id, c.customer_id)
            if order.state is not OrderState.COMPLETED:
                order.confirm_receipt(now)

        self._transact(work)


    # ------------------------------------------------------------------ after-sales (售后)

    def refund_only(self, command: cmd.RefundOnly | None = None, /, **fields: Any) -> cmd.RefundReceipt:
        """仅退款: refund units whose goods do not come back, priced from the order's history.

        Units not dispatched yet leave their planned parcels (which shrink or are
        cancelled) and their stock reservations are released; units of lost parcels
        and delivered units the customer keeps are refunded as they are.
        The same refund id again is a no-op that returns the same receipt.
        """
        c = _validated(cmd.RefundOnly, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> cmd.RefundReceipt:
            order = uow.get(Order, c.order_id, "order")
            earlier = order.earlier_refund(c.refund_id, RefundKind.REFUND_ONLY, c.lines)
            if earlier is not None:
                return _refund_receipt(order, earlier)
            plan = order.plan_refund_only(c.lines, c.shipment_id)
            self._withdraw_from_parcels(uow, order, plan, now)
            return self._issue_refund(uow, order, c.refund_id, plan, c.reason, now)

        return self._transact(work)

    def request_return(self, command: cmd.RequestReturn | None = None, /, **fields: Any) -> UUID:
        """退货: the customer asks to send delivered units back; returns the return id."""
        c = _validated(cmd.RequestReturn, command, fields)
        return_id = uuid5(c.order_id, f"return-request:{c.request_id}") if c.request_id else uuid4()

        def work(uow: UnitOfWork, now: datetime) -> UUID:
            order = self._customer_order(uow, c.order_id, c.customer_id)
            order.request_return(return_id, c.lines, c.reason, self.settings.after_sales_window, now)
            return return_id

        return self._transact(work)

    def approve_return(self, command: cmd.ApproveReturn | None = None, /, **fields: Any) -> None:
        c = _validated(cmd.ApproveReturn, command, fields)
        self._transact(lambda uow, now: uow.get(Order, c.order_id, "order").approve_return(c.return_id, now))

    def reject_return(self, command: cmd.RejectReturn | None = None, /, **fields: Any) -> None:
        c = _validated(cmd.RejectReturn, command, fields)
        self._transact(lambda uow, now: uow.get(Order, c.order_id, "order").reject_return(c.return_id, c.reason, now))

    def ship_return(self, command: cmd.ShipReturn | None = None, /, **fields: Any) -> UUID:
        """The customer sends an approved return with a carrier; returns the return shipment's id.

        The parcel goes back to the warehouse that sent the returned goods (the first
        one, if they came from several); sending the same waybill again is a no-op.
        """
        c = _validated(cmd.ShipReturn, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> UUID:
            order = uow.get(Order, c.order_id, "order")
            case = order.return_case(c.return_id)
            if case.shipment_id is not None:
                sent = uow.get(Shipment, case.shipment_id)
                if (sent.carrier, sent.tracking_number) == (c.carrier, c.tracking_number):
                    return sent.id
            shipment_id = return_shipment_id_for(order.id, case.return_id)
            order.return_shipped(case.return_id, shipment_id, now)
            assert order.checkout_id is not None
            uow.add(
                Shipment.send_return(
                    shipment_id,
                    now,
                    order_id=order.id,
                    checkout_id=order.checkout_id,
                    merchant_id=order.merchant_id,
                    warehouse_id=uow.get(Shipment, order.return_parcel(case.return_id)).warehouse_id,
                    return_id=case.return_id,
                    items=tuple(
                        ParcelItem(
                            line_no=line_no,
                            sku_id=order.line(line_no).sku.sku_id,
                            quantity=units,
                            weight_g=units * order.line(line_no).sku.weight_g,
                        )
                        for line_no, units in case.lines.items()
                    ),
                    carrier=c.carrier,
                    tracking_number=c.tracking_number,
                )
            )
            return shipment_id

        return self._transact(work)

    def receive_return(self, command: cmd.ReceiveReturn | None = None, /, **fields: Any) -> None:
        """Check a return in: sellable units go back into stock, damaged ones are written off."""
        c = _validated(cmd.ReceiveReturn, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> None:
            order = uow.get(Order, c.order_id, "order")
            case = order.return_case(c.return_id)
            order.return_received(case.return_id, c.sellable, c.damaged, now)
            assert case.shipment_id is not None
            shipment = uow.get(Shipment, case.shipment_id)
            received = order.returns[case.return_id]
            shipment.check_in_return(received.sellable, received.damaged, now)
            for line_no in case.lines:
                sku_id = order.line(line_no).sku.sku_id
                stock = self._stock_item(uow, sku_id, shipment.warehouse_id, now)
                if sellable := c.sellable.get(line_no, 0):
                    stock.restock_return(order.id, sellable, now)
                if damaged := c.damaged.get(line_no, 0):
                    stock.write_off_return(order.id, damaged, f"damaged in return {case.return_id}", now)

        self._transact(work)

    def refund_return(self, command: cmd.RefundReturn | None = None, /, **fields: Any) -> cmd.RefundReceipt:
        """Refund a received return; the same refund id again is a no-op."""
        c = _validated(cmd.RefundReturn, command, fields)

        def work(uow: UnitOfWork, now: datetime) -> cmd.RefundReceipt:
            order = uow.get(Order, c.order_id, "order")
            case = order.return_case(c.return_id)
            earlier = order.earlier_refund(c.refund_id, RefundKind.RETURN, case.lines, case.return_id)
            if earlier is not None:
                return _refund_receipt(order, earlier)
            plan = order.plan_return_refund(case.return_id)
            return self._issue_refund(uow, order, c.refund_id, plan, case.reason, now)

        return self._transact(work)

    def refundable(self, order_id: UUID) -> RefundableSummary:
        """Each line's net paid, refunded and still refundable, computed from the order's history."""
        return self.order(order_id).refundable()

    def refunds(self, order_id: UUID) -> list[RefundRecord]:
        """The order's refund history, late-payment refunds included, oldest first."""
        return self.order(order_id).refund_history

    def return_case(self, order_id: UUID, return_id: UUID) -> ReturnCase:
        return self.order(order_id).return_case(return_id)

    def _customer_order(self, uow: UnitOfWork, order_id: UUID, customer_id: str) -> Order:
        order = uow.get(Order, order_id, "order")
        if order.customer_id != customer_id:
            raise NotFound(f"customer {customer_id} has no order {order_id}")
        return order

    def _withdraw_from_parcels(self, uow: UnitOfWork, order: Order, plan: RefundPlan, now: datetime) -> None:
        """Refunded units that have not left: shrink their parcels, release their reservations."""
        for shipment_id, units in plan.withdrawn.items():
            shipment = uow.get(Shipment, shipment_id)
            shipment.withdraw(units, "refunded before dispatch", now)
            for line_no, n in units.items():
                stock = uow.get(StockItem, stock_item_id(order.line(line_no).sku.sku_id, shipment.warehouse_id))
                stock.release(order.id, ReleaseReason.REFUNDED, now, quantity=n)

    def _issue_refund(
        self, uow: UnitOfWork, order: Order, refund_id: str, plan: RefundPlan, reason: str, now: datetime
    ) -> cmd.RefundReceipt:
        record = order.issue_refund(refund_id, plan, reason, now)
        returned: list[UUID] = []
        if order.is_fully_refunded:
            assert order.checkout_id is not None
            for coupon_id in uow.get(Checkout, order.checkout_id).coupon_ids:
                if uow.get(Coupon, coupon_id).order_refunded(order.id, now):
                    returned.append(coupon_id)
        return _refund_receipt(order, record, tuple(returned))


def _priced(sku: Sku, quantity: int) -> PricedItem:
    return PricedItem(
        key=sku.sku_id,
        sku_id=sku.sku_id,
        spu_id=sku.spu_id,
        merchant_id=sku.merchant_id,
        category_path=sku.category_path,
        brand_id=sku.brand_id,
        unit_price=sku.unit_price,
        quantity=quantity,
        weight_g=sku.weight_g,
    )


def _checkout_receipt(checkout: Checkout) -> cmd.CheckoutReceipt:
    assert checkout.payment_deadline is not None
    return cmd.CheckoutReceipt(
        checkout_id=checkout.id,
        order_ids=checkout.order_ids,
        payable=checkout.payable,
        payment_deadline=checkout.payment_deadline,
    )


def _refund_receipt(order: Order, record: RefundRecord, returned: tuple[UUID, ...] = ()) -> cmd.RefundReceipt:
    return cmd.RefundReceipt(
        order_id=order.id,
        refund_id=record.refund_id,
        kind=record.kind,
        amount=record.amount,
        freight=record.freight,
        lines=record.lines,
        order_state=order.state,
        refund_status=order.refund_status,
        returned_coupon_ids=returned,
    )


def _payment_receipt(checkout: Checkout, orders: list[Order], payment_id: str) -> cmd.PaymentReceipt:
    on_time = checkout.payment_id == payment_id
    return cmd.PaymentReceipt(
        checkout_id=checkout.id,
        payment_id=payment_id,
        amount=checkout.paid_amount if on_time else checkout.late_payments[payment_id],
        outcome="paid" if on_time else "refunded",
        order_ids=checkout.order_ids,
        shipment_ids=tuple(sid for order in orders for sid in order.shipments) if on_time else (),
    )
