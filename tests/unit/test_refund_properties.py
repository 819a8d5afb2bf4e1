"""Refund arithmetic over random histories (spec §3, §5.1): never more than paid, exactly what was paid in the end."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid5

from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import T0, make_line, replayed, state

from ecomcore.domain.errors import RefundRefused, ReturnRefused
from ecomcore.domain.order import Order, OrderLine, OrderState, RefundStatus
from ecomcore.domain.parcels import PlannedParcel, ShipmentProgress
from ecomcore.domain.shipment import plan_parcels, shipment_id_for

ORDER = UUID("00000000-0000-4000-8000-0000000000a1")
CHECKOUT = UUID("00000000-0000-4000-8000-0000000000b1")
WINDOW = timedelta(days=7)


@st.composite
def priced_lines(draw: st.DrawFn) -> list[OrderLine]:
    """1–4 lines with arbitrary discounts already apportioned: 0 ≤ net ≤ gross."""
    lines = []
    for line_no in range(1, draw(st.integers(1, 4)) + 1):
        quantity = draw(st.integers(1, 6))
        line = make_line(
            line_no, f"sku-{line_no}", quantity,
            unit_price=draw(st.integers(0, 50_000)), weight_g=draw(st.integers(0, 12_000)),
        )
        discount = draw(st.integers(0, line.gross))
        lines.append(line.model_copy(update={"promotion_discount": discount, "net": line.gross - discount}))
    return lines


def paid_order(lines: list[OrderLine], freight: int, weight_limit_g: int) -> Order:
    payable = sum(line.net for line in lines) + freight
    order = Order.place(
        ORDER, T0, checkout_id=CHECKOUT, customer_id="c", merchant_id="m1", currency="CNY", lines=tuple(lines),
        promotion_id=None, merchant_coupon_id=None, platform_coupon_id=None, freight=freight, payable=payable,
        payment_deadline=T0 + timedelta(days=1), shipping_address="x",
    )
    order.pay("pay-1", payable, "txn-1", T0)
    parcels = tuple(
        PlannedParcel(shipment_id=shipment_id_for(ORDER, n), lines={i.line_no: i.quantity for i in plan.items})
        for n, plan in enumerate(plan_parcels(lines, weight_limit_g), start=1)
    )
    order.plan_shipments(parcels, T0)
    return order


_line = st.integers(0, 3)
_parcel = st.integers(0, 20)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("refund"), _line, st.integers(1, 6)),
        st.tuples(st.just("return"), _line, st.integers(1, 6)),
        st.tuples(st.just("dispatch"), _parcel),
        st.tuples(st.just("deliver"), _parcel),
        st.tuples(st.just("fail"), _parcel),
    ),
    max_size=25,
)


class Run:
    """Applies random steps to one order, skipping (and checking) the ones the rules refuse."""

    def __init__(self, order: Order) -> None:
        self.order = replayed(order)
        self.issued = 0
        self.now = T0

    def refund(self, line_no: int, units: int) -> None:
        try:
            plan = self.order.plan_refund_only({line_no: units})
        except RefundRefused:
            assert not self.order.has_pending_events
            return
        self._issue(plan)

    def give_back(self, line_no: int, units: int) -> None:
        """A whole return: requested, approved, sent, received as sellable, refunded."""
        return_id = uuid5(ORDER, f"return-{self.issued}-{line_no}-{units}")
        try:
            self.order.request_return(return_id, {line_no: units}, "r", WINDOW, self.now)
        except ReturnRefused:
            assert not self.order.has_pending_events
            return
        self.order.approve_return(return_id, self.now)
        self.order.return_shipped(return_id, uuid5(return_id, "parcel"), self.now)
        self.order.return_received(return_id, {line_no: units}, {}, self.now)
        self._issue(self.order.plan_return_refund(return_id))

    def move(self, action: str, index: int) -> None:
        shipments = list(self.order.shipments)
        if index >= len(shipments):
            return
        sid, progress = shipments[index], self.order.shipments[shipments[index]]
        if action == "dispatch" and progress is ShipmentProgress.PLANNED:
            self.order.shipment_dispatched(sid, self.now)
        elif action in ("deliver", "fail") and progress is ShipmentProgress.DISPATCHED:
            if action == "deliver":
                self.order.shipment_delivered(sid, self.now)
            else:
                self.order.shipment_failed(sid, "lost", self.now)

    def refund_everything_left(self) -> None:
        for sid, progress in list(self.order.shipments.items()):
            if progress is ShipmentProgress.DISPATCHED:
                self.order.shipment_delivered(sid, self.now)
        left = {
            line.line_no: line.quantity - self.order.refunded_units.get(line.line_no, 0) for line in self.order.lines
        }
        left = {no: n for no, n in left.items() if n}
        if left:
            self._issue(self.order.plan_refund_only(left))

    def _issue(self, plan) -> None:
        self.issued += 1
        self.now += timedelta(minutes=1)
        self.order.issue_refund(f"re-{self.issued}", plan, "r", self.now)
        assert self.order.refunded <= self.order.paid


@settings(max_examples=150, deadline=None)
@given(lines=priced_lines(), freight=st.integers(0, 3_000), limit=st.integers(1_000, 30_000), steps=steps)
def test_random_refunds_never_exceed_and_finally_equal_what_was_paid(lines, freight, limit, steps):
    """Any sequence of refunds stays within what was paid; refunding everything returns exactly the goods,
    plus freight only when nothing was ever dispatched; replayed history gives the same numbers."""
    run = Run(paid_order(lines, freight, limit))
    for step in steps:
        if step[0] == "refund":
            run.refund(step[1] % len(lines) + 1, step[2])
        elif step[0] == "return":
            run.give_back(step[1] % len(lines) + 1, step[2])
        else:
            run.move(step[0], step[1])
        rebuilt = replayed(run.order)
        assert rebuilt.refundable() == run.order.refundable()
        assert state(rebuilt) == state(run.order)
        run.order = rebuilt
    run.refund_everything_left()
    order = run.order
    goods = sum(line.net for line in lines)
    assert sum(record.amount for record in order.refund_history) == order.refunded
    assert order.refunded == goods + (0 if order.ever_dispatched else freight)
    for line in lines:
        assert order.refunded_amounts.get(line.line_no, 0) == line.net
    assert (order.state, order.refund_status) == (OrderState.CLOSED, RefundStatus.FULL)
    assert state(replayed(order)) == state(order)


@settings(max_examples=100, deadline=None)
@given(net=st.integers(0, 10**9), quantity=st.integers(1, 20), data=st.data())
def test_unit_refunds_in_any_grouping_sum_to_the_line_net(net, quantity, data):
    """However the units of a line are grouped into refunds, the amounts sum exactly to its net."""
    line = make_line(1, "sku-1", quantity).model_copy(update={"net": net, "promotion_discount": 0, "gross": net})
    order = paid_order([line], 0, 10**9)
    left, issued = quantity, 0
    while left:
        k = data.draw(st.integers(1, left))
        order.issue_refund(f"re-{issued}", order.plan_refund_only({1: k}), "r", T0)
        issued, left = issued + 1, left - k
    assert order.refunded == net
