"""Order (spec §5.1): given events, when a command, then the new events or a typed error.

The Checkout the orders belong to is tested in ``test_checkout.py``; after-sales in ``test_after_sales.py``.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from events import an_event, assert_events
from strategies import T0, make_line, replayed, state

from ecomcore.domain.aggregate import project
from ecomcore.domain.checkout import CancelReason, checkout_id_for_request
from ecomcore.domain.errors import IllegalTransition
from ecomcore.domain.order import LATE_PAYMENT, CompletionKind, Order, OrderState, RefundStatus, order_id_for
from ecomcore.domain.parcels import PlannedParcel

CHECKOUT = checkout_id_for_request("req-1")
ORDER = order_id_for(CHECKOUT, "m1")
S1 = UUID("00000000-0000-4000-8000-000000000051")
S2 = UUID("00000000-0000-4000-8000-000000000052")
DEADLINE = T0 + timedelta(hours=24)
PAID_AT = T0 + timedelta(hours=1)
LINES = (make_line(1, "sku-1", 2, unit_price=2990), make_line(2, "sku-2", 1, unit_price=4500))
PAYABLE = 2 * 2990 + 4500 + 800


def order(*, paid: bool = False, shipments: tuple[UUID, ...] = ()) -> Order:
    live = Order.place(
        ORDER,
        T0,
        checkout_id=CHECKOUT,
        customer_id="cust-1",
        merchant_id="m1",
        currency="CNY",
        lines=LINES,
        promotion_id=None,
        merchant_coupon_id=None,
        platform_coupon_id=None,
        freight=800,
        payable=PAYABLE,
        payment_deadline=DEADLINE,
        shipping_address="1 Tea Street",
    )
    if paid or shipments:
        live.pay("pay-1", PAYABLE, "txn-1", PAID_AT)
    if shipments:
        live.plan_shipments(parcels(*shipments), PAID_AT)
    return replayed(live)


def parcels(*shipment_ids: UUID) -> tuple[PlannedParcel, ...]:
    """One parcel carries everything; two carry line 1 and line 2 apart."""
    if len(shipment_ids) == 1:
        return (PlannedParcel(shipment_id=shipment_ids[0], lines={1: 2, 2: 1}),)
    first, second = shipment_ids
    return (PlannedParcel(shipment_id=first, lines={1: 2}), PlannedParcel(shipment_id=second, lines={2: 1}))


# ------------------------------------------------------------------ identities


def test_checkout_and_order_ids_are_deterministic() -> None:
    """The same client request id names the same checkout; each merchant gets its own order id."""
    assert checkout_id_for_request("req-1") == CHECKOUT
    assert checkout_id_for_request("req-2") != CHECKOUT
    assert order_id_for(CHECKOUT, "m1") == ORDER
    assert order_id_for(CHECKOUT, "m2") != ORDER


def test_placed_order_is_pending_payment() -> None:
    """A placed order records its lines and money, is pending payment and owes no refund."""
    o = order()
    (placed,) = o.given_history  # type: ignore[attr-defined]
    assert isinstance(placed, Order.Placed)
    assert o.state is OrderState.PENDING_PAYMENT
    assert (o.gross, o.goods_net, o.payable, o.freight) == (10480, 10480, PAYABLE, 800)
    assert o.refund_status is RefundStatus.NONE


def test_order_needs_at_least_one_line() -> None:
    """An order without lines fails validation."""
    with pytest.raises(ValueError):
        Order.Placed(
            originator_id=ORDER, originator_version=1, timestamp=T0, checkout_id=CHECKOUT, customer_id="c",
            merchant_id="m1", currency="CNY", lines=(), promotion_id=None, merchant_coupon_id=None,
            platform_coupon_id=None, freight=0, payable=0, payment_deadline=DEADLINE, shipping_address="x",
        )


# ------------------------------------------------------------------ order: payment and cancellation


def test_pay_pending_order() -> None:
    """Paying a pending order records Paid and moves it to paid."""
    o = order()
    o.pay("pay-1", PAYABLE, "txn-1", PAID_AT)
    (event,) = o.collect_events()
    assert isinstance(event, Order.Paid) and (event.payment_id, event.amount) == ("pay-1", PAYABLE)
    assert o.state is OrderState.PAID and o.paid == PAYABLE and o.paid_at == PAID_AT


@pytest.mark.parametrize("given", ["paid", "cancelled"])
def test_pay_only_pending(given: str) -> None:
    """A paid or cancelled order cannot be paid: IllegalTransition, nothing recorded."""
    o = order(paid=given == "paid")
    if given == "cancelled":
        o.cancel(CancelReason.CUSTOMER, T0)
        o = replayed(o)
    with pytest.raises(IllegalTransition):
        o.pay("pay-2", PAYABLE, "txn-2", PAID_AT)
    assert o.collect_events() == []
    assert o.state is OrderState(given)


@pytest.mark.parametrize("reason", list(CancelReason))
def test_cancel_before_payment(reason: CancelReason) -> None:
    """An unpaid order can be cancelled for any reason; the reason is recorded."""
    o = order()
    o.cancel(reason, T0)
    (event,) = o.collect_events()
    assert isinstance(event, Order.Cancelled) and event.reason is reason
    assert o.state is OrderState.CANCELLED


def test_cancel_is_idempotent() -> None:
    """Cancelling a cancelled order records nothing."""
    o = order()
    o.cancel(CancelReason.CUSTOMER, T0)
    o = replayed(o)
    o.cancel(CancelReason.TIMEOUT, DEADLINE)
    assert o.collect_events() == []


def test_cancel_after_payment_is_refused() -> None:
    """A paid order cannot be cancelled (money goes back only through refunds)."""
    o = order(paid=True)
    with pytest.raises(IllegalTransition) as caught:
        o.cancel(CancelReason.CUSTOMER, PAID_AT)
    assert caught.value.code == "illegal_transition"
    assert o.collect_events() == []
    assert o.state is OrderState.PAID


def test_late_payment_is_recorded_and_refunded_in_full() -> None:
    """A late payment records LatePaymentReceived and a RefundIssued of the same amount for late_payment."""
    o = order()
    o.cancel(CancelReason.TIMEOUT, DEADLINE)
    o = replayed(o)
    o.record_late_payment("pay-1", 5000, "txn-1", DEADLINE + timedelta(minutes=5))
    received, refund = o.collect_events()
    assert isinstance(received, Order.LatePaymentReceived)
    assert (received.payment_id, received.amount, received.provider_txn) == ("pay-1", 5000, "txn-1")
    assert isinstance(refund, Order.RefundIssued)
    assert (refund.amount, refund.reason, refund.lines, refund.freight) == (5000, LATE_PAYMENT, {}, 0)
    assert "pay-1" in refund.refund_id
    assert o.state is OrderState.CANCELLED
    assert (o.late_payments, o.late_refunded) == (5000, 5000)


def test_late_payment_refund_leaves_refund_status_none() -> None:
    """The refund of a late payment is not a goods refund: refund status stays NONE and refunded 0."""
    o = order()
    o.cancel(CancelReason.TIMEOUT, DEADLINE)
    o.record_late_payment("pay-1", PAYABLE, "txn-1", DEADLINE)
    o = replayed(o)
    assert o.refund_status is RefundStatus.NONE
    assert o.refunded == 0 and o.paid == 0


def test_late_payment_refund_ids_differ_per_payment_and_order() -> None:
    """Each late payment gets its own refund id, distinct per order, so providers can tell them apart."""
    o = order()
    o.cancel(CancelReason.TIMEOUT, DEADLINE)
    o.record_late_payment("pay-1", 100, "txn-1", DEADLINE)
    o.record_late_payment("pay-2", 200, "txn-2", DEADLINE)
    ids = [e.refund_id for e in o.collect_events() if isinstance(e, Order.RefundIssued)]
    assert len(set(ids)) == 2
    assert all(str(ORDER) in refund_id for refund_id in ids)


def test_refund_status_follows_goods_refunds() -> None:
    """Refund status is NONE, then PARTIAL, then FULL once every unit is refunded; the order then closes."""
    o = order(shipments=(S1,))
    assert o.refund_status is RefundStatus.NONE
    o.issue_refund("r1", o.plan_refund_only({1: 1}), "out of stock", PAID_AT)
    assert o.refund_status is RefundStatus.PARTIAL and o.state is OrderState.PAID
    assert (o.refunded_units, o.refunded_amounts) == ({1: 1}, {1: 2990})
    o.issue_refund("r2", o.plan_refund_only({1: 1, 2: 1}), "out of stock", PAID_AT)
    assert o.refund_status is RefundStatus.FULL and o.state is OrderState.CLOSED
    assert o.refunded == o.paid == PAYABLE


# ------------------------------------------------------------------ shipments and completion


def test_shipments_planned_after_payment() -> None:
    """A paid order records ShipmentsPlanned; every shipment starts planned."""
    o = order(paid=True)
    o.plan_shipments(parcels(S1, S2), PAID_AT)
    (event,) = o.collect_events()
    assert isinstance(event, Order.ShipmentsPlanned) and [p.shipment_id for p in event.parcels] == [S1, S2]
    assert set(o.shipments) == {S1, S2}
    assert o.state is OrderState.PAID


def test_shipments_cannot_be_planned_before_payment() -> None:
    """Shipments are planned only for a paid order."""
    o = order()
    with pytest.raises(IllegalTransition):
        o.plan_shipments(parcels(S1), T0)
    assert o.collect_events() == []


def test_unknown_shipment_is_refused() -> None:
    """Events of a shipment that does not belong to the order are refused."""
    o = order(shipments=(S1,))
    for command in (
        lambda: o.shipment_dispatched(S2, PAID_AT),
        lambda: o.shipment_delivered(S2, PAID_AT),
        lambda: o.shipment_failed(S2, "lost", PAID_AT),
    ):
        with pytest.raises(IllegalTransition):
            command()
    assert o.collect_events() == []


def test_partially_shipped_then_shipped_then_delivered() -> None:
    """The order state follows its shipments: partially shipped, shipped, then delivered when all arrive."""
    o = order(shipments=(S1, S2))
    o.shipment_dispatched(S1, PAID_AT + timedelta(hours=1))
    assert o.state is OrderState.PARTIALLY_SHIPPED
    o.shipment_dispatched(S2, PAID_AT + timedelta(hours=2))
    assert o.state is OrderState.SHIPPED
    o.shipment_delivered(S1, PAID_AT + timedelta(days=1))
    assert o.state is OrderState.SHIPPED
    arrived = PAID_AT + timedelta(days=2)
    o.shipment_delivered(S2, arrived)
    assert o.state is OrderState.DELIVERED and o.delivered_at == arrived
    rebuilt = replayed(o)
    assert_events(
        rebuilt.given_history[-4:],
        an_event(Order.ShipmentDispatched, shipment_id=S1),
        an_event(Order.ShipmentDispatched, shipment_id=S2),
        an_event(Order.ShipmentDelivered, shipment_id=S1),
        an_event(Order.ShipmentDelivered, shipment_id=S2, timestamp=arrived),
    )
    assert state(rebuilt) == state(o)


def test_one_of_two_shipments_delivered_is_partially_shipped() -> None:
    """A delivered shipment while another is still planned leaves the order partially shipped."""
    o = order(shipments=(S1, S2))
    o.shipment_dispatched(S1, PAID_AT)
    o.shipment_delivered(S1, PAID_AT)
    assert o.state is OrderState.PARTIALLY_SHIPPED
    assert o.delivered_at is None


def test_failed_shipment_does_not_make_order_delivered() -> None:
    """A failed parcel is recorded and the order is not delivered."""
    o = order(shipments=(S1, S2))
    o.shipment_dispatched(S1, PAID_AT)
    o.shipment_dispatched(S2, PAID_AT)
    o.shipment_delivered(S1, PAID_AT)
    o.shipment_failed(S2, "lost", PAID_AT)
    assert_events(
        o.collect_events(),
        an_event(Order.ShipmentDispatched, shipment_id=S1),
        an_event(Order.ShipmentDispatched, shipment_id=S2),
        an_event(Order.ShipmentDelivered, shipment_id=S1),
        an_event(Order.ShipmentFailed, shipment_id=S2, reason="lost"),
    )
    assert o.state is not OrderState.DELIVERED


def _delivered() -> Order:
    o = order(shipments=(S1,))
    o.shipment_dispatched(S1, PAID_AT)
    o.shipment_delivered(S1, PAID_AT + timedelta(days=2))
    return replayed(o)


def test_confirm_receipt_completes_delivered_order() -> None:
    """The customer confirming receipt of a delivered order records Completed(how=confirmed)."""
    o = _delivered()
    o.confirm_receipt(PAID_AT + timedelta(days=3))
    (event,) = o.collect_events()
    assert isinstance(event, Order.Completed) and event.how == "confirmed" and event.how is CompletionKind.CONFIRMED
    assert o.state is OrderState.COMPLETED


@pytest.mark.parametrize("given", ["pending", "paid", "shipped", "completed"])
def test_confirm_receipt_only_when_delivered(given: str) -> None:
    """Receipt can be confirmed only for a delivered order."""
    if given == "pending":
        o = order()
    elif given == "paid":
        o = order(paid=True)
    elif given == "shipped":
        o = order(shipments=(S1,))
        o.shipment_dispatched(S1, PAID_AT)
        o = replayed(o)
    else:
        o = _delivered()
        o.confirm_receipt(PAID_AT + timedelta(days=3))
        o = replayed(o)
    with pytest.raises(IllegalTransition):
        o.confirm_receipt(PAID_AT + timedelta(days=4))
    assert o.collect_events() == []


def test_automatic_completion_only_after_window() -> None:
    """A delivered order completes automatically only once the after-sales window has passed."""
    o = _delivered()
    assert o.delivered_at is not None
    window_end = o.delivered_at + timedelta(days=7)
    assert o.complete_if_window_passed(window_end, window_end - timedelta(seconds=1)) is False
    assert o.collect_events() == []
    assert o.complete_if_window_passed(window_end, window_end) is True
    (event,) = o.collect_events()
    assert isinstance(event, Order.Completed) and event.how == "automatic"
    assert o.complete_if_window_passed(window_end, window_end + timedelta(days=1)) is False
    assert o.collect_events() == []


def test_automatic_completion_needs_delivery() -> None:
    """An order that is not delivered never completes automatically."""
    o = order(shipments=(S1,))
    o.shipment_dispatched(S1, PAID_AT)
    assert o.complete_if_window_passed(PAID_AT, PAID_AT + timedelta(days=30)) is False
    assert_events(o.collect_events(), an_event(Order.ShipmentDispatched, shipment_id=S1, timestamp=PAID_AT))


def test_order_replay_equals_live() -> None:
    """Replaying an order's full history rebuilds the live order."""
    o = _delivered()
    o.confirm_receipt(PAID_AT + timedelta(days=3))
    history = [*o.given_history, *o.collect_events()]  # type: ignore[attr-defined]
    assert [e.originator_version for e in history] == list(range(1, len(history) + 1))
    assert state(project(None, history)) == state(o)  # type: ignore[arg-type]
