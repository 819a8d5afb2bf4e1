"""Checkout: one customer's purchase, split into one Order per merchant (spec §5.1).

The checkout is what the customer pays, with one payment for all its merchant orders,
and what is cancelled, as a whole, before payment.  After payment each order is handled
on its own and money goes back only through refunds.

States: ``open → paid`` or ``open → cancelled``.  A payment that arrives for a cancelled
or overdue checkout (a late payment) is real money: it is recorded beside the checkout
and refunded in full by its orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import Field

from ecomcore.domain.aggregate import Aggregate, DomainEvent, applies
from ecomcore.domain.errors import IllegalTransition, PaymentRefused
from ecomcore.domain.pricing import apportion
from ecomcore.domain.stock_item import ReleaseReason

_CHECKOUT_NAMESPACE = uuid5(NAMESPACE_URL, "https://ecomcore/checkout")


def checkout_id_for_request(client_request_id: str) -> UUID:
    """A client that retries a checkout with the same request id names the same checkout."""
    return uuid5(_CHECKOUT_NAMESPACE, client_request_id)


class CancelReason(StrEnum):
    CUSTOMER = "customer"
    TIMEOUT = "timeout"
    OPERATIONS = "operations"

    @property
    def release_reason(self) -> ReleaseReason:
        """Why the cancelled orders' stock and coupons are given back."""
        return ReleaseReason.EXPIRED if self is CancelReason.TIMEOUT else ReleaseReason.CANCELLED


class PaymentEvent(DomainEvent):
    """One payment as the provider reported it; Checkout and Order both record payments.

    ``amount`` may be zero: a checkout discounted to nothing is paid 0.  A late payment
    is never zero (``Checkout.record_late_payment`` refuses it), but the shape stays as
    permissive as every payment event ever stored, so that history always loads.
    """

    payment_id: str
    amount: int = Field(ge=0)
    provider_txn: str


class Checkout(Aggregate):
    class Placed(DomainEvent):
        customer_id: str
        order_ids: tuple[UUID, ...]
        payable: int = Field(ge=0)
        payment_deadline: datetime
        client_request_id: str | None
        coupon_ids: tuple[UUID, ...]

    class Paid(PaymentEvent):
        """The checkout's payable was paid on time."""

    class LatePaymentReceived(PaymentEvent):
        """Real money that arrived after cancellation or the deadline; it is refunded."""

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

    # -- queries ---------------------------------------------------------------------

    @property
    def is_paid(self) -> bool:
        return self.payment_id is not None

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_reason is not None

    @property
    def is_open(self) -> bool:
        """Neither paid nor cancelled yet."""
        return not self.is_paid and not self.is_cancelled

    def is_overdue(self, now: datetime) -> bool:
        """Still open at or after its payment deadline."""
        assert self.payment_deadline is not None
        return self.is_open and now >= self.payment_deadline

    def takes_payment_on_time(self, now: datetime) -> bool:
        """Whether a payment now pays the checkout; otherwise it is a late payment."""
        return self.is_open and not self.is_overdue(now)

    def recorded_payment(self, payment_id: str, amount: int) -> bool:
        """Whether this very payment was recorded already (paying again is a no-op).

        The same payment id with another amount is refused: a provider would not do that.
        """
        earlier = self.paid_amount if self.payment_id == payment_id else self.late_payments.get(payment_id)
        if earlier is None:
            return False
        if earlier != amount:
            raise PaymentRefused(f"payment {payment_id} was recorded with amount {earlier}; it cannot now be {amount}")
        return True

    def late_payment_shares(self, amount: int, order_payables: Sequence[int]) -> list[int]:
        """How a late payment is split over the orders: in proportion to what each was to be
        paid (equally if nothing was), so each order refunds its share."""
        weights = list(order_payables) if any(order_payables) else [1] * len(order_payables)
        return apportion(amount, weights)

    # -- commands --------------------------------------------------------------------

    def mark_paid(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        """Pay the checkout: only an open one, and only its payable exactly."""
        if not self.is_open:
            state = "paid" if self.is_paid else "cancelled"
            raise IllegalTransition(f"checkout {self.id} is {state}; it cannot be paid again")
        if amount != self.payable:
            raise PaymentRefused(f"checkout {self.id} owes {self.payable}; a payment of {amount} does not match")
        self._record(self.Paid, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)

    def record_late_payment(self, payment_id: str, amount: int, provider_txn: str, now: datetime) -> None:
        if amount == 0:
            raise PaymentRefused(f"checkout {self.id} is no longer payable")
        self._record(self.LatePaymentReceived, now, payment_id=payment_id, amount=amount, provider_txn=provider_txn)

    def cancel(self, reason: CancelReason, now: datetime) -> bool:
        """Cancel before payment; False if it was cancelled already."""
        if self.is_paid:
            raise IllegalTransition(
                f"checkout {self.id} is paid; after payment money goes back only through refunds"
            )
        if self.is_cancelled:
            return False
        self._record(self.Cancelled, now, reason=reason)
        return True

    # -- state changes -------------------------------------------------------------

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
