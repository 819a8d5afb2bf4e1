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

from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

from ecomcore.domain.aggregate import Aggregate, DomainEvent, applies
from ecomcore.domain.catalogue import Sku
from ecomcore.domain.errors import IllegalTransition

_CHECKOUT_NAMESPACE = uuid5(NAMESPACE_URL, "https://ecomcore/checkout")


def checkout_id_for_request(client_request_id: str) -> UUID:
    """A client that retries a checkout with the same request id names the same checkout."""
    return uuid5(_CHECKOUT_NAMESPACE, client_request_id)


def order_id_for(checkout_id: UUID, merchant_id: str) -> UUID:
    return uuid5(checkout_id, f"order:{merchant_id}")


#: Refund reason of the automatic refund of a payment that arrived too late.
LATE_PAYMENT = "late_payment"


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
    sku: Sku
    quantity: int = Field(gt=0)
    gross: int = Field(ge=0)
    promotion_discount: int = Field(ge=0)
    merchant_coupon_discount: int = Field(ge=0)
    platform_coupon_discount: int = Field(ge=0)
    net: int = Field(ge=0)
    allocations: tuple[Allocation, ...]


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
        refund_id: str
        amount: int = Field(ge=0)
        reason: str
        #: line_no → (units, amount) refunded for goods; empty for a late-payment refund.
        lines: dict[int, tuple[int, int]] = {}
        freight: int = Field(0, ge=0)

    class Cancelled(DomainEvent):
        reason: CancelReason

    class ShipmentsPlanned(DomainEvent):
        shipment_ids: tuple[UUID, ...]

    class ShipmentDispatched(DomainEvent):
        shipment_id: UUID

    class ShipmentDelivered(DomainEvent):
        shipment_id: UUID

    class ShipmentFailed(DomainEvent):
        shipment_id: UUID
        reason: str

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
        self.refunded = 0
        self.refunds: dict[str, int] = {}
        self.refunded_units: dict[int, int] = {}
        self.refunded_amounts: dict[int, int] = {}
        self.late_payments = 0
        self.late_refunded = 0
        self.shipments: dict[UUID, ShipmentProgress] = {}
        self.delivered_at: datetime | None = None
        self.paid_at: datetime | None = None

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
    def refund_status(self) -> RefundStatus:
        if self.refunded == 0:
            return RefundStatus.NONE
        return RefundStatus.FULL if self.refunded >= self.paid else RefundStatus.PARTIAL

    def line(self, line_no: int) -> OrderLine:
        for line in self.lines:
            if line.line_no == line_no:
                return line
        raise IllegalTransition(f"order {self.id} has no line {line_no}")

    # -- commands ------------------------------------------------------------------

    def pay(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        self._require(OrderState.PENDING_PAYMENT, "be paid")
        self._record(self.Paid, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)

    def record_late_payment(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        """Keep the books honest: the late money is recorded, then refunded in full."""
        self._record(self.LatePaymentReceived, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)
        self._record(
            self.RefundIssued, now, refund_id=f"late:{payment_id}:{self.id}", amount=amount, reason=LATE_PAYMENT
        )

    def cancel(self, reason: CancelReason, now: datetime) -> None:
        if self.state is OrderState.CANCELLED:
            return
        self._require(OrderState.PENDING_PAYMENT, "be cancelled")
        self._record(self.Cancelled, now, reason=reason)

    def plan_shipments(self, shipment_ids: tuple[UUID, ...], now: datetime) -> None:
        self._require(OrderState.PAID, "plan shipments")
        self._record(self.ShipmentsPlanned, now, shipment_ids=shipment_ids)

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
        if self.state is OrderState.DELIVERED and now >= window_end:
            self._record(self.Completed, now, how="automatic")
            return True
        return False

    def _require(self, state: OrderState, action: str) -> None:
        if self.state is not state:
            raise IllegalTransition(f"order {self.id} is {self.state.value}; it must be {state.value} to {action}")

    def _require_shipment(self, shipment_id: UUID) -> None:
        if shipment_id not in self.shipments:
            raise IllegalTransition(f"shipment {shipment_id} does not belong to order {self.id}")

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
        self.refunds[e.refund_id] = e.amount
        if e.reason == LATE_PAYMENT:
            self.late_refunded += e.amount
            return
        self.refunded += e.amount
        for line_no, (units, amount) in e.lines.items():
            self.refunded_units[line_no] = self.refunded_units.get(line_no, 0) + units
            self.refunded_amounts[line_no] = self.refunded_amounts.get(line_no, 0) + amount

    @applies(Cancelled)
    def _cancelled(self, e: Cancelled) -> None:
        self.state = OrderState.CANCELLED

    @applies(ShipmentsPlanned)
    def _shipments_planned(self, e: ShipmentsPlanned) -> None:
        self.shipments.update({sid: ShipmentProgress.PLANNED for sid in e.shipment_ids})

    @applies(ShipmentDispatched)
    def _shipment_dispatched(self, e: ShipmentDispatched) -> None:
        self.shipments[e.shipment_id] = ShipmentProgress.DISPATCHED
        self._follow_shipments(e.timestamp)

    @applies(ShipmentDelivered)
    def _shipment_delivered(self, e: ShipmentDelivered) -> None:
        self.shipments[e.shipment_id] = ShipmentProgress.DELIVERED
        self._follow_shipments(e.timestamp)

    @applies(ShipmentFailed)
    def _shipment_failed(self, e: ShipmentFailed) -> None:
        self.shipments[e.shipment_id] = ShipmentProgress.FAILED
        self._follow_shipments(e.timestamp)

    @applies(Completed)
    def _completed(self, e: Completed) -> None:
        self.state = OrderState.COMPLETED

    def _follow_shipments(self, at: datetime) -> None:
        live = [p for p in self.shipments.values() if p is not ShipmentProgress.CANCELLED]
        if live and all(p is ShipmentProgress.DELIVERED for p in live):
            self.state, self.delivered_at = OrderState.DELIVERED, at
        elif live and all(p is not ShipmentProgress.PLANNED for p in live):
            self.state = OrderState.SHIPPED
        elif any(p is not ShipmentProgress.PLANNED for p in live):
            self.state = OrderState.PARTIALLY_SHIPPED
