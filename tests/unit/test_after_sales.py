"""Order after-sales (spec §3 unit refunds, §5.1): given events, when a command, then events or a typed error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest
from events import an_event, assert_events
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import T0, make_line, order_lines, replayed, state

from ecomcore.domain.after_sales import LineRefundable, RefundKind, RefundPlan, ReturnStatus
from ecomcore.domain.aggregate import project
from ecomcore.domain.checkout import CancelReason, checkout_id_for_request
from ecomcore.domain.errors import IllegalTransition, NotFound, RefundRefused, ReturnRefused
from ecomcore.domain.order import CompletionKind, Order, OrderLine, OrderState, RefundStatus, order_id_for
from ecomcore.domain.parcels import PlannedParcel, ShipmentProgress

CHECKOUT = checkout_id_for_request("req-after-sales")
ORDER = order_id_for(CHECKOUT, "m1")
S1 = UUID("00000000-0000-4000-8000-0000000000a1")
S2 = UUID("00000000-0000-4000-8000-0000000000a2")
S3 = UUID("00000000-0000-4000-8000-0000000000a3")
S4 = UUID("00000000-0000-4000-8000-0000000000a4")
R1 = UUID("00000000-0000-4000-8000-0000000000b1")
R2 = UUID("00000000-0000-4000-8000-0000000000b2")
RETURN_PARCEL = UUID("00000000-0000-4000-8000-0000000000c1")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DEADLINE = T0 + 24 * HOUR
PAID_AT = T0 + HOUR
DELIVERED_AT = PAID_AT + 2 * DAY
WINDOW = timedelta(days=7)
FREIGHT = 800


def discounted(line: OrderLine, discount: int) -> OrderLine:
    """``line`` with a merchant coupon share of ``discount`` (make_line has no discounts)."""
    return OrderLine.model_validate(
        {**line.model_dump(), "merchant_coupon_discount": discount, "net": line.gross - discount}
    )


#: The worked example of spec §3: L1 = 2 × 2990 with 856 off (net 5124), L2 = 1 × 4500 with 644 off (net 3856).
L1 = discounted(make_line(1, "sku-1", 2, unit_price=2990), 856)
L2 = discounted(make_line(2, "sku-2", 1, unit_price=4500), 644)
#: Three units whose net (1000) does not split evenly: 3 × 500 with 500 off.
L3 = discounted(make_line(3, "sku-3", 3, unit_price=500), 500)
LINES = (L1, L2)
PAYABLE = 5124 + 3856 + FREIGHT

ONE_PARCEL = {S1: {1: 2, 2: 1}}
TWO_PARCELS = {S1: {1: 2}, S2: {2: 1}}
#: Line 1 spread over two parcels; the second also carries line 2.
SPREAD = {S1: {1: 1}, S2: {1: 1, 2: 1}}


def placed(lines: tuple[OrderLine, ...] = LINES, freight: int = FREIGHT) -> Order:
    return Order.place(
        ORDER,
        T0,
        checkout_id=CHECKOUT,
        customer_id="cust-1",
        merchant_id="m1",
        currency="CNY",
        lines=lines,
        promotion_id=None,
        merchant_coupon_id=None,
        platform_coupon_id=None,
        freight=freight,
        payable=sum(line.net for line in lines) + freight,
        payment_deadline=DEADLINE,
        shipping_address="1 Tea Street",
    )


def paid(
    parcels: dict[UUID, dict[int, int]] | None = None, *, lines: tuple[OrderLine, ...] = LINES, freight: int = FREIGHT
) -> Order:
    """A paid order (rebuilt from its events), with ``parcels`` planned if given."""
    live = placed(lines, freight)
    live.pay("pay-1", live.payable, "txn-1", PAID_AT)
    if parcels:
        live.plan_shipments(
            tuple(PlannedParcel(shipment_id=sid, lines=units) for sid, units in parcels.items()), PAID_AT
        )
    return replayed(live)


def delivered(parcels: dict[UUID, dict[int, int]] | None = None, **kwargs: Any) -> Order:
    """Every parcel dispatched and delivered at DELIVERED_AT."""
    o = paid(parcels or ONE_PARCEL, **kwargs)
    for sid in o.shipments:
        o.shipment_dispatched(sid, PAID_AT + HOUR)
    for sid in list(o.shipments):
        o.shipment_delivered(sid, DELIVERED_AT)
    return replayed(o)


def refund(o: Order, refund_id: str, units: dict[int, int], at: Any = PAID_AT + HOUR) -> Any:
    return o.issue_refund(refund_id, o.plan_refund_only(units), "customer asked", at)


def line_summary(o: Order, line_no: int) -> LineRefundable:
    (found,) = [line for line in o.refundable().lines if line.line_no == line_no]
    return found


def test_worked_example_lines_are_priced_as_in_the_spec() -> None:
    """The §3 fixture lines carry nets 5124 and 3856, so the order is paid 9780 with freight."""
    assert (L1.net, L2.net, L3.net) == (5124, 3856, 1000)
    assert paid().paid == PAYABLE == 9780


# ------------------------------------------------------------------ refund only before dispatch


def test_refund_only_takes_units_from_the_last_planned_parcel_first() -> None:
    """Units refunded before dispatch leave the last planned parcel first, so earlier parcels stay whole."""
    o = paid(SPREAD)
    plan = o.plan_refund_only({1: 1})
    assert (plan.kind, plan.withdrawn, plan.lost, plan.kept) == (RefundKind.REFUND_ONLY, {S2: {1: 1}}, {}, {})
    assert (plan.lines, plan.freight, plan.amount) == ({1: (1, 2562)}, 0, 2562)
    o.issue_refund("r1", plan, "out of stock", PAID_AT + HOUR)
    (event,) = o.collect_events()
    assert isinstance(event, Order.RefundIssued)
    assert (event.refund_id, event.kind, event.amount) == ("r1", RefundKind.REFUND_ONLY, 2562)
    assert event.withdrawn == {S2: {1: 1}}
    assert o.parcels == {S1: {1: 1}, S2: {2: 1}}
    assert o.shipments == {S1: ShipmentProgress.PLANNED, S2: ShipmentProgress.PLANNED}
    # The next unit of line 1 can only come from S1, which it empties.
    assert o.plan_refund_only({1: 1}).withdrawn == {S1: {1: 1}}


def test_refund_only_that_empties_a_parcel_cancels_it() -> None:
    """A planned parcel whose every unit is refunded is cancelled in Order.shipments; the others stay planned."""
    o = paid(TWO_PARCELS)
    refund(o, "r1", {2: 1})
    assert o.shipments == {S1: ShipmentProgress.PLANNED, S2: ShipmentProgress.CANCELLED}
    assert o.parcels[S2] == {}
    assert o.state is OrderState.PAID and o.refund_status is RefundStatus.PARTIAL
    assert (o.refunded_units, o.refunded_amounts, o.refunded) == ({2: 1}, {2: 3856}, 3856)
    assert state(replayed(o)) == state(o)


def test_refund_only_spanning_two_parcels_takes_from_the_last_first() -> None:
    """Refunding more units than the last parcel holds takes the rest from the parcel before it."""
    o = paid({S1: {1: 1}, S2: {1: 1}, S3: {2: 1}})
    plan = o.plan_refund_only({1: 2})
    assert plan.withdrawn == {S2: {1: 1}, S1: {1: 1}}
    o.issue_refund("r1", plan, "out of stock", PAID_AT)
    assert o.shipments == {
        S1: ShipmentProgress.CANCELLED,
        S2: ShipmentProgress.CANCELLED,
        S3: ShipmentProgress.PLANNED,
    }


def test_unit_refunds_of_the_worked_example() -> None:
    """Net 5124 over 2 units refunds 2562 then 2562 (floor formula); line 2 refunds its whole net 3856."""
    o = paid(ONE_PARCEL)
    first = refund(o, "r1", {1: 1})
    second = refund(o, "r2", {1: 1})
    assert (first.lines, second.lines) == ({1: (1, 2562)}, {1: (1, 2562)})
    assert (first.amount, second.amount) == (2562, 2562)
    assert o.refunded_amounts == {1: 5124}


def test_unit_refunds_one_by_one_sum_exactly_to_the_net() -> None:
    """Net 1000 over 3 units refunds 333, 333, 334 one by one: exactly the line's net."""
    o = paid({S1: {3: 3}}, lines=(L3,), freight=0)
    amounts = [refund(o, f"r{i}", {3: 1}).lines[3] for i in range(3)]
    assert amounts == [(1, 333), (1, 333), (1, 334)]
    assert sum(amount for _, amount in amounts) == L3.net == 1000
    assert o.refunded == o.paid == 1000
    assert o.state is OrderState.CLOSED


@pytest.mark.parametrize(("first", "expected"), [(1, [333, 667]), (2, [666, 334])])
def test_unit_refunds_in_uneven_steps(first: int, expected: list[int]) -> None:
    """k units after r refunded give floor(net·(r+k)/n) − floor(net·r/n); the steps still sum to the net."""
    o = paid({S1: {3: 3}}, lines=(L3,), freight=0)
    a = refund(o, "r1", {3: first}).amount
    b = refund(o, "r2", {3: 3 - first}).amount
    assert [a, b] == expected and a + b == 1000


def test_whole_refund_before_dispatch_refunds_freight() -> None:
    """Refunding every unit before anything left refunds the freight too: the whole payment comes back."""
    o = paid(ONE_PARCEL)
    plan = o.plan_refund_only({1: 2, 2: 1})
    assert (plan.lines, plan.freight, plan.amount) == ({1: (2, 5124), 2: (1, 3856)}, FREIGHT, PAYABLE)
    o.issue_refund("r1", plan, "changed mind", PAID_AT + HOUR)
    (event,) = o.collect_events()
    assert isinstance(event, Order.RefundIssued) and (event.amount, event.freight) == (PAYABLE, FREIGHT)
    assert o.state is OrderState.CLOSED and o.refund_status is RefundStatus.FULL
    assert (o.refunded, o.freight_refunded) == (o.paid, FREIGHT)
    assert o.shipments == {S1: ShipmentProgress.CANCELLED}


def test_partial_refunds_before_dispatch_then_the_last_one_carries_the_freight() -> None:
    """Partial refunds before dispatch give no freight; the refund that settles the last unit adds it."""
    o = paid(TWO_PARCELS)
    amounts = [refund(o, "r1", {1: 1}), refund(o, "r2", {2: 1}), refund(o, "r3", {1: 1})]
    assert [(r.amount, r.freight) for r in amounts] == [(2562, 0), (3856, 0), (2562 + FREIGHT, FREIGHT)]
    assert o.refunded == o.paid == PAYABLE
    assert o.state is OrderState.CLOSED
    assert o.shipments == {S1: ShipmentProgress.CANCELLED, S2: ShipmentProgress.CANCELLED}


def test_no_freight_once_anything_was_dispatched() -> None:
    """After any parcel left, refunding everything (withdrawn and kept units) refunds goods only."""
    o = paid(TWO_PARCELS)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    withdrawn = refund(o, "r1", {2: 1})
    assert (withdrawn.amount, withdrawn.freight) == (3856, 0)
    assert o.state is OrderState.SHIPPED  # the cancelled parcel is out of play
    o.shipment_delivered(S1, DELIVERED_AT)
    assert o.state is OrderState.DELIVERED
    kept = refund(o, "r2", {1: 2}, DELIVERED_AT + HOUR)
    assert (kept.amount, kept.freight, kept.lines) == (5124, 0, {1: (2, 5124)})
    assert o.state is OrderState.CLOSED and o.refund_status is RefundStatus.FULL
    assert (o.refunded, o.freight_refunded) == (o.goods_net, 0) and o.refunded == o.paid - FREIGHT


# ------------------------------------------------------------------ refund only: refusals


def _refused(o: Order, units: dict[int, int]) -> RefundRefused:
    with pytest.raises(RefundRefused) as caught:
        o.plan_refund_only(units)
    assert caught.value.code == "refund_refused"
    assert o.collect_events() == []
    return caught.value


@pytest.mark.parametrize("given", ["pending_payment", "cancelled", "closed"])
def test_refund_only_refused_unless_paid_and_open(given: str) -> None:
    """An unpaid, cancelled or closed order refuses a refund with RefundRefused; nothing is recorded."""
    if given == "closed":
        o = paid(ONE_PARCEL)
        refund(o, "r1", {1: 2, 2: 1})
        o = replayed(o)
        assert o.state is OrderState.CLOSED
    else:
        o = placed()
        if given == "cancelled":
            o.cancel(CancelReason.CUSTOMER, T0)
        o = replayed(o)
    error = _refused(o, {1: 1})
    assert given in error.message
    assert o.state.value == given


def test_refund_only_of_an_unknown_line_is_refused() -> None:
    """A line the order does not have cannot be refunded."""
    o = paid(ONE_PARCEL)
    error = _refused(o, {9: 1})
    assert "line 9" in error.message


def test_refund_only_of_more_units_than_refundable_is_refused() -> None:
    """More units than the line has, or than are left after earlier refunds, are refused."""
    o = paid(ONE_PARCEL)
    _refused(o, {1: 3})
    refund(o, "r1", {1: 1})
    o = replayed(o)
    error = _refused(o, {1: 2})
    assert "2 unit(s) requested" in error.message and "1 can be refunded now" in error.message
    assert o.refunded_units == {1: 1}


def test_refund_only_is_all_or_nothing() -> None:
    """One line that cannot be refunded refuses the whole request, the refundable line included."""
    o = paid(ONE_PARCEL)
    _refused(o, {1: 1, 2: 2})
    assert o.refunded_units == {}


def test_refund_only_of_units_on_their_way_is_refused() -> None:
    """Units dispatched, neither delivered nor reported lost, cannot be refunded; the message says "on the way"."""
    o = paid(TWO_PARCELS)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    o = replayed(o)
    error = _refused(o, {1: 1})
    assert "on the way" in error.message
    # The parcel that has not left is still refundable.
    assert o.plan_refund_only({2: 1}).withdrawn == {S2: {2: 1}}


# ------------------------------------------------------------------ lost parcels


def _one_lost() -> Order:
    """Line 1 (2 units) in S1, lost; line 2 in S2, delivered."""
    o = paid(TWO_PARCELS)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    o.shipment_dispatched(S2, PAID_AT + HOUR)
    o.shipment_delivered(S2, DELIVERED_AT)
    o.shipment_failed(S1, "lost", DELIVERED_AT)
    return replayed(o)


def test_order_does_not_go_back_to_paid_once_a_parcel_left() -> None:
    """A lost parcel refunded in full while another is still planned leaves the order partially shipped."""
    o = paid(TWO_PARCELS)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    o.shipment_failed(S1, "lost", DELIVERED_AT)
    refund(o, "r1", {1: 2}, DELIVERED_AT + HOUR)
    assert o.shipments[S2] is ShipmentProgress.PLANNED
    assert o.state is OrderState.PARTIALLY_SHIPPED
    assert state(replayed(o)) == state(o)


def test_units_of_a_lost_parcel_can_be_refunded() -> None:
    """Units of a failed parcel are refunded as lost; the order stays shipped while some are unsettled."""
    o = _one_lost()
    assert o.state is OrderState.SHIPPED
    assert (line_summary(o, 1).lost, line_summary(o, 1).refundable_now) == (2, 2)
    plan = o.plan_refund_only({1: 1})
    assert (plan.lost, plan.withdrawn, plan.kept, plan.freight) == ({S1: {1: 1}}, {}, {}, 0)
    o.issue_refund("r1", plan, "parcel lost", DELIVERED_AT + HOUR)
    assert o.lost_refunded == {S1: {1: 1}}
    assert o.state is OrderState.SHIPPED and o.delivered_at is None
    assert line_summary(o, 1).lost == 1


def test_refunding_every_lost_unit_makes_the_order_delivered_and_completable() -> None:
    """The lost parcel refunded in full and the rest delivered: the order is delivered (its window running
    from the last real delivery, not from the refund), then auto-completes."""
    o = _one_lost()
    settled_at = DELIVERED_AT + HOUR
    record = refund(o, "r1", {1: 2}, settled_at)
    assert (record.amount, record.freight) == (5124, 0)
    assert o.state is OrderState.DELIVERED and o.delivered_at == DELIVERED_AT
    assert o.refund_status is RefundStatus.PARTIAL
    o = replayed(o)
    assert o.complete_if_window_passed(DELIVERED_AT + WINDOW, DELIVERED_AT + WINDOW) is True
    (event,) = o.collect_events()
    assert isinstance(event, Order.Completed) and event.how == "automatic"


def test_refunding_lost_units_while_another_parcel_is_on_its_way_keeps_the_order_shipped() -> None:
    """A settled lost parcel leaves the order shipped while another parcel is still on its way."""
    o = paid(TWO_PARCELS)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    o.shipment_dispatched(S2, PAID_AT + HOUR)
    o.shipment_failed(S1, "lost", DELIVERED_AT)
    refund(o, "r1", {1: 2}, DELIVERED_AT)
    assert o.state is OrderState.SHIPPED
    o.shipment_delivered(S2, DELIVERED_AT + DAY)
    assert o.state is OrderState.DELIVERED and o.delivered_at == DELIVERED_AT + DAY


def test_refunding_everything_lost_closes_the_order_without_freight() -> None:
    """The only parcel was lost: refunding all its units closes the order, goods only (it was dispatched)."""
    o = paid(ONE_PARCEL)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    o.shipment_failed(S1, "refused", DELIVERED_AT)
    record = refund(o, "r1", {1: 2, 2: 1}, DELIVERED_AT)
    assert (record.amount, record.freight) == (8980, 0)
    assert o.state is OrderState.CLOSED and o.refund_status is RefundStatus.FULL


def test_refund_only_can_name_the_lost_parcel() -> None:
    """By default planned units go first; naming the lost parcel takes the units from it instead."""
    o = paid({S1: {1: 1}, S2: {1: 1, 2: 1}})
    o.shipment_dispatched(S2, PAID_AT + HOUR)
    o.shipment_failed(S2, "lost", DELIVERED_AT)
    o = replayed(o)
    assert (o.plan_refund_only({1: 1}).withdrawn, o.plan_refund_only({1: 1}).lost) == ({S1: {1: 1}}, {})
    plan = o.plan_refund_only({1: 1}, from_shipment=S2)
    assert (plan.withdrawn, plan.lost, plan.lines) == ({}, {S2: {1: 1}}, {1: (1, 2562)})
    o.issue_refund("r1", plan, "parcel lost", DELIVERED_AT)
    assert o.lost_refunded == {S2: {1: 1}} and o.shipments[S1] is ShipmentProgress.PLANNED


def test_refund_only_from_a_parcel_that_does_not_hold_the_units_is_refused() -> None:
    """Naming a parcel of another order, or one without those units, refuses the refund."""
    o = paid(TWO_PARCELS)
    with pytest.raises(RefundRefused) as caught:
        o.plan_refund_only({1: 1}, from_shipment=S3)
    assert caught.value.code == "refund_refused"
    with pytest.raises(RefundRefused) as caught:
        o.plan_refund_only({1: 1}, from_shipment=S2)
    assert f"from shipment {S2}" in caught.value.message
    assert o.collect_events() == []


# ------------------------------------------------------------------ refund only after delivery (kept units)


def test_refund_only_after_delivery_keeps_the_units() -> None:
    """After delivery a refund only settles kept units (e.g. a missing item); the order stays delivered."""
    o = delivered()
    plan = o.plan_refund_only({1: 1})
    assert (plan.kept, plan.withdrawn, plan.lost, plan.lines) == ({1: 1}, {}, {}, {1: (1, 2562)})
    o.issue_refund("r1", plan, "item missing", DELIVERED_AT + HOUR)
    assert o.kept_refunded == {1: 1}
    assert o.state is OrderState.DELIVERED and o.delivered_at == DELIVERED_AT


def test_kept_units_reduce_what_can_be_returned() -> None:
    """Delivered units refunded while kept can no longer be returned."""
    o = delivered()
    refund(o, "r1", {1: 1}, DELIVERED_AT + HOUR)
    o = replayed(o)
    with pytest.raises(ReturnRefused) as caught:
        o.request_return(R1, {1: 2}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    assert caught.value.code == "return_refused"
    assert "1 delivered unit(s) that can be returned, 2 requested" in caught.value.message
    assert o.collect_events() == []
    assert o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY) is True


def test_units_in_an_open_return_cannot_be_refunded_as_kept() -> None:
    """Units claimed by an open return are refunded with the return, not by a refund only."""
    o = delivered()
    o.request_return(R1, {1: 2}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    o = replayed(o)
    error = _refused(o, {1: 1})
    assert "open return" in error.message


# ------------------------------------------------------------------ refund ids


def test_issue_refund_refuses_a_reused_refund_id() -> None:
    """A refund id already issued on the order is refused, whatever the plan; nothing is recorded."""
    o = paid(ONE_PARCEL)
    refund(o, "r1", {1: 1})
    o = replayed(o)
    for units in ({1: 1}, {2: 1}):
        with pytest.raises(RefundRefused) as caught:
            o.issue_refund("r1", o.plan_refund_only(units), "again", PAID_AT + 2 * HOUR)
        assert caught.value.code == "refund_refused"
    assert o.collect_events() == []
    assert o.refunded_units == {1: 1}


def test_earlier_refund_finds_the_same_request_and_refuses_other_units() -> None:
    """earlier_refund is None for a new id, the earlier record for the same kind and units, RefundRefused otherwise."""
    o = paid(ONE_PARCEL)
    issued = refund(o, "r1", {1: 1})
    o = replayed(o)
    assert o.earlier_refund("r2", RefundKind.REFUND_ONLY, {1: 1}) is None
    assert o.earlier_refund("r1", RefundKind.REFUND_ONLY, {1: 1}) == issued
    others = ((RefundKind.REFUND_ONLY, {1: 2}), (RefundKind.REFUND_ONLY, {2: 1}), (RefundKind.RETURN, {1: 1}))
    for kind, units in others:
        with pytest.raises(RefundRefused) as caught:
            o.earlier_refund("r1", kind, units)
        assert caught.value.code == "refund_refused"
    assert o.collect_events() == []


def test_issue_refund_never_exceeds_what_was_paid() -> None:
    """A plan worth more than what is left of the payment is refused."""
    o = paid(ONE_PARCEL)
    too_much = RefundPlan(kind=RefundKind.REFUND_ONLY, lines={1: (2, 5124), 2: (1, 3856)}, freight=FREIGHT + 1)
    with pytest.raises(RefundRefused) as caught:
        o.issue_refund("r1", too_much, "oops", PAID_AT)
    assert caught.value.code == "refund_refused"
    assert o.collect_events() == []


def test_refund_history_lists_every_refund_in_order() -> None:
    """refund_history gives each RefundRecord as issued: id, kind, amount, lines, freight and time."""
    o = paid(TWO_PARCELS)
    refund(o, "r1", {2: 1}, PAID_AT + HOUR)
    refund(o, "r2", {1: 2}, PAID_AT + 2 * HOUR)
    history = replayed(o).refund_history
    assert [(r.refund_id, r.kind, r.amount, r.lines, r.freight, r.issued_at) for r in history] == [
        ("r1", RefundKind.REFUND_ONLY, 3856, {2: (1, 3856)}, 0, PAID_AT + HOUR),
        ("r2", RefundKind.REFUND_ONLY, 5124 + FREIGHT, {1: (2, 5124)}, FREIGHT, PAID_AT + 2 * HOUR),
    ]


# ------------------------------------------------------------------ returns


def _return_refused(o: Order, units: dict[int, int], now: Any, return_id: UUID = R1) -> ReturnRefused:
    with pytest.raises(ReturnRefused) as caught:
        o.request_return(return_id, units, "wrong size", WINDOW, now)
    assert caught.value.code == "return_refused"
    assert o.collect_events() == []
    return caught.value


def test_request_return_of_delivered_units() -> None:
    """A return of delivered units records ReturnRequested and opens a requested case."""
    o = delivered()
    assert o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY) is True
    (event,) = o.collect_events()
    assert isinstance(event, Order.ReturnRequested) and (event.return_id, event.lines) == (R1, {1: 1})
    case = o.returns[R1]
    assert (case.status, case.lines, case.reason, case.is_open) == (ReturnStatus.REQUESTED, {1: 1}, "wrong size", True)
    assert o.has_open_return


def test_request_return_of_undelivered_units_is_refused() -> None:
    """Units still on their way or not dispatched cannot be returned: ReturnRefused."""
    o = paid(TWO_PARCELS)
    _return_refused(o, {1: 1}, PAID_AT + HOUR)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    o.shipment_dispatched(S2, PAID_AT + HOUR)
    o.shipment_delivered(S1, DELIVERED_AT)
    o = replayed(o)
    error = _return_refused(o, {2: 1}, DELIVERED_AT + HOUR)
    assert "1 on the way" in error.message
    assert o.request_return(R1, {1: 2}, "wrong size", WINDOW, DELIVERED_AT + HOUR) is True


@pytest.mark.parametrize("given", ["pending_payment", "cancelled", "closed"])
def test_request_return_refused_on_unpaid_cancelled_or_closed_order(given: str) -> None:
    """Nothing can be returned from an unpaid, cancelled or closed order."""
    if given == "closed":
        o = delivered()
        refund(o, "r1", {1: 2, 2: 1}, DELIVERED_AT + HOUR)
        o = replayed(o)
    else:
        o = placed()
        if given == "cancelled":
            o.cancel(CancelReason.CUSTOMER, T0)
        o = replayed(o)
    _return_refused(o, {1: 1}, DELIVERED_AT + HOUR)
    assert o.returns == {}


def test_request_return_of_an_unknown_line_is_refused() -> None:
    """A line the order does not have cannot be returned."""
    assert "line 9" in _return_refused(delivered(), {9: 1}, DELIVERED_AT + HOUR).message


def test_request_return_past_the_after_sales_window_is_refused() -> None:
    """A return is accepted until delivered_at + window (exclusive) and refused from then on."""
    o = delivered()
    _return_refused(o, {1: 1}, DELIVERED_AT + WINDOW)
    _return_refused(o, {1: 1}, DELIVERED_AT + WINDOW + DAY)
    assert o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + WINDOW - timedelta(seconds=1)) is True


def test_request_return_again_is_idempotent_for_the_same_units() -> None:
    """The same return id with the same units records nothing; with other units it is refused."""
    o = delivered()
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    o = replayed(o)
    assert o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY) is False
    with pytest.raises(IllegalTransition):
        o.request_return(R1, {1: 2}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    assert o.collect_events() == []


def test_units_in_a_return_cannot_be_claimed_twice() -> None:
    """Units already in a return (not rejected) cannot be asked for in another one."""
    o = delivered()
    o.request_return(R1, {1: 2}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    o = replayed(o)
    _return_refused(o, {1: 1}, DELIVERED_AT + DAY, return_id=R2)


def test_approve_return_once() -> None:
    """A requested return can be approved once; approving again is IllegalTransition."""
    o = delivered()
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    o.approve_return(R1, DELIVERED_AT + DAY)
    o = replayed(o)
    assert isinstance(o.given_history[-1], Order.ReturnApproved)
    assert o.returns[R1].status is ReturnStatus.APPROVED
    with pytest.raises(IllegalTransition) as caught:
        o.approve_return(R1, DELIVERED_AT + DAY)
    assert caught.value.code == "illegal_transition"
    with pytest.raises(IllegalTransition):
        o.reject_return(R1, "too late", DELIVERED_AT + DAY)
    assert o.collect_events() == []


def test_unknown_return_is_not_found() -> None:
    """Commands on a return the order does not have raise NotFound."""
    o = delivered()
    for command in (
        lambda: o.approve_return(R1, DELIVERED_AT),
        lambda: o.reject_return(R1, "no", DELIVERED_AT),
        lambda: o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT),
        lambda: o.return_received(R1, {1: 1}, {}, DELIVERED_AT),
        lambda: o.plan_return_refund(R1),
    ):
        with pytest.raises(NotFound) as caught:
            command()
        assert caught.value.code == "not_found"
    assert o.collect_events() == []


def test_rejecting_a_return_frees_its_units_for_a_new_request() -> None:
    """A rejected return is closed and its units can be asked for again."""
    o = delivered()
    o.request_return(R1, {1: 2}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    o.reject_return(R1, "worn", DELIVERED_AT + DAY)
    event = o.collect_events()[-1]
    assert isinstance(event, Order.ReturnRejected) and event.reason == "worn"
    case = o.returns[R1]
    assert (case.status, case.rejection, case.is_open) == (ReturnStatus.REJECTED, "worn", False)
    assert not o.has_open_return
    assert o.request_return(R2, {1: 2}, "really wrong size", WINDOW, DELIVERED_AT + 2 * DAY) is True


@pytest.mark.parametrize("given", ["requested", "rejected"])
def test_return_shipped_requires_an_approved_return(given: str) -> None:
    """Only an approved return can be sent back."""
    o = delivered()
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    if given == "rejected":
        o.reject_return(R1, "no", DELIVERED_AT + DAY)
    o = replayed(o)
    with pytest.raises(IllegalTransition) as caught:
        o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT + DAY)
    assert caught.value.code == "illegal_transition"
    assert o.collect_events() == []


def _shipped_return(units: dict[int, int] | None = None) -> Order:
    o = delivered()
    o.request_return(R1, units or {1: 2, 2: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    o.approve_return(R1, DELIVERED_AT + DAY)
    o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT + 2 * DAY)
    return replayed(o)


def test_return_shipped_records_the_return_parcel() -> None:
    """Sending an approved return back records ReturnShipped with its shipment."""
    o = _shipped_return()
    event = o.given_history[-1]
    assert isinstance(event, Order.ReturnShipped) and event.shipment_id == RETURN_PARCEL
    assert (o.returns[R1].status, o.returns[R1].shipment_id) == (ReturnStatus.SHIPPED, RETURN_PARCEL)


def test_a_return_goes_back_through_the_first_delivered_parcel_carrying_its_lines() -> None:
    """The return goes to the warehouse of the first delivered parcel that carried one of its lines."""
    o = paid(TWO_PARCELS)
    for sid in (S1, S2):
        o.shipment_dispatched(sid, PAID_AT + HOUR)
    o.shipment_delivered(S2, DELIVERED_AT)
    o = replayed(o)
    o.request_return(R1, {2: 1}, "wrong colour", WINDOW, DELIVERED_AT + HOUR)
    assert o.return_parcel(R1) == S2
    o.shipment_delivered(S1, DELIVERED_AT + HOUR)
    o.request_return(R2, {1: 1}, "too small", WINDOW, DELIVERED_AT + 2 * HOUR)
    assert (o.return_parcel(R1), o.return_parcel(R2)) == (S2, S1)


def test_a_return_skips_parcels_not_delivered() -> None:
    """A line spread over two parcels: its return goes through the one that was delivered."""
    o = paid(SPREAD)
    for sid in (S1, S2):
        o.shipment_dispatched(sid, PAID_AT + HOUR)
    o.shipment_delivered(S2, DELIVERED_AT)
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + HOUR)
    assert replayed(o).return_parcel(R1) == S2


def test_the_return_parcel_of_an_unknown_return_is_not_found() -> None:
    """Asking where an unknown return goes raises NotFound."""
    with pytest.raises(NotFound):
        delivered().return_parcel(R1)


@pytest.mark.parametrize(
    ("sellable", "damaged"),
    [
        ({1: 1}, {2: 1}),  # one unit of line 1 not marked
        ({1: 2, 2: 1}, {1: 1}),  # one unit too many
        ({1: 2, 2: 1, 3: 1}, {}),  # a line not in the return
        ({}, {}),
    ],
)
def test_return_received_requires_every_unit_marked_exactly(sellable: dict[int, int], damaged: dict[int, int]) -> None:
    """Sellable plus damaged must equal the returned units of every line; otherwise ReturnRefused."""
    o = _shipped_return()
    with pytest.raises(ReturnRefused) as caught:
        o.return_received(R1, sellable, damaged, DELIVERED_AT + 3 * DAY)
    assert caught.value.code == "return_refused"
    assert o.collect_events() == []
    assert o.returns[R1].status is ReturnStatus.SHIPPED


def test_return_received_records_sellable_and_damaged_units() -> None:
    """A return with every unit marked records ReturnReceived (zero counts dropped) and is received."""
    o = _shipped_return()
    o.return_received(R1, {1: 1, 2: 0}, {1: 1, 2: 1}, DELIVERED_AT + 3 * DAY)
    (event,) = o.collect_events()
    assert isinstance(event, Order.ReturnReceived) and (event.sellable, event.damaged) == ({1: 1}, {1: 1, 2: 1})
    case = o.returns[R1]
    assert (case.status, case.sellable, case.damaged) == (ReturnStatus.RECEIVED, {1: 1}, {1: 1, 2: 1})


def test_return_received_before_it_was_shipped_is_refused() -> None:
    """An approved return that was not sent back cannot be received."""
    o = delivered()
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    o.approve_return(R1, DELIVERED_AT + DAY)
    o = replayed(o)
    with pytest.raises(IllegalTransition):
        o.return_received(R1, {1: 1}, {}, DELIVERED_AT + 2 * DAY)
    assert o.collect_events() == []


@pytest.mark.parametrize("status", ["requested", "approved", "shipped", "rejected"])
def test_return_refund_before_the_goods_are_received_is_refused(status: str) -> None:
    """A return is refunded only once the warehouse has received it: RefundRefused before."""
    o = delivered()
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    if status == "rejected":
        o.reject_return(R1, "no", DELIVERED_AT + DAY)
    if status in ("approved", "shipped"):
        o.approve_return(R1, DELIVERED_AT + DAY)
    if status == "shipped":
        o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT + DAY)
    o = replayed(o)
    with pytest.raises(RefundRefused) as caught:
        o.plan_return_refund(R1)
    assert caught.value.code == "refund_refused"
    assert status in caught.value.message
    assert o.collect_events() == []


def test_return_flow_ends_refunded() -> None:
    """Request, approve, ship, receive, refund: the case ends refunded with its refund id, kind RETURN, no freight."""
    o = _shipped_return({1: 1})
    o.return_received(R1, {1: 1}, {}, DELIVERED_AT + 3 * DAY)
    plan = o.plan_return_refund(R1)
    assert (plan.kind, plan.lines, plan.freight, plan.return_id) == (RefundKind.RETURN, {1: (1, 2562)}, 0, R1)
    assert (plan.withdrawn, plan.lost, plan.kept) == ({}, {}, {})
    record = o.issue_refund("rr1", plan, "wrong size", DELIVERED_AT + 3 * DAY)
    assert (record.refund_id, record.kind, record.amount, record.return_id) == ("rr1", RefundKind.RETURN, 2562, R1)
    event = o.collect_events()[-1]
    assert isinstance(event, Order.RefundIssued) and (event.kind, event.return_id) == (RefundKind.RETURN, R1)
    case = o.returns[R1]
    assert (case.status, case.refund_id, case.is_open) == (ReturnStatus.REFUNDED, "rr1", False)
    assert o.state is OrderState.DELIVERED and o.refund_status is RefundStatus.PARTIAL
    assert o.refund_history[-1].kind is RefundKind.RETURN
    # The returned unit is settled: one unit of line 1 is left to return or refund.
    summary = line_summary(o, 1)
    assert (summary.delivered, summary.returning, summary.refunded_units, summary.refundable_now) == (1, 0, 1, 1)
    assert o.earlier_refund("rr1", RefundKind.RETURN, {1: 1}, R1) == record
    with pytest.raises(RefundRefused):
        o.plan_return_refund(R1)


def test_returning_everything_closes_the_order_without_freight() -> None:
    """A return of every unit refunds the goods net only and closes the order."""
    o = _shipped_return()
    o.return_received(R1, {1: 2}, {2: 1}, DELIVERED_AT + 3 * DAY)
    record = o.issue_refund("rr1", o.plan_return_refund(R1), "wrong size", DELIVERED_AT + 3 * DAY)
    assert (record.amount, record.freight, record.lines) == (8980, 0, {1: (2, 5124), 2: (1, 3856)})
    assert o.state is OrderState.CLOSED and o.refund_status is RefundStatus.FULL
    assert o.refunded == o.paid - FREIGHT


def test_return_refund_after_a_kept_refund_prices_the_remaining_units() -> None:
    """A return after an earlier refund of the same line is priced from the units refunded before (r > 0)."""
    o = paid({S1: {3: 3}}, lines=(L3,), freight=0)
    o.shipment_dispatched(S1, PAID_AT + HOUR)
    o.shipment_delivered(S1, DELIVERED_AT)
    refund(o, "r1", {3: 1}, DELIVERED_AT)
    o.request_return(R1, {3: 2}, "broken", WINDOW, DELIVERED_AT + DAY)
    o.approve_return(R1, DELIVERED_AT + DAY)
    o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT + DAY)
    o.return_received(R1, {}, {3: 2}, DELIVERED_AT + 2 * DAY)
    record = o.issue_refund("rr1", o.plan_return_refund(R1), "broken", DELIVERED_AT + 2 * DAY)
    assert record.lines == {3: (2, 667)}
    assert o.refunded_amounts == {3: 1000} and o.state is OrderState.CLOSED


# ------------------------------------------------------------------ automatic completion and returns


@pytest.mark.parametrize("status", ["requested", "approved", "shipped", "received"])
def test_no_automatic_completion_while_a_return_is_open(status: str) -> None:
    """A delivered order with an open return does not complete after the window."""
    o = delivered()
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    if status != "requested":
        o.approve_return(R1, DELIVERED_AT + DAY)
    if status in ("shipped", "received"):
        o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT + DAY)
    if status == "received":
        o.return_received(R1, {1: 1}, {}, DELIVERED_AT + 2 * DAY)
    o = replayed(o)
    window_end = DELIVERED_AT + WINDOW
    assert o.complete_if_window_passed(window_end, window_end + DAY) is False
    assert o.collect_events() == []
    assert o.state is OrderState.DELIVERED


@pytest.mark.parametrize("outcome", ["rejected", "refunded"])
def test_automatic_completion_once_the_return_is_closed(outcome: str) -> None:
    """Once the return is rejected or refunded, the delivered order completes after the window."""
    o = delivered()
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + DAY)
    if outcome == "rejected":
        o.reject_return(R1, "no", DELIVERED_AT + DAY)
    else:
        o.approve_return(R1, DELIVERED_AT + DAY)
        o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT + DAY)
        o.return_received(R1, {1: 1}, {}, DELIVERED_AT + 2 * DAY)
        o.issue_refund("rr1", o.plan_return_refund(R1), "wrong size", DELIVERED_AT + 2 * DAY)
    o = replayed(o)
    window_end = DELIVERED_AT + WINDOW
    assert o.complete_if_window_passed(window_end, window_end) is True
    assert_events(o.collect_events(), an_event(Order.Completed, how=CompletionKind.AUTOMATIC, timestamp=window_end))
    assert o.state is OrderState.COMPLETED


# ------------------------------------------------------------------ refundable() summary and replay


def _mixed() -> Order:
    """L1 delivered (1 unit in a return), L2 lost, L3: 1 unit refunded before dispatch, 1 on its way, 1 planned."""
    o = paid({S1: {1: 2}, S2: {2: 1}, S3: {3: 1}, S4: {3: 2}}, lines=(L1, L2, L3))
    for sid in (S1, S2, S3):
        o.shipment_dispatched(sid, PAID_AT + HOUR)
    o.shipment_delivered(S1, DELIVERED_AT)
    o.shipment_failed(S2, "lost", DELIVERED_AT)
    refund(o, "r1", {3: 1}, DELIVERED_AT)
    o.request_return(R1, {1: 1}, "wrong size", WINDOW, DELIVERED_AT + HOUR)
    return replayed(o)


def test_refundable_summary_per_line() -> None:
    """refundable() gives per line units not dispatched, on the way, lost, delivered, returning, refundable; money."""
    o = _mixed()
    assert o.state is OrderState.PARTIALLY_SHIPPED
    summary = o.refundable()
    assert (summary.order_id, summary.paid, summary.refunded, summary.freight, summary.freight_refunded) == (
        ORDER, 5124 + 3856 + 1000 + FREIGHT, 333, FREIGHT, 0,
    )
    rows = {
        line.line_no: (
            line.sku_id, line.quantity, line.net, line.refunded_units, line.refunded_amount, line.not_dispatched,
            line.on_the_way, line.lost, line.delivered, line.returning, line.refundable_now, line.refundable_amount,
        )
        for line in summary.lines
    }
    assert rows == {
        1: ("sku-1", 2, 5124, 0, 0, 0, 0, 0, 1, 1, 1, 5124),
        2: ("sku-2", 1, 3856, 0, 0, 0, 0, 1, 0, 0, 1, 3856),
        3: ("sku-3", 3, 1000, 1, 333, 1, 1, 0, 0, 0, 1, 667),
    }
    assert summary.refundable_amount == 5124 + 3856 + 667
    assert o.parcels[S4] == {3: 1}


def test_refundable_summary_follows_later_refunds() -> None:
    """Refunding the lost unit and the last planned unit moves them from lost / not dispatched to refunded."""
    o = _mixed()
    refund(o, "r2", {2: 1, 3: 1}, DELIVERED_AT + DAY)
    line2, line3 = line_summary(o, 2), line_summary(o, 3)
    assert (line2.lost, line2.refundable_now, line2.refunded_units, line2.refunded_amount) == (0, 0, 1, 3856)
    # floor(1000·2/3) − floor(1000·1/3) = 666 − 333 = 333 more
    assert (line3.not_dispatched, line3.on_the_way, line3.refunded_units, line3.refunded_amount) == (0, 1, 2, 666)
    assert line3.refundable_amount == 334
    assert o.shipments[S4] is ShipmentProgress.CANCELLED
    assert o.state is OrderState.SHIPPED  # S3 is still on its way


def test_mixed_after_sales_history_replays_to_the_same_order() -> None:
    """Withdrawn, lost and kept refunds plus a refunded return: the order replays to the same state, also via JSON."""
    o = _mixed()
    refund(o, "r2", {2: 1}, DELIVERED_AT + DAY)
    o.approve_return(R1, DELIVERED_AT + DAY)
    o.return_shipped(R1, RETURN_PARCEL, DELIVERED_AT + DAY)
    o.return_received(R1, {}, {1: 1}, DELIVERED_AT + 2 * DAY)
    o.issue_refund("rr1", o.plan_return_refund(R1), "wrong size", DELIVERED_AT + 2 * DAY)
    o.shipment_delivered(S3, DELIVERED_AT + 2 * DAY)
    o.request_return(R2, {1: 1}, "also wrong", WINDOW, DELIVERED_AT + 3 * DAY)
    o.reject_return(R2, "worn", DELIVERED_AT + 3 * DAY)
    refund(o, "r3", {1: 1}, DELIVERED_AT + 3 * DAY)  # kept
    rebuilt = replayed(o)
    assert state(rebuilt) == state(o)
    history = rebuilt.given_history
    assert [e.originator_version for e in history] == list(range(1, len(history) + 1))
    through_json = [type(e).model_validate_json(e.model_dump_json()) for e in history]
    assert state(project(None, through_json)) == state(o)  # type: ignore[arg-type]
    assert rebuilt.refundable() == o.refundable()
    assert [r.refund_id for r in rebuilt.refund_history] == ["r1", "r2", "rr1", "r3"]
    # S4 still carries one planned unit of line 3, so the order is not closed.
    assert o.state is OrderState.PARTIALLY_SHIPPED and o.refund_status is RefundStatus.PARTIAL


# ------------------------------------------------------------------ properties


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_refunds_before_dispatch_in_any_steps_give_back_exactly_what_was_paid(data: st.DataObject) -> None:
    """Refunds before dispatch, in any steps, follow the §3 formula and give back the whole payment, freight once."""
    lines = tuple(
        discounted(line, data.draw(st.integers(0, line.gross), label=f"discount {line.line_no}"))
        for line in data.draw(order_lines(), label="lines")
    )
    freight = data.draw(st.integers(0, 2_000), label="freight")
    parcels: dict[UUID, dict[int, int]] = {}
    for line in lines:
        for allocation in line.allocations:
            parcels.setdefault(uuid5(ORDER, allocation.warehouse_id), {})[line.line_no] = allocation.quantity
    o = paid(parcels, lines=lines, freight=freight)
    left = {line.line_no: line.quantity for line in lines}
    nets = {line.line_no: (line.net, line.quantity) for line in lines}
    step = 0
    while any(left.values()):
        open_lines = sorted(no for no, n in left.items() if n)
        chosen = data.draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True), label="step lines")
        units = {no: data.draw(st.integers(1, left[no]), label=f"units of line {no}") for no in chosen}
        record = refund(o, f"r{step}", units)
        for no, k in units.items():
            net, n = nets[no]
            r = o.refunded_units[no] - k
            assert record.lines[no] == (k, net * (r + k) // n - net * r // n)
            left[no] -= k
        assert record.freight == (freight if not any(left.values()) else 0)
        step += 1
    assert o.refunded == o.paid == sum(line.net for line in lines) + freight
    assert o.refunded_amounts == {line.line_no: line.net for line in lines}
    assert o.state is OrderState.CLOSED and o.refund_status is RefundStatus.FULL
    assert set(o.shipments.values()) == {ShipmentProgress.CANCELLED}
    assert state(replayed(o)) == state(o)
