"""Checkout and Order (订单).

A checkout whose cart holds several merchants' goods is split into one Order per
merchant (first split, for settlement); they share the checkout, which is paid by
one payment and, before payment, cancelled as a whole.

Order states::

    pending_payment ─► paid ─► partially_shipped ─► shipped ─► delivered ─► completed
          │
          └─► cancelled (customer, payment timeout, operations)
    paid … ─► closed (every line refunded)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ecomcore.domain.after_sales import (
    LineRefundable,
    LineUnits,
    ParcelUnits,
    RefundableSummary,
    RefundKind,
    RefundPlan,
    RefundRecord,
    ReturnCase,
    ReturnStatus,
)
from ecomcore.domain.aggregate import Aggregate, DomainEvent, applies
from ecomcore.domain.catalogue import RecordedSku
from ecomcore.domain.errors import IllegalTransition, NotFound, RefundRefused, ReturnRefused
from ecomcore.domain.pricing import unit_refund

_CHECKOUT_NAMESPACE = uuid5(NAMESPACE_URL, "https://ecomcore/checkout")


def checkout_id_for_request(client_request_id: str) -> UUID:
    """A client that retries a checkout with the same request id names the same checkout."""
    return uuid5(_CHECKOUT_NAMESPACE, client_request_id)


def order_id_for(checkout_id: UUID, merchant_id: str) -> UUID:
    return uuid5(checkout_id, f"order:{merchant_id}")


#: Refund reason of the automatic refund of a payment that arrived too late.
LATE_PAYMENT = RefundKind.LATE_PAYMENT.value


class CancelReason(StrEnum):
    CUSTOMER = "customer"
    TIMEOUT = "timeout"
    OPERATIONS = "operations"


class OrderState(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    CLOSED = "closed"


class RefundStatus(StrEnum):
    NONE = "none"
    PARTIAL = "partial"
    FULL = "full"


class Allocation(BaseModel):
    """Units of a line reserved in one warehouse."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    warehouse_id: str
    quantity: int = Field(gt=0)


class OrderLine(BaseModel):
    """One SKU of an order, with the money it was priced at (recorded, never recomputed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    line_no: int = Field(ge=1)
    sku: RecordedSku
    quantity: int = Field(gt=0)
    gross: int = Field(ge=0)
    promotion_discount: int = Field(ge=0)
    merchant_coupon_discount: int = Field(ge=0)
    platform_coupon_discount: int = Field(ge=0)
    net: int = Field(ge=0)
    allocations: tuple[Allocation, ...]

    @field_validator("sku", mode="before")
    @classmethod
    def _record_sku(cls, sku: Any) -> Any:
        """Keep the SKU's data as a plain ``RecordedSku`` (not the catalogue's ``Sku``), so
        a line read back from the store equals the line that was recorded."""
        if isinstance(sku, RecordedSku) and type(sku) is not RecordedSku:
            return sku.model_dump()
        return sku


class PlannedParcel(BaseModel):
    """Which units of which lines one planned shipment carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    shipment_id: UUID
    lines: dict[int, int] = Field(min_length=1)


class ShipmentProgress(StrEnum):
    PLANNED = "planned"
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Checkout(Aggregate):
    class Placed(DomainEvent):
        customer_id: str
        order_ids: tuple[UUID, ...]
        payable: int = Field(ge=0)
        payment_deadline: datetime
        client_request_id: str | None
        coupon_ids: tuple[UUID, ...]

    class Paid(DomainEvent):
        payment_id: str
        amount: int = Field(ge=0)
        provider_txn: str

    class LatePaymentReceived(DomainEvent):
        """Real money that arrived after cancellation or the deadline; it is refunded."""

        payment_id: str
        amount: int = Field(gt=0)
        provider_txn: str

    class Cancelled(DomainEvent):
        reason: CancelReason

    def __init__(self, id: UUID) -> None:
        super().__init__(id)
        self.customer_id = ""
        self.order_ids: tuple[UUID, ...] = ()
        self.coupon_ids: tuple[UUID, ...] = ()
        self.payable = 0
        self.payment_deadline: datetime | None = None
        self.client_request_id: str | None = None
        self.payment_id: str | None = None
        self.paid_amount = 0
        self.late_payments: dict[str, int] = {}
        self.cancelled_reason: CancelReason | None = None

    @classmethod
    def place(cls, checkout_id: UUID, now: datetime, **facts: object) -> Checkout:
        checkout = cls(checkout_id)
        checkout._record(cls.Placed, now, **facts)
        return checkout

    @property
    def is_paid(self) -> bool:
        return self.payment_id is not None

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_reason is not None

    def is_overdue(self, now: datetime) -> bool:
        assert self.payment_deadline is not None
        return not self.is_paid and now >= self.payment_deadline

    def mark_paid(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        if self.is_paid or self.is_cancelled:
            state = "paid" if self.is_paid else "cancelled"
            raise IllegalTransition(f"checkout {self.id} is {state}; it cannot be paid again")
        self._record(self.Paid, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)

    def record_late_payment(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        self._record(self.LatePaymentReceived, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)

    def cancel(self, reason: CancelReason, now: datetime) -> None:
        if self.is_paid:
            raise IllegalTransition(
                f"checkout {self.id} is paid; after payment money goes back only through refunds"
            )
        if not self.is_cancelled:
            self._record(self.Cancelled, now, reason=reason)

    @applies(Placed)
    def _placed(self, e: Placed) -> None:
        self.customer_id, self.order_ids, self.coupon_ids = e.customer_id, e.order_ids, e.coupon_ids
        self.payable, self.payment_deadline, self.client_request_id = e.payable, e.payment_deadline, e.client_request_id

    @applies(Paid)
    def _paid(self, e: Paid) -> None:
        self.payment_id, self.paid_amount = e.payment_id, e.amount

    @applies(LatePaymentReceived)
    def _late_payment(self, e: LatePaymentReceived) -> None:
        self.late_payments[e.payment_id] = e.amount

    @applies(Cancelled)
    def _cancelled(self, e: Cancelled) -> None:
        self.cancelled_reason = e.reason


class Order(Aggregate):
    class Placed(DomainEvent):
        checkout_id: UUID
        customer_id: str
        merchant_id: str
        currency: str
        lines: tuple[OrderLine, ...] = Field(min_length=1)
        promotion_id: str | None
        merchant_coupon_id: UUID | None
        platform_coupon_id: UUID | None
        freight: int = Field(ge=0)
        payable: int = Field(ge=0)
        payment_deadline: datetime
        shipping_address: str

    class Paid(DomainEvent):
        payment_id: str
        amount: int = Field(ge=0)
        provider_txn: str

    class LatePaymentReceived(DomainEvent):
        payment_id: str
        amount: int = Field(ge=0)
        provider_txn: str

    class RefundIssued(DomainEvent):
        """Money went back to the customer; the amounts are the ones the provider refunded."""

        class_version = 2

        refund_id: str
        kind: RefundKind
        amount: int = Field(ge=0)
        reason: str
        #: line_no → (units, amount) refunded for goods; empty for a late-payment refund.
        lines: dict[int, tuple[int, int]] = {}
        freight: int = Field(0, ge=0)
        #: Units taken out of parcels that had not left, by shipment.
        withdrawn: ParcelUnits = {}
        #: Units of parcels that were lost or refused, by shipment.
        lost: ParcelUnits = {}
        #: Delivered units the customer keeps (a refund only after delivery).
        kept: LineUnits = {}
        return_id: UUID | None = None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 knew only late-payment refunds and refunds-only, told apart by reason."""
            late = state["reason"] == RefundKind.LATE_PAYMENT.value
            state["kind"] = RefundKind.LATE_PAYMENT if late else RefundKind.REFUND_ONLY

    class Cancelled(DomainEvent):
        reason: CancelReason

    class ShipmentsPlanned(DomainEvent):
        parcels: tuple[PlannedParcel, ...] = Field(min_length=1)

    class ShipmentDispatched(DomainEvent):
        shipment_id: UUID

    class ShipmentDelivered(DomainEvent):
        shipment_id: UUID

    class ShipmentFailed(DomainEvent):
        shipment_id: UUID
        reason: str

    class ReturnRequested(DomainEvent):
        return_id: UUID
        lines: LineUnits = Field(min_length=1)
        reason: str

    class ReturnApproved(DomainEvent):
        return_id: UUID

    class ReturnRejected(DomainEvent):
        return_id: UUID
        reason: str

    class ReturnShipped(DomainEvent):
        return_id: UUID
        shipment_id: UUID

    class ReturnReceived(DomainEvent):
        return_id: UUID
        sellable: LineUnits
        damaged: LineUnits

    class Completed(DomainEvent):
        how: str  # "confirmed" by the customer, or "automatic" after the after-sales window

    def __init__(self, id: UUID) -> None:
        super().__init__(id)
        self.checkout_id: UUID | None = None
        self.customer_id = ""
        self.merchant_id = ""
        self.currency = ""
        self.lines: tuple[OrderLine, ...] = ()
        self.promotion_id: str | None = None
        self.merchant_coupon_id: UUID | None = None
        self.platform_coupon_id: UUID | None = None
        self.freight = 0
        self.payable = 0
        self.payment_deadline: datetime | None = None
        self.shipping_address = ""
        self.state = OrderState.PENDING_PAYMENT
        self.paid = 0
        self.payment_id: str | None = None
        self.paid_at: datetime | None = None
        self.late_payments = 0
        self.late_refunded = 0
        self.refunded = 0
        self.freight_refunded = 0
        self.refunds: dict[str, RefundRecord] = {}
        self.refunded_units: dict[int, int] = {}
        self.refunded_amounts: dict[int, int] = {}
        self.shipments: dict[UUID, ShipmentProgress] = {}
        #: What each outbound parcel still carries (refunds before dispatch shrink it).
        self.parcels: ParcelUnits = {}
        self.lost_refunded: ParcelUnits = {}
        self.kept_refunded: LineUnits = {}
        self.returns: dict[UUID, ReturnCase] = {}
        self.delivered_at: datetime | None = None
        self.last_delivery_at: datetime | None = None

    @classmethod
    def place(cls, order_id: UUID, now: datetime, **facts: object) -> Order:
        order = cls(order_id)
        order._record(cls.Placed, now, **facts)
        return order

    # -- queries ---------------------------------------------------------------------

    @property
    def gross(self) -> int:
        return sum(line.gross for line in self.lines)

    @property
    def goods_net(self) -> int:
        return sum(line.net for line in self.lines)

    @property
    def is_fully_refunded(self) -> bool:
        return all(self.refunded_units.get(line.line_no, 0) == line.quantity for line in self.lines)

    @property
    def refund_status(self) -> RefundStatus:
        if not self.refunded and not any(self.refunded_units.values()):
            return RefundStatus.NONE
        return RefundStatus.FULL if self.is_fully_refunded else RefundStatus.PARTIAL

    @property
    def refund_history(self) -> list[RefundRecord]:
        """Every refund in the order it was issued, late-payment refunds included."""
        return list(self.refunds.values())

    @property
    def ever_dispatched(self) -> bool:
        return any(p not in (ShipmentProgress.PLANNED, ShipmentProgress.CANCELLED) for p in self.shipments.values())

    @property
    def has_open_return(self) -> bool:
        return any(case.is_open for case in self.returns.values())

    def line(self, line_no: int) -> OrderLine:
        for line in self.lines:
            if line.line_no == line_no:
                return line
        raise IllegalTransition(f"order {self.id} has no line {line_no}")

    def refundable(self) -> RefundableSummary:
        """Each line's net paid, refunded and still refundable, from this order's history."""
        return RefundableSummary(
            order_id=self.id,
            paid=self.paid,
            refunded=self.refunded,
            freight=self.freight,
            freight_refunded=self.freight_refunded,
            lines=tuple(
                LineRefundable(
                    line_no=line.line_no,
                    sku_id=line.sku.sku_id,
                    quantity=line.quantity,
                    net=line.net,
                    refunded_units=self.refunded_units.get(line.line_no, 0),
                    refunded_amount=self.refunded_amounts.get(line.line_no, 0),
                    refundable_now=self._refundable_now(line.line_no),
                    not_dispatched=self._units_in(line.line_no, ShipmentProgress.PLANNED),
                    on_the_way=self._units_in(line.line_no, ShipmentProgress.DISPATCHED),
                    lost=sum(units for _, units in self._lost_open(line.line_no)),
                    delivered=self._delivered_open(line.line_no),
                    returning=self._returning(line.line_no),
                )
                for line in self.lines
            ),
        )

    # -- commands ------------------------------------------------------------------

    def pay(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        self._require(OrderState.PENDING_PAYMENT, "be paid")
        self._record(self.Paid, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)

    def record_late_payment(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        """Keep the books honest: the late money is recorded, then refunded in full."""
        self._record(self.LatePaymentReceived, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)
        self._record(
            self.RefundIssued,
            now,
            refund_id=f"late:{payment_id}:{self.id}",
            kind=RefundKind.LATE_PAYMENT,
            amount=amount,
            reason=LATE_PAYMENT,
        )

    def cancel(self, reason: CancelReason, now: datetime) -> None:
        if self.state is OrderState.CANCELLED:
            return
        self._require(OrderState.PENDING_PAYMENT, "be cancelled")
        self._record(self.Cancelled, now, reason=reason)

    def plan_shipments(self, parcels: tuple[PlannedParcel, ...], now: datetime) -> None:
        self._require(OrderState.PAID, "plan shipments")
        self._record(self.ShipmentsPlanned, now, parcels=parcels)

    def shipment_dispatched(self, shipment_id: UUID, now: datetime) -> None:
        self._require_shipment(shipment_id)
        self._record(self.ShipmentDispatched, now, shipment_id=shipment_id)

    def shipment_delivered(self, shipment_id: UUID, now: datetime) -> None:
        self._require_shipment(shipment_id)
        self._record(self.ShipmentDelivered, now, shipment_id=shipment_id)

    def shipment_failed(self, shipment_id: UUID, reason: str, now: datetime) -> None:
        self._require_shipment(shipment_id)
        self._record(self.ShipmentFailed, now, shipment_id=shipment_id, reason=reason)

    def confirm_receipt(self, now: datetime) -> None:
        self._require(OrderState.DELIVERED, "be confirmed as received")
        self._record(self.Completed, now, how="confirmed")

    def complete_if_window_passed(self, window_end: datetime, now: datetime) -> bool:
        """Complete a delivered order after its after-sales window, unless a return is still open."""
        if self.state is OrderState.DELIVERED and now >= window_end and not self.has_open_return:
            self._record(self.Completed, now, how="automatic")
            return True
        return False

    # -- after-sales: refunds --------------------------------------------------------

    def earlier_refund(
        self, refund_id: str, kind: RefundKind, units: LineUnits, return_id: UUID | None = None
    ) -> RefundRecord | None:
        """The refund already issued under ``refund_id``, if this is the same request again.

        The same id for different units is a mistake the provider would not make:
        it is refused rather than silently answered with the old refund.
        """
        record = self.refunds.get(refund_id)
        if record is None:
            return None
        same = (
            record.kind is kind
            and {no: n for no, (n, _) in record.lines.items()} == units
            and record.return_id == return_id
        )
        if not same:
            raise RefundRefused(f"refund {refund_id} was already issued on order {self.id} for other units")
        return record

    def plan_refund_only(self, units: LineUnits, from_shipment: UUID | None = None) -> RefundPlan:
        """Refund only (仅退款): price ``units`` by line and decide which units they settle.

        Units still in parcels that have not left are taken first (the last parcel
        first, so earlier parcels stay whole), then units of lost parcels, then
        delivered units the customer keeps.  ``from_shipment`` takes them from that one
        parcel only (say, the parcel that was lost).  Units on their way cannot be
        refunded until they are delivered or reported lost.
        """
        self._require_refundable()
        if from_shipment is not None and from_shipment not in self.shipments:
            raise RefundRefused(f"shipment {from_shipment} does not belong to order {self.id}")

        def only_chosen(parcels: list[tuple[UUID, int]]) -> list[tuple[UUID, int]]:
            return [(sid, n) for sid, n in parcels if from_shipment in (None, sid)]

        withdrawn: ParcelUnits = {}
        lost: ParcelUnits = {}
        kept: LineUnits = {}
        shortfalls = []
        for line_no in sorted(units):
            self._line_or(RefundRefused, line_no)
            wanted = units[line_no]
            planned_last_first = reversed(only_chosen(self._parcels_in(line_no, ShipmentProgress.PLANNED)))
            for sid, n in self._take(planned_last_first, wanted):
                withdrawn.setdefault(sid, {})[line_no] = n
                wanted -= n
            for sid, n in self._take(only_chosen(self._lost_open(line_no)), wanted):
                lost.setdefault(sid, {})[line_no] = n
                wanted -= n
            keepable = self._delivered_open(line_no)
            if from_shipment is not None:
                in_parcel = only_chosen(self._parcels_in(line_no, ShipmentProgress.DELIVERED))
                keepable = min(keepable, sum(n for _, n in in_parcel))
            if kept_units := min(wanted, keepable):
                kept[line_no] = kept_units
                wanted -= kept_units
            if wanted:
                shortfalls.append(self._shortfall(line_no, units[line_no], from_shipment))
        if shortfalls:
            raise RefundRefused("; ".join(shortfalls), order_id=str(self.id))
        return self._priced(RefundKind.REFUND_ONLY, units, withdrawn=withdrawn, lost=lost, kept=kept)

    def plan_return_refund(self, return_id: UUID) -> RefundPlan:
        """The refund of a received return: its units, priced from this order's history."""
        case = self.return_case(return_id)
        if case.status is not ReturnStatus.RECEIVED:
            raise RefundRefused(
                f"return {return_id} is {case.status.value}; it is refunded once the warehouse has received it"
            )
        return self._priced(RefundKind.RETURN, case.lines, return_id=return_id)

    def issue_refund(self, refund_id: str, plan: RefundPlan, reason: str, now: datetime) -> RefundRecord:
        if refund_id in self.refunds:
            raise RefundRefused(f"refund {refund_id} was already issued on order {self.id}")
        if self.refunded + plan.amount > self.paid:
            raise RefundRefused(
                f"order {self.id} was paid {self.paid} and has refunded {self.refunded}; "
                f"{plan.amount} more would exceed what was paid"
            )
        self._record(
            self.RefundIssued,
            now,
            refund_id=refund_id,
            amount=plan.amount,
            reason=reason,
            **plan.model_dump(exclude={"amount"}),
        )
        return self.refunds[refund_id]

    # -- after-sales: returns --------------------------------------------------------

    def request_return(
        self, return_id: UUID, units: LineUnits, reason: str, window: timedelta, now: datetime
    ) -> bool:
        """Open a return (退货) for delivered units; False if this very request exists already."""
        existing = self.returns.get(return_id)
        if existing is not None:
            if existing.lines != units:
                raise IllegalTransition(f"return {return_id} was requested for other units")
            return False
        if self.state in (OrderState.PENDING_PAYMENT, OrderState.CANCELLED, OrderState.CLOSED):
            raise ReturnRefused(f"order {self.id} is {self.state.value}; nothing can be returned")
        if self.delivered_at is not None and now >= self.delivered_at + window:
            raise ReturnRefused(
                f"the after-sales window of order {self.id} ended at {self.delivered_at + window:%Y-%m-%d %H:%M}"
            )
        shortfalls = []
        for line_no in sorted(units):
            line = self._line_or(ReturnRefused, line_no)
            returnable = self._delivered_open(line_no)
            if units[line_no] > returnable:
                shortfalls.append(
                    f"line {line_no} (sku {line.sku.sku_id}) has {returnable} delivered unit(s) that can be "
                    f"returned, {units[line_no]} requested"
                    f" ({self._units_in(line_no, ShipmentProgress.PLANNED)} not dispatched, "
                    f"{self._units_in(line_no, ShipmentProgress.DISPATCHED)} on the way)"
                )
        if shortfalls:
            raise ReturnRefused("; ".join(shortfalls), order_id=str(self.id))
        self._record(self.ReturnRequested, now, return_id=return_id, lines=dict(sorted(units.items())), reason=reason)
        return True

    def approve_return(self, return_id: UUID, now: datetime) -> None:
        self._require_return(return_id, ReturnStatus.REQUESTED, "be approved")
        self._record(self.ReturnApproved, now, return_id=return_id)

    def reject_return(self, return_id: UUID, reason: str, now: datetime) -> None:
        self._require_return(return_id, ReturnStatus.REQUESTED, "be rejected")
        self._record(self.ReturnRejected, now, return_id=return_id, reason=reason)

    def return_shipped(self, return_id: UUID, shipment_id: UUID, now: datetime) -> None:
        self._require_return(return_id, ReturnStatus.APPROVED, "be sent back")
        self._record(self.ReturnShipped, now, return_id=return_id, shipment_id=shipment_id)

    def return_received(self, return_id: UUID, sellable: LineUnits, damaged: LineUnits, now: datetime) -> None:
        """The warehouse checked every unit of the return: each is sellable or damaged."""
        case = self._require_return(return_id, ReturnStatus.SHIPPED, "be received")
        counted = {no: sellable.get(no, 0) + damaged.get(no, 0) for no in {*sellable, *damaged}}
        if {no: n for no, n in counted.items() if n} != case.lines:
            raise ReturnRefused(
                f"return {return_id} carries {case.lines} (units by line); every unit must be marked "
                f"sellable or damaged, got sellable {sellable} and damaged {damaged}"
            )
        self._record(
            self.ReturnReceived,
            now,
            return_id=return_id,
            sellable={no: n for no, n in sorted(sellable.items()) if n},
            damaged={no: n for no, n in sorted(damaged.items()) if n},
        )

    # -- guards and unit accounting --------------------------------------------------

    def _require(self, state: OrderState, action: str) -> None:
        if self.state is not state:
            raise IllegalTransition(f"order {self.id} is {self.state.value}; it must be {state.value} to {action}")

    def _require_shipment(self, shipment_id: UUID) -> None:
        if shipment_id not in self.shipments:
            raise IllegalTransition(f"shipment {shipment_id} does not belong to order {self.id}")

    def _require_refundable(self) -> None:
        if self.state in (OrderState.PENDING_PAYMENT, OrderState.CANCELLED):
            raise RefundRefused(f"order {self.id} is {self.state.value}: it was never paid, so nothing is refunded")
        if self.state is OrderState.CLOSED:
            raise RefundRefused(f"order {self.id} is closed: every line has been refunded")

    def _line_or(self, refusal: type[RefundRefused | ReturnRefused], line_no: int) -> OrderLine:
        try:
            return self.line(line_no)
        except IllegalTransition:
            raise refusal(f"order {self.id} has no line {line_no}") from None

    def return_case(self, return_id: UUID) -> ReturnCase:
        case = self.returns.get(return_id)
        if case is None:
            raise NotFound(f"order {self.id} has no return {return_id}")
        return case

    def _require_return(self, return_id: UUID, status: ReturnStatus, action: str) -> ReturnCase:
        case = self.return_case(return_id)
        if case.status is not status:
            raise IllegalTransition(
                f"return {return_id} is {case.status.value}; only a {status.value} return can {action}"
            )
        return case

    def _parcels_in(self, line_no: int, progress: ShipmentProgress) -> list[tuple[UUID, int]]:
        return [
            (sid, units[line_no])
            for sid, units in self.parcels.items()
            if self.shipments[sid] is progress and units.get(line_no)
        ]

    def _units_in(self, line_no: int, progress: ShipmentProgress) -> int:
        return sum(units for _, units in self._parcels_in(line_no, progress))

    def _lost_open(self, line_no: int) -> list[tuple[UUID, int]]:
        """Units of lost parcels not refunded yet, by parcel."""
        found = []
        for sid, units in self._parcels_in(line_no, ShipmentProgress.FAILED):
            left = units - self.lost_refunded.get(sid, {}).get(line_no, 0)
            if left:
                found.append((sid, left))
        return found

    def _delivered_open(self, line_no: int) -> int:
        """Delivered units neither refunded while kept nor claimed by a return (rejected ones excepted)."""
        claimed = sum(
            case.lines.get(line_no, 0) for case in self.returns.values() if case.status is not ReturnStatus.REJECTED
        )
        return self._units_in(line_no, ShipmentProgress.DELIVERED) - self.kept_refunded.get(line_no, 0) - claimed

    def _returning(self, line_no: int) -> int:
        """Units of the line in returns still open (requested up to received)."""
        return sum(case.lines.get(line_no, 0) for case in self.returns.values() if case.is_open)

    def _refundable_now(self, line_no: int) -> int:
        planned = self._units_in(line_no, ShipmentProgress.PLANNED)
        return planned + sum(n for _, n in self._lost_open(line_no)) + self._delivered_open(line_no)

    @staticmethod
    def _take(sources: Iterable[tuple[UUID, int]], wanted: int) -> list[tuple[UUID, int]]:
        taken = []
        for sid, units in sources:
            if wanted <= 0:
                break
            n = min(units, wanted)
            taken.append((sid, n))
            wanted -= n
        return taken

    def _shortfall(self, line_no: int, wanted: int, from_shipment: UUID | None) -> str:
        line = self.line(line_no)
        left = line.quantity - self.refunded_units.get(line_no, 0)
        where = f" from shipment {from_shipment}" if from_shipment else ""
        message = (
            f"line {line_no} (sku {line.sku.sku_id}): {wanted} unit(s) requested{where}, "
            f"{self._refundable_now(line_no)} can be refunded now ({left} of {line.quantity} not refunded yet"
        )
        on_the_way = self._units_in(line_no, ShipmentProgress.DISPATCHED)
        returning = self._returning(line_no)
        if on_the_way:
            message += f"; {on_the_way} on the way, refundable once delivered or reported lost"
        if returning:
            message += f"; {returning} in an open return, refunded when it is received"
        return message + ")"

    def _priced(self, kind: RefundKind, units: LineUnits, **settles: Any) -> RefundPlan:
        """Price units by the unit-refund formula; freight only for a whole refund before dispatch."""
        lines = {}
        for line_no in sorted(units):
            line = self.line(line_no)
            before = self.refunded_units.get(line_no, 0)
            lines[line_no] = (units[line_no], unit_refund(line.net, line.quantity, before, units[line_no]))
        refunds_everything = all(
            self.refunded_units.get(line.line_no, 0) + units.get(line.line_no, 0) == line.quantity
            for line in self.lines
        )
        freight = self.freight if refunds_everything and not self.ever_dispatched else 0
        return RefundPlan(kind=kind, lines=lines, freight=freight, **settles)

    # -- state changes -------------------------------------------------------------

    @applies(Placed)
    def _placed(self, e: Placed) -> None:
        self.checkout_id, self.customer_id, self.merchant_id = e.checkout_id, e.customer_id, e.merchant_id
        self.currency, self.lines, self.promotion_id = e.currency, e.lines, e.promotion_id
        self.merchant_coupon_id, self.platform_coupon_id = e.merchant_coupon_id, e.platform_coupon_id
        self.freight, self.payable, self.payment_deadline = e.freight, e.payable, e.payment_deadline
        self.shipping_address = e.shipping_address

    @applies(Paid)
    def _paid(self, e: Paid) -> None:
        self.state, self.paid, self.payment_id, self.paid_at = OrderState.PAID, e.amount, e.payment_id, e.timestamp

    @applies(LatePaymentReceived)
    def _late_payment(self, e: LatePaymentReceived) -> None:
        self.late_payments += e.amount

    @applies(RefundIssued)
    def _refund_issued(self, e: RefundIssued) -> None:
        self.refunds[e.refund_id] = RefundRecord(
            refund_id=e.refund_id,
            kind=e.kind,
            amount=e.amount,
            reason=e.reason,
            lines=dict(sorted(e.lines.items())),
            freight=e.freight,
            return_id=e.return_id,
            issued_at=e.timestamp,
        )
        if e.kind is RefundKind.LATE_PAYMENT:
            self.late_refunded += e.amount
            return
        self.refunded += e.amount
        self.freight_refunded += e.freight
        for line_no, (units, amount) in e.lines.items():
            self.refunded_units[line_no] = self.refunded_units.get(line_no, 0) + units
            self.refunded_amounts[line_no] = self.refunded_amounts.get(line_no, 0) + amount
        for sid, units in e.withdrawn.items():
            left = {no: n - units.get(no, 0) for no, n in self.parcels[sid].items() if n - units.get(no, 0)}
            self.parcels[sid] = left
            if not left:
                self.shipments[sid] = ShipmentProgress.CANCELLED
        for sid, units in e.lost.items():
            settled = self.lost_refunded.setdefault(sid, {})
            for line_no, n in units.items():
                settled[line_no] = settled.get(line_no, 0) + n
        for line_no, n in e.kept.items():
            self.kept_refunded[line_no] = self.kept_refunded.get(line_no, 0) + n
        if e.return_id is not None:
            case = self.returns[e.return_id]
            self.returns[e.return_id] = case.model_copy(
                update={"status": ReturnStatus.REFUNDED, "refund_id": e.refund_id}
            )
        if self.is_fully_refunded:
            self.state = OrderState.CLOSED
        else:
            self._follow_shipments(e.timestamp)

    @applies(Cancelled)
    def _cancelled(self, e: Cancelled) -> None:
        self.state = OrderState.CANCELLED

    @applies(ShipmentsPlanned)
    def _shipments_planned(self, e: ShipmentsPlanned) -> None:
        for parcel in e.parcels:
            self.shipments[parcel.shipment_id] = ShipmentProgress.PLANNED
            self.parcels[parcel.shipment_id] = dict(sorted(parcel.lines.items()))

    @applies(ShipmentDispatched)
    def _shipment_dispatched(self, e: ShipmentDispatched) -> None:
        self.shipments[e.shipment_id] = ShipmentProgress.DISPATCHED
        self._follow_shipments(e.timestamp)

    @applies(ShipmentDelivered)
    def _shipment_delivered(self, e: ShipmentDelivered) -> None:
        self.shipments[e.shipment_id] = ShipmentProgress.DELIVERED
        self.last_delivery_at = e.timestamp
        self._follow_shipments(e.timestamp)

    @applies(ShipmentFailed)
    def _shipment_failed(self, e: ShipmentFailed) -> None:
        self.shipments[e.shipment_id] = ShipmentProgress.FAILED
        self._follow_shipments(e.timestamp)

    @applies(ReturnRequested)
    def _return_requested(self, e: ReturnRequested) -> None:
        self.returns[e.return_id] = ReturnCase(
            return_id=e.return_id,
            lines=dict(sorted(e.lines.items())),
            reason=e.reason,
            status=ReturnStatus.REQUESTED,
            requested_at=e.timestamp,
        )

    @applies(ReturnApproved)
    def _return_approved(self, e: ReturnApproved) -> None:
        self._update_return(e.return_id, status=ReturnStatus.APPROVED)

    @applies(ReturnRejected)
    def _return_rejected(self, e: ReturnRejected) -> None:
        self._update_return(e.return_id, status=ReturnStatus.REJECTED, rejection=e.reason)

    @applies(ReturnShipped)
    def _return_shipped(self, e: ReturnShipped) -> None:
        self._update_return(e.return_id, status=ReturnStatus.SHIPPED, shipment_id=e.shipment_id)

    @applies(ReturnReceived)
    def _return_received(self, e: ReturnReceived) -> None:
        self._update_return(
            e.return_id,
            status=ReturnStatus.RECEIVED,
            sellable=dict(sorted(e.sellable.items())),
            damaged=dict(sorted(e.damaged.items())),
        )

    @applies(Completed)
    def _completed(self, e: Completed) -> None:
        self.state = OrderState.COMPLETED

    def _update_return(self, return_id: UUID, **changes: Any) -> None:
        self.returns[return_id] = self.returns[return_id].model_copy(update=changes)

    def _follow_shipments(self, at: datetime) -> None:
        """Derive the shipping state from the parcels still in play.

        Cancelled parcels are out of play, and so is a lost parcel once all its
        units were refunded: the order is then delivered when the rest arrived.
        """
        if self.state not in _FOLLOWS_SHIPMENTS:
            return
        live = [progress for sid, progress in self.shipments.items() if not self._settled(sid, progress)]
        if not live:
            return
        if all(p is ShipmentProgress.DELIVERED for p in live):
            if self.state is not OrderState.DELIVERED:
                # The after-sales window runs from the last parcel that reached the customer.
                self.state, self.delivered_at = OrderState.DELIVERED, self.last_delivery_at or at
        elif all(p is not ShipmentProgress.PLANNED for p in live):
            self.state = OrderState.SHIPPED
        elif self.ever_dispatched:
            self.state = OrderState.PARTIALLY_SHIPPED
        else:
            self.state = OrderState.PAID

    def _settled(self, sid: UUID, progress: ShipmentProgress) -> bool:
        if progress is ShipmentProgress.CANCELLED:
            return True
        if progress is ShipmentProgress.FAILED:
            refunded = self.lost_refunded.get(sid, {})
            return all(refunded.get(no, 0) >= n for no, n in self.parcels[sid].items())
        return False


_FOLLOWS_SHIPMENTS = (
    OrderState.PAID,
    OrderState.PARTIALLY_SHIPPED,
    OrderState.SHIPPED,
    OrderState.DELIVERED,
)
