"""Checkout (spec §5.1): given events, when a command, then the new events or a typed error.

The checkout is paid as a whole (its payable exactly, once), cancelled as a whole before
payment, and splits a late payment over its orders.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from events import an_event, assert_events
from hypothesis import given
from hypothesis import strategies as st
from strategies import T0, replayed

from ecomcore.domain.checkout import CancelReason, Checkout, checkout_id_for_request
from ecomcore.domain.errors import IllegalTransition, PaymentRefused
from ecomcore.domain.order import order_id_for
from ecomcore.domain.stock_item import ReleaseReason

CHECKOUT = checkout_id_for_request("req-1")
ORDER = order_id_for(CHECKOUT, "m1")
OTHER_ORDER = order_id_for(CHECKOUT, "m2")
COUPON = UUID("00000000-0000-4000-8000-0000000000c1")
DEADLINE = T0 + timedelta(hours=24)
PAID_AT = T0 + timedelta(hours=1)
PAYABLE = 2 * 2990 + 4500 + 800


def checkout(**overrides: Any) -> Checkout:
    facts: dict[str, Any] = {
        "customer_id": "cust-1",
        "order_ids": (ORDER,),
        "payable": PAYABLE,
        "payment_deadline": DEADLINE,
        "client_request_id": "req-1",
        "coupon_ids": (),
    } | overrides
    return replayed(Checkout.place(CHECKOUT, T0, **facts))


# ------------------------------------------------------------------ placing


def test_place_records_the_checkout() -> None:
    """Placing records Placed with its orders, payable, deadline and coupons; the checkout is open."""
    live = Checkout.place(
        CHECKOUT, T0, customer_id="cust-1", order_ids=(ORDER, OTHER_ORDER), payable=PAYABLE,
        payment_deadline=DEADLINE, client_request_id="req-1", coupon_ids=(COUPON,),
    )
    assert_events(
        live.collect_events(),
        an_event(
            Checkout.Placed, originator_id=CHECKOUT, originator_version=1, timestamp=T0, customer_id="cust-1",
            order_ids=(ORDER, OTHER_ORDER), payable=PAYABLE, payment_deadline=DEADLINE, client_request_id="req-1",
            coupon_ids=(COUPON,),
        ),
    )
    assert live.is_open and not live.is_paid and not live.is_cancelled


def test_checkout_id_follows_the_client_request_id() -> None:
    """The same client request id names the same checkout."""
    assert checkout_id_for_request("req-1") == CHECKOUT
    assert checkout_id_for_request("req-2") != CHECKOUT


# ------------------------------------------------------------------ when a payment is on time


def test_checkout_overdue_only_when_unpaid_at_or_after_deadline() -> None:
    """A checkout is overdue from its payment deadline on, unless it was paid."""
    c = checkout()
    assert not c.is_overdue(DEADLINE - timedelta(seconds=1))
    assert c.is_overdue(DEADLINE)
    c.mark_paid("pay-1", PAYABLE, "txn-1", PAID_AT)
    assert not c.is_overdue(DEADLINE + timedelta(days=1))


def test_cancelled_checkout_is_not_overdue() -> None:
    """Overdue means still open past the deadline: a cancelled checkout is no longer overdue."""
    c = checkout()
    c.cancel(CancelReason.CUSTOMER, T0)
    assert not c.is_overdue(DEADLINE + timedelta(days=1))


def test_payment_is_on_time_only_while_open_and_before_the_deadline() -> None:
    """A payment pays the checkout while it is open and before its deadline; otherwise it is late."""
    c = checkout()
    assert c.takes_payment_on_time(DEADLINE - timedelta(seconds=1))
    assert not c.takes_payment_on_time(DEADLINE)
    cancelled = checkout()
    cancelled.cancel(CancelReason.CUSTOMER, T0)
    assert not cancelled.takes_payment_on_time(T0)
    paid = checkout()
    paid.mark_paid("pay-1", PAYABLE, "txn-1", PAID_AT)
    assert not paid.takes_payment_on_time(PAID_AT)


# ------------------------------------------------------------------ paying


def test_checkout_mark_paid_records_payment() -> None:
    """Paying a pending checkout records Paid with payment id, amount and provider txn."""
    c = checkout()
    c.mark_paid("pay-1", PAYABLE, "txn-1", PAID_AT)
    assert_events(c.collect_events(), an_event(Checkout.Paid, payment_id="pay-1", amount=PAYABLE, provider_txn="txn-1"))
    assert c.is_paid and c.paid_amount == PAYABLE


@pytest.mark.parametrize("amount", [PAYABLE - 1, PAYABLE + 1, 0])
def test_payment_must_equal_the_payable(amount: int) -> None:
    """A payment of any other amount than the payable is refused with PaymentRefused; nothing is recorded."""
    c = checkout()
    with pytest.raises(PaymentRefused) as refused:
        c.mark_paid("pay-1", amount, "txn-1", PAID_AT)
    assert refused.value.code == "payment_refused"
    assert refused.value.message == f"checkout {CHECKOUT} owes {PAYABLE}; a payment of {amount} does not match"
    assert c.collect_events() == [] and c.is_open


def test_a_checkout_discounted_to_nothing_is_paid_zero() -> None:
    """A payable of 0 is paid with a payment of 0."""
    c = checkout(payable=0)
    c.mark_paid("pay-0", 0, "txn-0", PAID_AT)
    assert_events(c.collect_events(), an_event(Checkout.Paid, payment_id="pay-0", amount=0, provider_txn="txn-0"))


@pytest.mark.parametrize("given", ["cancelled", "paid"])
def test_checkout_mark_paid_only_when_pending(given: str) -> None:
    """Only a pending checkout can be paid: a cancelled or already paid one refuses another payment."""
    c = checkout()
    if given == "cancelled":
        c.cancel(CancelReason.TIMEOUT, DEADLINE)
    else:
        c.mark_paid("pay-1", PAYABLE, "txn-1", PAID_AT)
    c = replayed(c)
    with pytest.raises(IllegalTransition):
        c.mark_paid("pay-2", PAYABLE, "txn-2", PAID_AT)
    assert c.collect_events() == []


def test_the_same_payment_again_is_recognised() -> None:
    """A payment id already recorded with the same amount is recognised (paying again is a no-op)."""
    c = checkout()
    assert c.recorded_payment("pay-1", PAYABLE) is False
    c.mark_paid("pay-1", PAYABLE, "txn-1", PAID_AT)
    c = replayed(c)
    assert c.recorded_payment("pay-1", PAYABLE) is True
    assert c.recorded_payment("pay-2", PAYABLE) is False


@pytest.mark.parametrize("late", [False, True])
def test_the_same_payment_id_with_another_amount_is_refused(late: bool) -> None:
    """A recorded payment id (on time or late) with a different amount raises PaymentRefused."""
    c = checkout()
    if late:
        c.cancel(CancelReason.TIMEOUT, DEADLINE)
        c.record_late_payment("pay-1", 500, "txn-1", DEADLINE)
    else:
        c.mark_paid("pay-1", PAYABLE, "txn-1", PAID_AT)
    c = replayed(c)
    recorded = 500 if late else PAYABLE
    with pytest.raises(PaymentRefused, match=f"payment pay-1 was recorded with amount {recorded}; it cannot now be 7"):
        c.recorded_payment("pay-1", 7)


# ------------------------------------------------------------------ late payments


def test_checkout_late_payment_recorded() -> None:
    """A late payment on a cancelled checkout is recorded beside it, not as the checkout's payment."""
    c = checkout()
    c.cancel(CancelReason.TIMEOUT, DEADLINE)
    c = replayed(c)
    c.record_late_payment("pay-1", PAYABLE, "txn-1", DEADLINE + timedelta(minutes=5))
    assert_events(
        c.collect_events(),
        an_event(
            Checkout.LatePaymentReceived, payment_id="pay-1", amount=PAYABLE, provider_txn="txn-1",
            timestamp=DEADLINE + timedelta(minutes=5),
        ),
    )
    assert c.late_payments == {"pay-1": PAYABLE}
    assert not c.is_paid and c.is_cancelled


def test_a_late_payment_of_nothing_is_refused() -> None:
    """A late payment must be real money: zero raises PaymentRefused and records nothing."""
    c = checkout()
    c.cancel(CancelReason.TIMEOUT, DEADLINE)
    c = replayed(c)
    with pytest.raises(PaymentRefused, match=f"checkout {CHECKOUT} is no longer payable"):
        c.record_late_payment("pay-1", 0, "txn-1", DEADLINE)
    assert c.collect_events() == []


def test_late_payment_is_split_by_what_each_order_was_to_be_paid() -> None:
    """Each order's share of a late payment follows its payable (largest remainder, ties to the first)."""
    c = checkout(order_ids=(ORDER, OTHER_ORDER))
    assert c.late_payment_shares(1000, [3000, 1000]) == [750, 250]
    assert c.late_payment_shares(1001, [1000, 1000]) == [501, 500]


def test_late_payment_over_orders_that_owed_nothing_is_split_equally() -> None:
    """Orders that were to be paid nothing share a late payment equally."""
    c = checkout(order_ids=(ORDER, OTHER_ORDER), payable=0)
    assert c.late_payment_shares(7, [0, 0]) == [4, 3]


@given(st.integers(1, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=5))
def test_late_payment_shares_sum_to_the_payment(amount: int, payables: list[int]) -> None:
    """However the orders' payables are, the shares sum exactly to the late payment."""
    shares = checkout().late_payment_shares(amount, payables)
    assert sum(shares) == amount and len(shares) == len(payables) and min(shares) >= 0


# ------------------------------------------------------------------ cancelling


def test_checkout_cancel_before_payment_and_idempotent() -> None:
    """Cancelling an unpaid checkout records Cancelled once; cancelling again records nothing."""
    c = checkout()
    assert c.cancel(CancelReason.CUSTOMER, T0) is True
    c = replayed(c)
    assert_events(c.given_history[-1:], an_event(Checkout.Cancelled, reason=CancelReason.CUSTOMER))
    assert c.cancel(CancelReason.TIMEOUT, DEADLINE) is False
    assert c.collect_events() == []
    assert c.cancelled_reason is CancelReason.CUSTOMER


def test_checkout_cancel_after_payment_is_refused() -> None:
    """A paid checkout cannot be cancelled: IllegalTransition, nothing recorded."""
    c = checkout()
    c.mark_paid("pay-1", PAYABLE, "txn-1", PAID_AT)
    c = replayed(c)
    with pytest.raises(IllegalTransition) as caught:
        c.cancel(CancelReason.CUSTOMER, PAID_AT)
    assert caught.value.code == "illegal_transition"
    assert caught.value.message == (
        f"checkout {CHECKOUT} is paid; after payment money goes back only through refunds"
    )
    assert c.collect_events() == []


@pytest.mark.parametrize(
    ("reason", "released"),
    [
        (CancelReason.TIMEOUT, ReleaseReason.EXPIRED),
        (CancelReason.CUSTOMER, ReleaseReason.CANCELLED),
        (CancelReason.OPERATIONS, ReleaseReason.CANCELLED),
    ],
)
def test_cancel_reason_says_why_stock_and_coupons_are_released(reason: CancelReason, released: ReleaseReason) -> None:
    """A timeout releases reservations and coupons as expired; any other cancellation as cancelled."""
    assert reason.release_reason is released
