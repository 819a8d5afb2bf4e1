"""Order (订单): one merchant's part of a checkout.

A checkout whose cart holds several merchants' goods is split into one Order per
merchant (first split, for settlement); they share the checkout (``checkout.py``),
which is paid by one payment and, before payment, cancelled as a whole.  After-sales
rules (unit ledger, refund pricing, returns) live in ``after_sales.py``; the Order
records their events, so refunds stay inside its consistency boundary.

Order states::

    pending_payment ─► paid ─► partially_shipped ─► shipped ─► delivered ─► completed
          │
          └─► cancelled (customer, payment timeout, operations)
    paid … ─► closed (every line refunded)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from pydantic import Field, field_validator

from ecomcore.domain.after_sales import (
    RefundableSummary,
    RefundKind,
    RefundPlan,
    RefundRecord,
    ReturnCase,
    ReturnStatus,
    UnitLedger,
)
from ecomcore.domain.aggregate import Aggregate, DomainEvent, applies
from ecomcore.domain.allocation import Allocation
from ecomcore.domain.catalogue import RecordedSku
from ecomcore.domain.checkout import CancelReason, PaymentEvent
from ecomcore.domain.errors import IllegalTransition, NotFound, RefundRefused, ReturnRefused
from ecomcore.domain.parcels import LineUnits, ParcelUnits, PlannedParcel, ShipmentProgress
from ecomcore.domain.values import Value


def order_id_for(checkout_id: UUID, merchant_id: str) -> UUID:
    return uuid5(checkout_id, f"order:{merchant_id}")


#: Refund reason of the automatic refund of a payment that arrived too late.
LATE_PAYMENT = RefundKind.LATE_PAYMENT.value


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


class CompletionKind(StrEnum):
    """How an order was completed."""

    CONFIRMED = "confirmed"  # the customer confirmed receipt
    AUTOMATIC = "automatic"  # the after-sales window passed


class OrderLine(Value):
    """One SKU of an order, with the money it was priced at (recorded, never recomputed)."""

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

    class Paid(PaymentEvent):
        """The order's share of its checkout's payment (its payable)."""

    class LatePaymentReceived(PaymentEvent):
        """The order's share of a late payment; a RefundIssued of the same amount follows."""

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
        how: CompletionKind

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
        self.refunded_units: LineUnits = {}
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

    @property
    def ledger(self) -> UnitLedger:
        """This order's units, line by line and parcel by parcel: the after-sales rules' view."""
        return UnitLedger(self)

    def refundable(self) -> RefundableSummary:
        """Each line's net paid, refunded and still refundable, from this order's history."""
        return self.ledger.summary()

    def return_case(self, return_id: UUID) -> ReturnCase:
        case = self.returns.get(return_id)
        if case is None:
            raise NotFound(f"order {self.id} has no return {return_id}")
        return case

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
        self._record(self.Completed, now, how=CompletionKind.CONFIRMED)

    def complete_if_window_passed(self, window_end: datetime, now: datetime) -> bool:
        """Complete a delivered order after its after-sales window, unless a return is still open."""
        if self.state is OrderState.DELIVERED and now >= window_end and not self.has_open_return:
            self._record(self.Completed, now, how=CompletionKind.AUTOMATIC)
            return True
        return False

    # -- after-sales: refunds --------------------------------------------------------

    def earlier_refund(
        self, refund_id: str, kind: RefundKind, units: LineUnits, return_id: UUID | None = None
    ) -> RefundRecord | None:
        """The refund already issued under ``refund_id``, if this is the same request again."""
        return self.ledger.earlier_refund(refund_id, kind, units, return_id)

    def plan_refund_only(self, units: LineUnits, from_shipment: UUID | None = None) -> RefundPlan:
        """Refund only (仅退款): see :meth:`UnitLedger.plan_refund_only`."""
        self._require_refundable()
        return self.ledger.plan_refund_only(units, from_shipment)

    def plan_return_refund(self, return_id: UUID) -> RefundPlan:
        """The refund of a received return: its units, priced from this order's history."""
        return self.ledger.plan_return_refund(self.return_case(return_id))

    def issue_refund(self, refund_id: str, plan: RefundPlan, reason: str, now: datetime) -> RefundRecord:
        self.ledger.require_issuable(refund_id, plan)
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
        self.ledger.require_returnable(units, window, now)
        self._record(self.ReturnRequested, now, return_id=return_id, lines=dict(sorted(units.items())), reason=reason)
        return True

    def approve_return(self, return_id: UUID, now: datetime) -> None:
        self.return_case(return_id).require(ReturnStatus.REQUESTED, "be approved")
        self._record(self.ReturnApproved, now, return_id=return_id)

    def reject_return(self, return_id: UUID, reason: str, now: datetime) -> None:
        self.return_case(return_id).require(ReturnStatus.REQUESTED, "be rejected")
        self._record(self.ReturnRejected, now, return_id=return_id, reason=reason)

    def return_shipped(self, return_id: UUID, shipment_id: UUID, now: datetime) -> None:
        self.return_case(return_id).require(ReturnStatus.APPROVED, "be sent back")
        self._record(self.ReturnShipped, now, return_id=return_id, shipment_id=shipment_id)

    def return_parcel(self, return_id: UUID) -> UUID:
        """The delivered parcel whose warehouse takes the return back (see ``UnitLedger.return_parcel``)."""
        return self.ledger.return_parcel(self.return_case(return_id))

    def return_received(self, return_id: UUID, sellable: LineUnits, damaged: LineUnits, now: datetime) -> None:
        """The warehouse checked every unit of the return: each is sellable or damaged."""
        case = self.return_case(return_id)
        case.require(ReturnStatus.SHIPPED, "be received")
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

    # -- guards ----------------------------------------------------------------------

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
        for sid, withdrawn in e.withdrawn.items():
            left = {no: n - withdrawn.get(no, 0) for no, n in self.parcels[sid].items() if n - withdrawn.get(no, 0)}
            self.parcels[sid] = left
            if not left:
                self.shipments[sid] = ShipmentProgress.CANCELLED
        for sid, lost in e.lost.items():
            settled = self.lost_refunded.setdefault(sid, {})
            for line_no, n in lost.items():
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
