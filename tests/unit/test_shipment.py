"""Shipment and parcel planning (spec §5.4): given events, when a command, then the new events or a typed error."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from events import an_event, assert_events
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import T0, make_line, order_lines

from ecomcore.domain.aggregate import project
from ecomcore.domain.errors import IllegalTransition
from ecomcore.domain.order import OrderLine
from ecomcore.domain.shipment import (
    ParcelItem,
    ParcelPlan,
    Shipment,
    ShipmentState,
    TrackingUpdate,
    plan_parcels,
    shipment_id_for,
)

ORDER = UUID("00000000-0000-4000-8000-0000000000e1")
CHECKOUT = UUID("00000000-0000-4000-8000-0000000000d1")
SHIPMENT = shipment_id_for(ORDER, 1)
HOUR = timedelta(hours=1)
LIMIT = 20_000


def replayed(live: Shipment) -> Shipment:
    """The shipment rebuilt by replaying its whole history (earlier given events plus new ones)."""
    history = [*getattr(live, "given_history", []), *live.collect_events()]
    rebuilt = project(None, history)
    assert isinstance(rebuilt, Shipment)
    rebuilt.given_history = history  # type: ignore[attr-defined]
    return rebuilt


def state(shipment: Shipment) -> dict[str, Any]:
    return {k: v for k, v in vars(shipment).items() if k not in ("_pending", "given_history")}


def planned() -> Shipment:
    return replayed(
        Shipment.plan(
            SHIPMENT,
            T0,
            order_id=ORDER,
            checkout_id=CHECKOUT,
            merchant_id="m1",
            warehouse_id="w1",
            items=(ParcelItem(line_no=1, sku_id="sku-1", quantity=2, weight_g=1000),),
        )
    )


def dispatched() -> Shipment:
    s = planned()
    s.dispatch("SF", "SF123", T0 + HOUR)
    return replayed(s)


def update(minutes: int, status: str = "in_transit", location: str = "Hangzhou") -> TrackingUpdate:
    return TrackingUpdate(occurred_at=T0 + timedelta(minutes=minutes), status=status, location=location)


def units(plans: list[ParcelPlan]) -> Counter[tuple[str, int]]:
    counted: Counter[tuple[str, int]] = Counter()
    for plan in plans:
        for item in plan.items:
            counted[(plan.warehouse_id, item.line_no)] += item.quantity
    return counted


def expected_units(lines: list[OrderLine]) -> Counter[tuple[str, int]]:
    return Counter({(a.warehouse_id, line.line_no): a.quantity for line in lines for a in line.allocations})


# ------------------------------------------------------------------ plan_parcels


def test_plan_parcels_groups_by_warehouse() -> None:
    """Lines are grouped into one parcel per warehouse that reserved them when light enough."""
    lines = [
        make_line(1, "sku-1", 3, weight_g=500, allocations={"w1": 2, "w2": 1}),
        make_line(2, "sku-2", 1, weight_g=500, allocations={"w2": 1}),
    ]
    plans = plan_parcels(lines, LIMIT)
    assert [(p.warehouse_id, [(i.line_no, i.quantity) for i in p.items]) for p in plans] == [
        ("w1", [(1, 2)]),
        ("w2", [(1, 1), (2, 1)]),
    ]
    assert plans[0].items[0].sku_id == "sku-1" and plans[0].weight_g == 1000


def test_plan_parcels_splits_by_weight_limit() -> None:
    """A warehouse's units are split into parcels of at most the weight limit."""
    lines = [make_line(1, "sku-1", 2, weight_g=8_000), make_line(2, "sku-2", 1, weight_g=6_000)]
    plans = plan_parcels(lines, LIMIT)
    assert [p.weight_g for p in plans] == [16_000, 6_000]
    assert all(p.weight_g <= LIMIT for p in plans)


def test_plan_parcels_parcel_may_reach_the_limit_exactly() -> None:
    """A parcel weighing exactly the limit is not split."""
    plans = plan_parcels([make_line(1, "sku-1", 4, weight_g=5_000)], LIMIT)
    assert [p.weight_g for p in plans] == [20_000]


def test_plan_parcels_spreads_heavy_line_across_parcels() -> None:
    """A heavy line's units spread over several parcels, and every unit is shipped."""
    plans = plan_parcels([make_line(1, "sku-1", 5, weight_g=9_000)], LIMIT)
    assert [[(i.line_no, i.quantity, i.weight_g) for i in p.items] for p in plans] == [
        [(1, 2, 18_000)],
        [(1, 2, 18_000)],
        [(1, 1, 9_000)],
    ]


def test_plan_parcels_unit_heavier_than_limit_travels_alone() -> None:
    """A single unit heavier than the limit gets a parcel of its own; nothing else shares it."""
    lines = [
        make_line(1, "sku-1", 1, weight_g=1_000),
        make_line(2, "sku-2", 2, weight_g=25_000),
        make_line(3, "sku-3", 1, weight_g=1_000),
    ]
    plans = plan_parcels(lines, LIMIT)
    assert [[(i.line_no, i.quantity) for i in p.items] for p in plans] == [[(1, 1)], [(2, 1)], [(2, 1)], [(3, 1)]]


def test_shipment_ids_are_deterministic_per_parcel() -> None:
    """Each parcel number of an order names the same shipment id every time, distinct per parcel."""
    assert shipment_id_for(ORDER, 1) == shipment_id_for(ORDER, 1)
    assert shipment_id_for(ORDER, 1) != shipment_id_for(ORDER, 2)


@settings(max_examples=200, deadline=None)
@given(order_lines(), st.integers(1_000, 30_000))
def test_plan_parcels_preserves_units_and_respects_the_limit(lines: list[OrderLine], limit: int) -> None:
    """Every reserved unit is in exactly one parcel of its warehouse; only a lone over-limit unit exceeds the limit."""
    plans = plan_parcels(lines, limit)
    assert units(plans) == expected_units(lines)
    weights = {line.line_no: line.sku.weight_g for line in lines}
    for plan in plans:
        assert plan.items, "no empty parcels"
        assert plan.weight_g == sum(i.quantity * weights[i.line_no] for i in plan.items)
        if plan.weight_g > limit:
            heavy_units = [i for i in plan.items if weights[i.line_no] > 0]
            assert len(heavy_units) == 1 and heavy_units[0].quantity == 1
    # Parcels are not wasteful: in a warehouse, no parcel could have taken the next one's first unit.
    for before, after in zip(plans, plans[1:], strict=False):  # consecutive pairs
        if before.warehouse_id == after.warehouse_id:
            first = weights[after.items[0].line_no]
            assert before.weight_g + first > limit


# ------------------------------------------------------------------ dispatch


def test_plan_records_planned_shipment() -> None:
    """A planned shipment records its order, warehouse and items and starts planned."""
    s = planned()
    (event,) = s.given_history  # type: ignore[attr-defined]
    assert isinstance(event, Shipment.Planned) and event.order_id == ORDER and event.warehouse_id == "w1"
    assert s.state is ShipmentState.PLANNED and s.weight_g == 1000


def test_dispatch_planned_shipment() -> None:
    """Dispatching a planned shipment records Dispatched with carrier and tracking number."""
    s = planned()
    assert s.dispatch("SF", "SF123", T0 + HOUR) is True
    (event,) = s.collect_events()
    assert isinstance(event, Shipment.Dispatched) and (event.carrier, event.tracking_number) == ("SF", "SF123")
    assert s.state is ShipmentState.DISPATCHED


def test_dispatch_again_with_same_waybill_is_a_no_op() -> None:
    """Dispatching again with the same carrier and waybill records nothing (idempotent)."""
    s = dispatched()
    assert s.dispatch("SF", "SF123", T0 + 2 * HOUR) is False
    assert s.collect_events() == []


@pytest.mark.parametrize(("carrier", "waybill"), [("SF", "SF999"), ("YTO", "SF123")])
def test_dispatch_again_with_another_waybill_is_refused(carrier: str, waybill: str) -> None:
    """A dispatched shipment refuses another carrier or waybill."""
    s = dispatched()
    with pytest.raises(IllegalTransition) as caught:
        s.dispatch(carrier, waybill, T0 + 2 * HOUR)
    assert caught.value.code == "illegal_transition"
    assert s.collect_events() == []
    assert (s.carrier, s.tracking_number) == ("SF", "SF123")


def test_cancelled_shipment_cannot_be_dispatched() -> None:
    """A cancelled shipment is never dispatched."""
    s = planned()
    s.cancel("refunded", T0)
    s = replayed(s)
    with pytest.raises(IllegalTransition):
        s.dispatch("SF", "SF123", T0 + HOUR)
    assert s.collect_events() == []


# ------------------------------------------------------------------ tracking


def test_tracking_update_recorded_and_in_transit() -> None:
    """The first carrier update is recorded and moves a dispatched shipment to in transit."""
    s = dispatched()
    assert s.track(update(90), T0 + 2 * HOUR) is True
    (event,) = s.collect_events()
    assert isinstance(event, Shipment.TrackingUpdated) and event.update == update(90)
    assert s.state is ShipmentState.IN_TRANSIT


def test_duplicate_tracking_update_is_ignored() -> None:
    """The same update reported twice is recorded once."""
    s = dispatched()
    s.track(update(90), T0 + 2 * HOUR)
    s = replayed(s)
    assert s.track(update(90), T0 + 3 * HOUR) is False
    assert s.collect_events() == []
    assert s.tracking == [update(90)]


def test_out_of_order_tracking_updates_kept_in_time_order() -> None:
    """Updates reported out of order are all kept and listed in the order they happened."""
    s = dispatched()
    s.track(update(300, "arrived", "Shanghai"), T0 + 6 * HOUR)
    s.track(update(120, "departed", "Hangzhou"), T0 + 6 * HOUR)
    s.track(update(200, "sorting", "Jiaxing"), T0 + 6 * HOUR)
    assert len(s.collect_events()) == 3
    assert [u.status for u in s.tracking] == ["departed", "sorting", "arrived"]
    s.track(update(120, "departed", "Hangzhou"), T0 + 7 * HOUR)
    assert s.collect_events() == []


def test_tracking_a_planned_or_cancelled_shipment_is_refused() -> None:
    """A shipment with no carrier yet (planned or cancelled) cannot be tracked."""
    s = planned()
    with pytest.raises(IllegalTransition):
        s.track(update(10), T0)
    s.cancel("refunded", T0)
    s.collect_events()
    with pytest.raises(IllegalTransition):
        s.track(update(10), T0)
    assert s.collect_events() == []


# ------------------------------------------------------------------ deliver / fail / cancel


@pytest.mark.parametrize("tracked", [False, True])
def test_deliver_after_dispatch(tracked: bool) -> None:
    """A dispatched or in-transit shipment can be delivered; delivering again records nothing."""
    s = dispatched()
    if tracked:
        s.track(update(90), T0 + 2 * HOUR)
        s.collect_events()
    assert s.deliver(T0 + 5 * HOUR) is True
    assert_events(s.collect_events(), an_event(Shipment.Delivered, timestamp=T0 + 5 * HOUR))
    assert s.state is ShipmentState.DELIVERED
    assert s.deliver(T0 + 6 * HOUR) is False
    assert s.collect_events() == []


@pytest.mark.parametrize("tracked", [False, True])
def test_fail_after_dispatch(tracked: bool) -> None:
    """A parcel on its way can fail (lost, refused); failing again records nothing."""
    s = dispatched()
    if tracked:
        s.track(update(90), T0 + 2 * HOUR)
        s.collect_events()
    assert s.fail("lost", T0 + 5 * HOUR) is True
    (event,) = s.collect_events()
    assert isinstance(event, Shipment.Failed) and event.reason == "lost"
    assert s.fail("lost", T0 + 6 * HOUR) is False
    assert s.collect_events() == []


@pytest.mark.parametrize("given_state", ["planned", "cancelled", "failed", "delivered"])
def test_deliver_and_fail_only_after_dispatch(given_state: str) -> None:
    """Deliver and fail are refused unless the parcel is on its way (dispatched or in transit)."""
    s = planned() if given_state in ("planned", "cancelled") else dispatched()
    if given_state == "cancelled":
        s.cancel("refunded", T0)
    if given_state == "failed":
        s.fail("lost", T0 + 2 * HOUR)
    if given_state == "delivered":
        s.deliver(T0 + 2 * HOUR)
    s = replayed(s)
    if given_state != "delivered":
        with pytest.raises(IllegalTransition):
            s.deliver(T0 + 3 * HOUR)
    if given_state != "failed":
        with pytest.raises(IllegalTransition):
            s.fail("lost", T0 + 3 * HOUR)
    assert s.collect_events() == []
    assert s.state.value == given_state


def test_cancel_planned_shipment() -> None:
    """A planned shipment can be cancelled."""
    s = planned()
    s.cancel("refunded before dispatch", T0)
    (event,) = s.collect_events()
    assert isinstance(event, Shipment.Cancelled) and event.reason == "refunded before dispatch"
    assert s.state is ShipmentState.CANCELLED


@pytest.mark.parametrize("given_state", ["dispatched", "in_transit", "delivered", "cancelled"])
def test_cancel_only_when_planned(given_state: str) -> None:
    """Only a planned shipment can be cancelled."""
    s = planned() if given_state == "cancelled" else dispatched()
    if given_state == "cancelled":
        s.cancel("refunded", T0)
    if given_state == "in_transit":
        s.track(update(90), T0 + 2 * HOUR)
    if given_state == "delivered":
        s.deliver(T0 + 2 * HOUR)
    s = replayed(s)
    with pytest.raises(IllegalTransition):
        s.cancel("refunded", T0 + 3 * HOUR)
    assert s.collect_events() == []


def test_shipment_replay_equals_live() -> None:
    """Replaying a shipment's history rebuilds the live shipment, tracking order included."""
    s = dispatched()
    s.track(update(300, "arrived"), T0 + 6 * HOUR)
    s.track(update(120, "departed"), T0 + 6 * HOUR)
    s.deliver(T0 + 7 * HOUR)
    assert state(replayed(s)) == state(s)


# ------------------------------------------------------------------ withdraw (refund before dispatch)

RETURN_ID = UUID("00000000-0000-4000-8000-0000000000b1")
RETURN_SHIPMENT = UUID("00000000-0000-4000-8000-0000000000b2")


TWO_LINES = (
    ParcelItem(line_no=1, sku_id="sku-1", quantity=2, weight_g=1000),
    ParcelItem(line_no=2, sku_id="sku-2", quantity=3, weight_g=900),
)


def two_lines() -> Shipment:
    """A planned parcel with 2 units of line 1 (1000 g) and 3 of line 2 (900 g)."""
    return replayed(
        Shipment.plan(
            SHIPMENT,
            T0,
            order_id=ORDER,
            checkout_id=CHECKOUT,
            merchant_id="m1",
            warehouse_id="w1",
            items=TWO_LINES,
        )
    )


def test_withdraw_some_units_shrinks_the_parcel() -> None:
    """Taking some units out of a planned parcel records UnitsWithdrawn; items and weight drop by those units."""
    s = two_lines()
    s.withdraw({1: 1, 2: 2}, "refunded before dispatch", T0 + HOUR)
    assert_events(
        s.collect_events(), an_event(Shipment.UnitsWithdrawn, units={1: 1, 2: 2}, reason="refunded before dispatch")
    )
    assert [(i.line_no, i.quantity, i.weight_g) for i in s.items] == [(1, 1, 500), (2, 1, 300)]
    assert s.weight_g == 800 and s.state is ShipmentState.PLANNED


def test_withdraw_a_whole_line_drops_its_item() -> None:
    """A line whose every unit is taken out disappears from the parcel; the rest stays planned."""
    s = two_lines()
    s.withdraw({1: 2}, "refunded", T0 + HOUR)
    assert_events(s.collect_events(), an_event(Shipment.UnitsWithdrawn, units={1: 2}, reason="refunded"))
    assert [(i.line_no, i.quantity, i.weight_g) for i in s.items] == [(2, 3, 900)]
    assert s.state is ShipmentState.PLANNED


def test_withdraw_everything_cancels_the_parcel() -> None:
    """Taking out every unit records Cancelled (with the reason) instead of UnitsWithdrawn."""
    s = two_lines()
    s.withdraw({1: 2, 2: 3}, "refunded before dispatch", T0 + HOUR)
    (event,) = s.collect_events()
    assert isinstance(event, Shipment.Cancelled) and event.reason == "refunded before dispatch"
    assert s.state is ShipmentState.CANCELLED


def test_withdraw_the_rest_after_a_shrink_cancels_the_parcel() -> None:
    """After a shrink, withdrawing what is left cancels the parcel; the history replays to the same state."""
    s = two_lines()
    s.withdraw({1: 2}, "refunded", T0 + HOUR)
    s = replayed(s)
    s.withdraw({2: 3}, "refunded", T0 + 2 * HOUR)
    assert s.state is ShipmentState.CANCELLED
    rebuilt = replayed(s)
    assert_events(
        rebuilt.given_history,  # type: ignore[attr-defined]
        an_event(
            Shipment.Planned, order_id=ORDER, checkout_id=CHECKOUT, merchant_id="m1", warehouse_id="w1", items=TWO_LINES
        ),
        an_event(Shipment.UnitsWithdrawn, units={1: 2}, reason="refunded", timestamp=T0 + HOUR),
        an_event(Shipment.Cancelled, reason="refunded", timestamp=T0 + 2 * HOUR),
    )
    assert state(rebuilt) == state(s)


@pytest.mark.parametrize("units", [{1: 3}, {2: 4}, {3: 1}, {1: 2, 2: 4}])
def test_withdraw_more_than_carried_is_refused(units: dict[int, int]) -> None:
    """Units the parcel does not carry (too many, or another line) cannot be withdrawn."""
    s = two_lines()
    with pytest.raises(IllegalTransition) as caught:
        s.withdraw(units, "refunded", T0 + HOUR)
    assert caught.value.code == "illegal_transition"
    assert s.collect_events() == []
    assert [(i.line_no, i.quantity) for i in s.items] == [(1, 2), (2, 3)]


@pytest.mark.parametrize("given_state", ["dispatched", "in_transit", "delivered", "cancelled"])
def test_withdraw_only_from_a_planned_parcel(given_state: str) -> None:
    """Units leave only a parcel that has not left: any other state refuses."""
    s = planned() if given_state == "cancelled" else dispatched()
    if given_state == "cancelled":
        s.cancel("refunded", T0)
    if given_state == "in_transit":
        s.track(update(90), T0 + 2 * HOUR)
    if given_state == "delivered":
        s.deliver(T0 + 2 * HOUR)
    s = replayed(s)
    with pytest.raises(IllegalTransition) as caught:
        s.withdraw({1: 1}, "refunded", T0 + 3 * HOUR)
    assert caught.value.code == "illegal_transition"
    assert s.collect_events() == []


# ------------------------------------------------------------------ return parcels


def returning() -> Shipment:
    """A return parcel the customer handed to a carrier: 2 units of line 1."""
    return replayed(
        Shipment.send_return(
            RETURN_SHIPMENT,
            T0,
            order_id=ORDER,
            checkout_id=CHECKOUT,
            merchant_id="m1",
            warehouse_id="w1",
            return_id=RETURN_ID,
            items=(ParcelItem(line_no=1, sku_id="sku-1", quantity=2, weight_g=1000),),
            carrier="SF",
            tracking_number="SF-R1",
        )
    )


def test_send_return_records_a_dispatched_return_parcel() -> None:
    """send_return records ReturnSent; the parcel is dispatched, is a return, and has its carrier."""
    s = returning()
    (event,) = s.given_history  # type: ignore[attr-defined]
    assert isinstance(event, Shipment.ReturnSent)
    assert (event.return_id, event.carrier, event.tracking_number) == (RETURN_ID, "SF", "SF-R1")
    assert s.state is ShipmentState.DISPATCHED and s.is_return
    assert (s.order_id, s.return_id, s.carrier, s.tracking_number) == (ORDER, RETURN_ID, "SF", "SF-R1")
    assert s.weight_g == 1000
    assert not planned().is_return


def test_return_parcel_can_be_tracked() -> None:
    """Carrier updates of a return parcel are recorded and move it in transit."""
    s = returning()
    assert s.track(update(30), T0 + HOUR) is True
    assert_events(s.collect_events(), an_event(Shipment.TrackingUpdated, update=update(30)))
    assert s.state is ShipmentState.IN_TRANSIT


@pytest.mark.parametrize("tracked", [False, True])
def test_return_parcel_is_neither_delivered_nor_failed(tracked: bool) -> None:
    """A return parcel goes to the warehouse: deliver and fail are refused."""
    s = returning()
    if tracked:
        s.track(update(30), T0 + HOUR)
        s = replayed(s)
    for command in (lambda: s.deliver(T0 + 2 * HOUR), lambda: s.fail("lost", T0 + 2 * HOUR)):
        with pytest.raises(IllegalTransition) as caught:
            command()
        assert caught.value.code == "illegal_transition"
    assert s.collect_events() == []
    assert s.state is (ShipmentState.IN_TRANSIT if tracked else ShipmentState.DISPATCHED)


def test_return_parcel_cannot_be_cancelled_or_shrunk() -> None:
    """A return parcel already left: cancel and withdraw are refused."""
    s = returning()
    with pytest.raises(IllegalTransition):
        s.cancel("changed mind", T0 + HOUR)
    with pytest.raises(IllegalTransition):
        s.withdraw({1: 1}, "changed mind", T0 + HOUR)
    assert s.collect_events() == []


@pytest.mark.parametrize("tracked", [False, True])
def test_receive_return_parcel(tracked: bool) -> None:
    """The warehouse checks a return parcel in: ReturnCheckedIn with sellable and damaged units, state received."""
    s = returning()
    if tracked:
        s.track(update(30), T0 + HOUR)
        s = replayed(s)
    s.check_in_return({1: 1}, {1: 1}, T0 + 2 * HOUR)
    (event,) = s.collect_events()
    assert isinstance(event, Shipment.ReturnCheckedIn) and (event.sellable, event.damaged) == ({1: 1}, {1: 1})
    assert (s.state, s.sellable, s.damaged) == (ShipmentState.RECEIVED, {1: 1}, {1: 1})


def test_receive_twice_is_refused() -> None:
    """A return parcel is received once; receiving it again is IllegalTransition."""
    s = returning()
    s.check_in_return({1: 2}, {}, T0 + 2 * HOUR)
    s = replayed(s)
    with pytest.raises(IllegalTransition) as caught:
        s.check_in_return({1: 2}, {}, T0 + 3 * HOUR)
    assert caught.value.code == "illegal_transition"
    assert s.collect_events() == []


@pytest.mark.parametrize("given_state", ["planned", "dispatched", "delivered"])
def test_receive_on_an_outbound_parcel_is_refused(given_state: str) -> None:
    """Only a return parcel is received: an outbound one refuses, whatever its state."""
    s = planned() if given_state == "planned" else dispatched()
    if given_state == "delivered":
        s.deliver(T0 + 2 * HOUR)
        s = replayed(s)
    with pytest.raises(IllegalTransition) as caught:
        s.check_in_return({1: 2}, {}, T0 + 3 * HOUR)
    assert caught.value.code == "illegal_transition"
    assert s.collect_events() == []


def test_return_parcel_replay_equals_live() -> None:
    """Replaying a return parcel's history (sent, tracked, received) rebuilds the live shipment."""
    s = returning()
    s.track(update(30), T0 + HOUR)
    s.check_in_return({1: 2}, {}, T0 + 2 * HOUR)
    assert state(replayed(s)) == state(s)
