"""StockItem (spec §5.2): given events, when a command, then the new events or a typed error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest
from events import an_event, assert_events
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import T0, stock_commands

from ecomcore.domain.aggregate import Snapshot, project
from ecomcore.domain.errors import DomainError, EcomcoreError, IllegalTransition, InsufficientStock
from ecomcore.domain.stock_item import ReleaseReason, Reservation, Reservations, StockItem, stock_item_id

ORDER_A = UUID("00000000-0000-4000-8000-00000000000a")
ORDER_B = UUID("00000000-0000-4000-8000-00000000000b")
ORDER_C = UUID("00000000-0000-4000-8000-00000000000c")
SHIPMENT = UUID("00000000-0000-4000-8000-0000000000f1")
HOUR = timedelta(hours=1)


def item(on_hand: int = 10, *, safety_stock: int = 0, reorder_quantity: int = 0) -> StockItem:
    """A StockItem rebuilt from its given events (registered, then ``on_hand`` received)."""
    live = StockItem.register("sku-1", "w1", T0, safety_stock=safety_stock, reorder_quantity=reorder_quantity)
    if on_hand:
        live.receive(on_hand, "po-1", T0)
    return replayed(live)


def replayed(live: StockItem) -> StockItem:
    """The aggregate rebuilt by replaying its whole history (earlier given events plus new ones)."""
    history = [*getattr(live, "given_history", []), *live.collect_events()]
    rebuilt = project(None, history)
    assert isinstance(rebuilt, StockItem)
    rebuilt.given_history = history  # type: ignore[attr-defined]
    return rebuilt


def state(stock: StockItem) -> dict[str, Any]:
    return {k: v for k, v in vars(stock).items() if k not in ("_pending", "given_history")}


# ------------------------------------------------------------------ identity


def test_stock_item_id_is_deterministic_per_sku_and_warehouse() -> None:
    """The same (SKU, warehouse) always names the same StockItem, and different pairs differ."""
    assert stock_item_id("sku-1", "w1") == stock_item_id("sku-1", "w1")
    assert stock_item_id("sku-1", "w1") != stock_item_id("sku-1", "w2")
    assert stock_item_id("sku-1", "w1") != stock_item_id("sku-2", "w1")
    assert stock_item_id("ab", "c") != stock_item_id("a", "bc")
    assert StockItem.register("sku-1", "w1", T0).id == stock_item_id("sku-1", "w1")


def test_register_records_terms() -> None:
    """Registering records the SKU, warehouse, safety stock and reorder quantity."""
    live = StockItem.register("sku-1", "w1", T0, safety_stock=3, reorder_quantity=20)
    assert_events(
        live.collect_events(),
        an_event(
            StockItem.Registered, originator_version=1, timestamp=T0,
            sku_id="sku-1", warehouse_id="w1", safety_stock=3, reorder_quantity=20,
        ),
    )


# ------------------------------------------------------------------ available


def test_receive_raises_on_hand_and_available() -> None:
    """Receiving goods records Received and raises on_hand and available."""
    stock = item(10)
    stock.receive(5, "po-2", T0)
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.Received) and (event.quantity, event.reference) == (5, "po-2")
    assert stock.on_hand == 15 and stock.available(T0) == 15


def test_available_is_on_hand_minus_active_reservations() -> None:
    """available = on_hand − Σ active reservations."""
    stock = item(10)
    stock.reserve(ORDER_A, 4, T0 + HOUR, T0)
    stock.reserve(ORDER_B, 3, T0 + HOUR, T0)
    assert stock.on_hand == 10
    assert stock.reserved(T0) == 7
    assert stock.available(T0) == 3


def test_expired_reservation_stops_counting_at_once() -> None:
    """An unconfirmed reservation stops counting at its expiry, before any release is recorded."""
    stock = item(10)
    stock.reserve(ORDER_A, 4, T0 + HOUR, T0)
    stock.collect_events()
    assert stock.available(T0 + HOUR - timedelta(seconds=1)) == 6
    assert stock.available(T0 + HOUR) == 10
    # Another order can take nine of the ten units without anyone releasing ORDER_A first.
    stock.reserve(ORDER_B, 9, T0 + 2 * HOUR, T0 + HOUR)
    assert_events(
        stock.collect_events(), an_event(StockItem.Reserved, order_id=ORDER_B, quantity=9, expires_at=T0 + 2 * HOUR)
    )
    assert stock.available(T0 + HOUR) == 1


def test_confirmed_reservation_never_expires() -> None:
    """A confirmed (paid) reservation keeps counting long after its original expiry."""
    stock = item(10)
    stock.reserve(ORDER_A, 4, T0 + HOUR, T0)
    stock = replayed(stock)
    stock.confirm(ORDER_A, T0 + timedelta(minutes=30))
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.ReservationConfirmed) and event.order_id == ORDER_A
    assert stock.available(T0 + timedelta(days=365)) == 6


# ------------------------------------------------------------------ reserve


def test_reserve_records_reserved() -> None:
    """Reserving within what is available records Reserved with the order, quantity and expiry."""
    stock = item(10)
    stock.reserve(ORDER_A, 4, T0 + HOUR, T0)
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.Reserved)
    assert (event.order_id, event.quantity, event.expires_at) == (ORDER_A, 4, T0 + HOUR)
    assert stock.available(T0) == 6


def test_reserve_exactly_available_is_allowed() -> None:
    """Reserving every available unit is allowed (the refusal is only for more than available)."""
    stock = item(10)
    stock.reserve(ORDER_A, 10, T0 + HOUR, T0)
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Reserved, order_id=ORDER_A, quantity=10, expires_at=T0 + HOUR),
        an_event(StockItem.LowStockDetected, available=0, safety_stock=0, suggested_reorder_quantity=1),
    )
    assert stock.available(T0) == 0


def test_reserve_more_than_available_is_refused_with_details() -> None:
    """Reserving more than available raises InsufficientStock naming sku, warehouse, available, requested."""
    stock = item(10)
    stock.reserve(ORDER_A, 7, T0 + HOUR, T0)
    stock.collect_events()
    with pytest.raises(InsufficientStock) as caught:
        stock.reserve(ORDER_B, 4, T0 + HOUR, T0)
    error = caught.value
    assert error.code == "insufficient_stock"
    assert error.shortages == [{"sku_id": "sku-1", "warehouse_id": "w1", "available": 3, "requested": 4}]
    assert error.sku_ids == ["sku-1"]
    assert "sku-1" in str(error) and "w1" in str(error)
    assert stock.collect_events() == []
    assert stock.reservation_for(ORDER_B) is None


def test_reserve_again_for_same_order_is_idempotent() -> None:
    """Reserving again for the same order and quantity records nothing and holds the units once."""
    stock = item(10)
    stock.reserve(ORDER_A, 4, T0 + HOUR, T0)
    stock = replayed(stock)
    stock.reserve(ORDER_A, 4, T0 + HOUR, T0)
    assert stock.collect_events() == []
    assert stock.available(T0) == 6


def test_reserve_again_with_another_quantity_is_refused() -> None:
    """A second, different reservation for the same order is refused, not silently merged."""
    stock = item(10)
    stock.reserve(ORDER_A, 4, T0 + HOUR, T0)
    stock = replayed(stock)
    with pytest.raises(IllegalTransition) as caught:
        stock.reserve(ORDER_A, 5, T0 + HOUR, T0)
    assert caught.value.code == "illegal_transition"
    assert stock.collect_events() == []


@pytest.mark.parametrize("quantity", [0, -1])
def test_non_positive_quantities_are_refused_and_record_nothing(quantity: int) -> None:
    """A zero or negative quantity fails validation and leaves no event."""
    stock = item(10)
    for command in (
        lambda: stock.receive(quantity, "po", T0),
        lambda: stock.reserve(ORDER_A, quantity, T0 + HOUR, T0),
        lambda: stock.write_off(quantity, "broken", T0),
    ):
        with pytest.raises((ValidationError, EcomcoreError)):
            command()
        assert stock.collect_events() == []
    assert stock.on_hand == 10 and stock.reservations == {}


# ------------------------------------------------------------------ release / confirm


def _held(quantity: int = 4, *, confirmed: bool = False) -> StockItem:
    stock = item(10)
    stock.reserve(ORDER_A, quantity, T0 + HOUR, T0)
    if confirmed:
        stock.confirm(ORDER_A, T0)
    return replayed(stock)


def test_release_all_gives_back_every_unit() -> None:
    """Releasing an order records ReservationReleased for all its units and returns the count."""
    stock = _held(4)
    assert stock.release(ORDER_A, ReleaseReason.CANCELLED, T0) == 4
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.ReservationReleased)
    assert (event.order_id, event.quantity, event.reason) == (ORDER_A, 4, "cancelled")
    assert stock.reservation_for(ORDER_A) is None and stock.available(T0) == 10


def test_release_partial_keeps_the_rest() -> None:
    """Releasing part of a reservation records that part and keeps the remainder held."""
    stock = _held(4)
    assert stock.release(ORDER_A, ReleaseReason.REFUNDED, T0, quantity=1) == 1
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.ReservationReleased) and event.quantity == 1
    assert stock.reservation_for(ORDER_A).quantity == 3  # type: ignore[union-attr]
    assert stock.available(T0) == 7


def test_release_more_than_held_releases_only_what_is_held() -> None:
    """Asking to release more units than held releases just the held units."""
    stock = _held(4)
    assert stock.release(ORDER_A, ReleaseReason.REFUNDED, T0, quantity=9) == 4
    assert_events(
        stock.collect_events(), an_event(StockItem.ReservationReleased, order_id=ORDER_A, quantity=4, reason="refunded")
    )


def test_release_twice_is_harmless() -> None:
    """Releasing an order that holds nothing (again, or never) records nothing."""
    stock = _held(4)
    stock.release(ORDER_A, ReleaseReason.CANCELLED, T0)
    stock.collect_events()
    assert stock.release(ORDER_A, ReleaseReason.CANCELLED, T0) == 0
    assert stock.release(ORDER_B, ReleaseReason.CANCELLED, T0) == 0
    assert stock.collect_events() == []
    assert stock.available(T0) == 10


def test_release_of_an_expired_reservation_records_it() -> None:
    """The sweeper's release of an already-expired reservation is recorded and changes no availability."""
    stock = _held(4)
    later = T0 + 2 * HOUR
    assert stock.available(later) == 10
    assert stock.release(ORDER_A, ReleaseReason.EXPIRED, later) == 4
    assert_events(
        stock.collect_events(), an_event(StockItem.ReservationReleased, order_id=ORDER_A, quantity=4, reason="expired")
    )
    assert stock.available(later) == 10


def test_confirm_without_reservation_is_refused() -> None:
    """Confirming an order that holds no reservation raises IllegalTransition and records nothing."""
    stock = item(10)
    with pytest.raises(IllegalTransition):
        stock.confirm(ORDER_A, T0)
    assert stock.collect_events() == []


def test_confirm_of_expired_reservation_is_refused() -> None:
    """Confirming a reservation after it expired is refused, so units taken meanwhile are not oversold."""
    stock = _held(4)  # expires at T0 + 1h
    later = T0 + 2 * HOUR
    stock.reserve(ORDER_B, 10, later + HOUR, later)  # the expired units were free, so B took them
    stock = replayed(stock)
    with pytest.raises(IllegalTransition):
        stock.confirm(ORDER_A, later)
    assert stock.collect_events() == []
    assert stock.reserved(later) <= stock.on_hand


def test_confirm_twice_records_once() -> None:
    """Confirming an already confirmed reservation records nothing more."""
    stock = _held(4, confirmed=True)
    stock.confirm(ORDER_A, T0)
    assert stock.collect_events() == []


# ------------------------------------------------------------------ dispatch


def test_dispatch_lowers_on_hand_and_reservation() -> None:
    """Dispatching confirmed units records Dispatched; on_hand and the reservation drop, available does not."""
    stock = _held(4, confirmed=True)
    stock.dispatch(ORDER_A, SHIPMENT, 3, T0)
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.Dispatched)
    assert (event.order_id, event.shipment_id, event.quantity) == (ORDER_A, SHIPMENT, 3)
    assert stock.on_hand == 7
    assert stock.reservation_for(ORDER_A).quantity == 1  # type: ignore[union-attr]
    assert stock.available(T0) == 6
    stock.dispatch(ORDER_A, SHIPMENT, 1, T0)
    assert stock.reservation_for(ORDER_A) is None and stock.on_hand == 6


def test_dispatch_without_confirmed_reservation_is_refused() -> None:
    """Dispatch is refused for an unconfirmed reservation, no reservation, or more than confirmed."""
    unconfirmed = _held(4)
    with pytest.raises(IllegalTransition):
        unconfirmed.dispatch(ORDER_A, SHIPMENT, 1, T0)
    assert unconfirmed.collect_events() == []

    confirmed = _held(4, confirmed=True)
    for order, quantity in ((ORDER_B, 1), (ORDER_A, 5)):
        with pytest.raises(IllegalTransition) as caught:
            confirmed.dispatch(order, SHIPMENT, quantity, T0)
        assert caught.value.code == "illegal_transition"
    assert confirmed.collect_events() == []
    assert confirmed.on_hand == 10


# ------------------------------------------------------------------ returns, write-offs, counts


def test_restock_return_raises_on_hand() -> None:
    """A sellable returned unit goes back on hand."""
    stock = item(10)
    stock.restock_return(ORDER_A, 2, T0)
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.ReturnRestocked) and (event.order_id, event.quantity) == (ORDER_A, 2)
    assert stock.on_hand == 12


def test_write_off_lowers_on_hand() -> None:
    """Writing off units (up to all on hand) records WrittenOff and lowers on_hand."""
    stock = item(10)
    stock.write_off(10, "damaged", T0)
    events = stock.collect_events()
    assert isinstance(events[0], StockItem.WrittenOff) and (events[0].quantity, events[0].reason) == (10, "damaged")
    assert stock.on_hand == 0


def test_write_off_above_on_hand_is_refused() -> None:
    """Writing off more than on hand raises IllegalTransition and records nothing."""
    stock = item(10)
    with pytest.raises(IllegalTransition) as caught:
        stock.write_off(11, "damaged", T0)
    assert caught.value.code == "illegal_transition"
    assert stock.collect_events() == []
    assert stock.on_hand == 10


@pytest.mark.parametrize(("counted", "difference"), [(14, 4), (7, -3), (10, 0)])
def test_count_records_the_difference(counted: int, difference: int) -> None:
    """A stocktake sets on_hand to the counted quantity and records the difference."""
    stock = _held(4, confirmed=True)
    stock.count(counted, "stocktake", T0)
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.Counted)
    assert (event.counted_quantity, event.difference, event.shortage) == (counted, difference, 0)
    assert stock.on_hand == counted


def test_count_below_reserved_is_accepted_with_shortage() -> None:
    """A count below what is reserved is accepted and records the shortage."""
    stock = _held(4, confirmed=True)
    stock.count(1, "stocktake", T0)
    events = stock.collect_events()
    assert isinstance(events[0], StockItem.Counted)
    assert (events[0].counted_quantity, events[0].difference, events[0].shortage) == (1, -9, 3)
    assert stock.on_hand == 1
    assert stock.reservation_for(ORDER_A).quantity == 4  # type: ignore[union-attr]


def test_count_shortage_ignores_expired_reservations() -> None:
    """Only active reservations make a shortage: an expired one does not."""
    stock = _held(4)
    stock.count(1, "stocktake", T0 + 2 * HOUR)
    event = stock.collect_events()[0]
    assert isinstance(event, StockItem.Counted) and event.shortage == 0


# ------------------------------------------------------------------ low stock


def test_low_stock_detected_once_when_available_falls_to_safety_stock() -> None:
    """Falling to the safety stock records exactly one LowStockDetected with a reorder suggestion."""
    stock = item(10, safety_stock=3, reorder_quantity=20)
    stock.reserve(ORDER_A, 6, T0 + HOUR, T0)  # available 4: above the safety stock
    assert_events(
        stock.collect_events(), an_event(StockItem.Reserved, order_id=ORDER_A, quantity=6, expires_at=T0 + HOUR)
    )
    stock.reserve(ORDER_B, 1, T0 + HOUR, T0)  # available 3: at the safety stock
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Reserved, order_id=ORDER_B, quantity=1, expires_at=T0 + HOUR),
        an_event(StockItem.LowStockDetected, available=3, safety_stock=3, suggested_reorder_quantity=20),
    )
    assert stock.low_stock_flagged


def test_low_stock_suggestion_brings_available_above_safety_stock() -> None:
    """The suggested reorder quantity is at least the reorder quantity and lifts available above safety."""
    stock = item(10, safety_stock=5, reorder_quantity=2)
    stock.write_off(9, "damaged", T0)
    alert = stock.collect_events()[-1]
    assert isinstance(alert, StockItem.LowStockDetected)
    assert alert.available == 1
    assert alert.suggested_reorder_quantity >= 2
    assert alert.available + alert.suggested_reorder_quantity > 5


def test_low_stock_not_repeated_while_low() -> None:
    """While available stays at or below the safety stock no further alert is recorded."""
    stock = item(10, safety_stock=3)
    stock.reserve(ORDER_A, 7, T0 + HOUR, T0)
    stock = replayed(stock)
    assert stock.low_stock_flagged
    stock.reserve(ORDER_B, 2, T0 + HOUR, T0)
    stock.receive(1, "po-2", T0)  # available 2: still low
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Reserved, order_id=ORDER_B, quantity=2, expires_at=T0 + HOUR),
        an_event(StockItem.Received, quantity=1, reference="po-2"),
    )


def test_low_stock_cleared_then_alerts_again_on_next_fall() -> None:
    """Rising above the safety stock records LowStockCleared; the next fall alerts again."""
    stock = item(10, safety_stock=3)
    stock.reserve(ORDER_A, 7, T0 + HOUR, T0)
    stock = replayed(stock)
    stock.release(ORDER_A, ReleaseReason.CANCELLED, T0)
    assert_events(
        stock.collect_events(),
        an_event(StockItem.ReservationReleased, order_id=ORDER_A, quantity=7, reason="cancelled"),
        an_event(StockItem.LowStockCleared, available=10),
    )
    assert not stock.low_stock_flagged
    stock.reserve(ORDER_B, 8, T0 + HOUR, T0)
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Reserved, order_id=ORDER_B, quantity=8, expires_at=T0 + HOUR),
        an_event(StockItem.LowStockDetected, available=2, safety_stock=3, suggested_reorder_quantity=2),
    )


def test_expiry_rearms_the_alert_so_a_new_fall_alerts_again() -> None:
    """Safety stock 2, 5 on hand: a checkout of 3 alerts; after its deadline availability is
    back to 5 (no release recorded yet), so a new checkout of 4 first clears the open alert
    with the availability then and, leaving 1, raises a second alert."""
    stock = item(5, safety_stock=2, reorder_quantity=10)
    stock.reserve(ORDER_A, 3, T0 + HOUR, T0)
    stock = replayed(stock)
    assert stock.low_stock_flagged and stock.available(T0 + HOUR) == 5
    stock.reserve(ORDER_B, 4, T0 + 2 * HOUR, T0 + HOUR)
    assert_events(
        stock.collect_events(),
        an_event(StockItem.LowStockCleared, timestamp=T0 + HOUR, available=5),
        an_event(StockItem.Reserved, order_id=ORDER_B, quantity=4, expires_at=T0 + 2 * HOUR),
        an_event(StockItem.LowStockDetected, available=1, safety_stock=2, suggested_reorder_quantity=10),
    )
    assert stock.low_stock_flagged


def test_expiry_rearms_the_alert_before_any_command() -> None:
    """Whatever command runs after an expiry lifted availability above the safety stock,
    the open alert is cleared first, before the command's own event."""
    stock = item(5, safety_stock=2, reorder_quantity=10)
    stock.reserve(ORDER_A, 3, T0 + HOUR, T0)
    stock.reserve(ORDER_B, 1, T0 + 3 * HOUR, T0)  # available 1: still low, no second alert
    stock.confirm(ORDER_B, T0)
    stock = replayed(stock)
    stock.write_off(1, "damaged", T0 + HOUR)  # available 5 − 1 − 1 = 3: above the safety stock
    assert_events(
        stock.collect_events(),
        an_event(StockItem.LowStockCleared, available=4),
        an_event(StockItem.WrittenOff, quantity=1, reason="damaged"),
    )
    assert not stock.low_stock_flagged


def test_sweeper_release_after_expiry_clears_with_the_availability_then() -> None:
    """The sweeper's release of an expired reservation changes nothing available: the alert
    is cleared (before the release) with the availability the expiry already gave back."""
    stock = item(5, safety_stock=2, reorder_quantity=10)
    stock.reserve(ORDER_A, 3, T0 + HOUR, T0)
    stock = replayed(stock)
    stock.release(ORDER_A, ReleaseReason.EXPIRED, T0 + 2 * HOUR)
    assert_events(
        stock.collect_events(),
        an_event(StockItem.LowStockCleared, available=5),
        an_event(StockItem.ReservationReleased, order_id=ORDER_A, quantity=3, reason="expired"),
    )
    assert not stock.low_stock_flagged


def test_receipt_rearms_the_alert_so_a_new_fall_alerts_again() -> None:
    """A receipt lifting availability above the safety stock clears the alert; the next fall alerts."""
    stock = item(5, safety_stock=2, reorder_quantity=10)
    stock.reserve(ORDER_A, 3, T0 + HOUR, T0)
    stock = replayed(stock)
    stock.receive(2, "po-2", T0)  # available 4
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Received, quantity=2, reference="po-2"),
        an_event(StockItem.LowStockCleared, available=4),
    )
    stock.reserve(ORDER_B, 3, T0 + HOUR, T0)  # available 1
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Reserved, order_id=ORDER_B, quantity=3, expires_at=T0 + HOUR),
        an_event(StockItem.LowStockDetected, available=1, safety_stock=2, suggested_reorder_quantity=10),
    )


def test_release_rearms_the_alert_so_a_new_fall_alerts_again() -> None:
    """A release (here a refund before dispatch) lifting availability above the safety stock
    clears the alert; the next fall alerts again."""
    stock = item(5, safety_stock=2, reorder_quantity=10)
    stock.reserve(ORDER_A, 3, T0 + HOUR, T0)
    stock.confirm(ORDER_A, T0)
    stock = replayed(stock)
    stock.release(ORDER_A, ReleaseReason.REFUNDED, T0 + 2 * HOUR, quantity=2)  # available 4
    assert_events(
        stock.collect_events(),
        an_event(StockItem.ReservationReleased, order_id=ORDER_A, quantity=2, reason="refunded"),
        an_event(StockItem.LowStockCleared, available=4),
    )
    stock.reserve(ORDER_B, 2, T0 + 3 * HOUR, T0 + 2 * HOUR)  # available 2: at the safety stock
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Reserved, order_id=ORDER_B, quantity=2, expires_at=T0 + 3 * HOUR),
        an_event(StockItem.LowStockDetected, available=2, safety_stock=2, suggested_reorder_quantity=10),
    )


def test_no_second_alert_while_availability_stays_at_or_below_safety_stock() -> None:
    """An expiry, a receipt or a release that leaves availability at or below the safety stock
    neither clears the alert nor lets a further fall alert again."""
    stock = item(5, safety_stock=3, reorder_quantity=10)
    stock.reserve(ORDER_A, 1, T0 + HOUR, T0)  # available 4: above
    stock.reserve(ORDER_B, 3, T0 + 3 * HOUR, T0)  # available 1: alert
    stock = replayed(stock)
    assert stock.low_stock_flagged
    later = T0 + HOUR  # ORDER_A expired: available 2, still at or below 3
    stock.receive(1, "po-2", later)  # available 3
    stock.reserve(ORDER_C, 2, later + HOUR, later)  # available 1
    stock.release(ORDER_B, ReleaseReason.CANCELLED, later, quantity=1)  # available 2
    stock.write_off(2, "damaged", later)  # available 0
    assert_events(
        stock.collect_events(),
        an_event(StockItem.Received, quantity=1, reference="po-2"),
        an_event(StockItem.Reserved, order_id=ORDER_C, quantity=2, expires_at=later + HOUR),
        an_event(StockItem.ReservationReleased, order_id=ORDER_B, quantity=1, reason="cancelled"),
        an_event(StockItem.WrittenOff, quantity=2, reason="damaged"),
    )
    assert stock.low_stock_flagged


def test_refused_command_after_expiry_records_no_clearing() -> None:
    """Check before record: a reserve refused for want of stock records nothing, not even the
    clearing its availability would have justified."""
    stock = item(5, safety_stock=2, reorder_quantity=10)
    stock.reserve(ORDER_A, 3, T0 + HOUR, T0)
    stock = replayed(stock)
    before = state(stock)
    with pytest.raises(InsufficientStock):
        stock.reserve(ORDER_B, 6, T0 + 2 * HOUR, T0 + HOUR)
    assert stock.collect_events() == [] and state(stock) == before


def test_no_low_stock_alert_above_safety_stock() -> None:
    """Available one above the safety stock raises no alert."""
    stock = item(10, safety_stock=3)
    stock.reserve(ORDER_A, 6, T0 + HOUR, T0)
    assert_events(
        stock.collect_events(), an_event(StockItem.Reserved, order_id=ORDER_A, quantity=6, expires_at=T0 + HOUR)
    )
    assert not stock.low_stock_flagged


def test_set_safety_stock_can_raise_the_alert() -> None:
    """Raising the safety stock to or above available records the alert at once."""
    stock = item(10)
    assert stock.set_safety_stock(10, 50, T0) is True
    assert_events(
        stock.collect_events(),
        an_event(StockItem.SafetyStockSet, safety_stock=10, reorder_quantity=50),
        an_event(StockItem.LowStockDetected, available=10, safety_stock=10, suggested_reorder_quantity=50),
    )


def test_set_safety_stock_to_the_same_values_records_nothing() -> None:
    """Setting the safety stock and reorder quantity it already has is a no-op."""
    stock = item(10, safety_stock=3, reorder_quantity=20)
    assert stock.set_safety_stock(3, 20, T0) is False
    assert stock.collect_events() == []


def test_set_up_registers_and_flags_low_stock_at_once() -> None:
    """Setting up a stock item registers it; with nothing on hand it is at its safety stock,
    so LowStockDetected follows with a reorder suggestion."""
    live = StockItem.set_up("sku-1", "w1", T0, safety_stock=3, reorder_quantity=20)
    assert_events(
        live.collect_events(),
        an_event(StockItem.Registered, sku_id="sku-1", warehouse_id="w1", safety_stock=3, reorder_quantity=20),
        an_event(StockItem.LowStockDetected, available=0, safety_stock=3, suggested_reorder_quantity=20),
    )
    assert live.low_stock_flagged and live.id == stock_item_id("sku-1", "w1")


# ------------------------------------------------------------------ snapshots and replay


def test_snapshot_round_trip_equals_live_aggregate() -> None:
    """snapshot_state/restore (via Snapshot) rebuild an aggregate equal to the live one."""
    live = item(10, safety_stock=3, reorder_quantity=20)
    live.reserve(ORDER_A, 4, T0 + HOUR, T0)
    live.confirm(ORDER_A, T0)
    live.reserve(ORDER_B, 3, T0 + HOUR, T0 + timedelta(minutes=5))
    live.dispatch(ORDER_A, SHIPMENT, 1, T0 + timedelta(minutes=6))
    later = live.collect_events()
    snapshot = Snapshot.take(live)
    restored = snapshot.restore()
    assert isinstance(restored, StockItem)
    assert state(restored) == state(live)
    assert restored.available(T0) == live.available(T0)
    # A snapshot followed by later events is replayed like the plain history.
    live.receive(2, "po-2", T0 + 2 * HOUR)
    tail = live.collect_events()
    assert state(project(None, [snapshot, *tail])) == state(live)  # type: ignore[arg-type]
    assert later  # the history before the snapshot was real


def test_replaying_events_rebuilds_the_live_aggregate() -> None:
    """project(None, events) of a live aggregate's events equals the live aggregate."""
    live = StockItem.register("sku-1", "w1", T0, safety_stock=2, reorder_quantity=5)
    live.receive(10, "po", T0)
    live.reserve(ORDER_A, 9, T0 + HOUR, T0)
    live.release(ORDER_A, ReleaseReason.CANCELLED, T0, quantity=2)
    live.count(8, "stocktake", T0)
    events = live.collect_events()
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    assert state(project(None, events)) == state(live)  # type: ignore[arg-type]


# ------------------------------------------------------------------ properties

_ORDERS = [uuid5(ORDER_A, str(i)) for i in range(4)]


def _run(stock: StockItem, step: tuple[Any, ...], now: Any) -> None:
    kind = step[0]
    if kind == "receive":
        stock.receive(step[1], "po", now)
    elif kind == "reserve":
        stock.reserve(_ORDERS[step[1]], step[2], now + timedelta(minutes=step[3]), now)
    elif kind == "release":
        stock.release(_ORDERS[step[1]], ReleaseReason.CANCELLED, now, quantity=step[2])
    elif kind == "confirm":
        stock.confirm(_ORDERS[step[1]], now)
    elif kind == "dispatch":
        stock.dispatch(_ORDERS[step[1]], SHIPMENT, step[2], now)
    elif kind == "count":
        stock.count(step[1], "stocktake", now)


@settings(max_examples=150, deadline=None)
@given(stock_commands)
@example([("receive", 1), ("reserve", 1, 1, 1), ("count", 0), ("reserve", 1, 1, 1)])
@example([("receive", 5), ("reserve", 0, 5, 10), ("tick", 11), ("reserve", 1, 5, 10), ("confirm", 0)])
def test_replay_of_random_commands_equals_live_and_never_oversells(steps: list[tuple[Any, ...]]) -> None:
    """Replaying any command sequence's events rebuilds the live item; a reserve never oversells."""
    live = StockItem.register("sku-1", "w1", T0, safety_stock=3, reorder_quantity=10)
    history = live.collect_events()
    now = T0
    for step in steps:
        if step[0] == "tick":
            now += timedelta(minutes=step[1])
            continue
        before = state(live)
        try:
            _run(live, step, now)
        except DomainError:
            assert live.collect_events() == []
            assert state(live) == before
            continue
        recorded = live.collect_events()
        if any(isinstance(e, StockItem.Reserved) for e in recorded):
            # A new reservation never takes more than was available (a stocktake may
            # later record a shortage; an idempotent repeat reserves nothing new).
            assert live.reserved(now) <= live.on_hand
            assert live.available(now) >= 0
        history += recorded
    rebuilt = project(None, history)
    assert isinstance(rebuilt, StockItem)
    for field in ("on_hand", "reservations", "low_stock_flagged", "version", "safety_stock"):
        assert getattr(rebuilt, field) == getattr(live, field), field
    assert state(rebuilt) == state(live)
    assert [e.originator_version for e in history] == list(range(1, len(history) + 1))


# ------------------------------------------------------------------ damaged returns


def test_write_off_return_records_the_damaged_units_and_leaves_stock_unchanged() -> None:
    """Damaged returned units record ReturnWrittenOff; they never entered on_hand, so on_hand and available stay."""
    stock = _held(4, confirmed=True)
    before = (stock.on_hand, stock.available(T0), stock.reserved(T0))
    stock.write_off_return(ORDER_B, 2, "damaged in return", T0 + HOUR)
    (event,) = stock.collect_events()
    assert isinstance(event, StockItem.ReturnWrittenOff)
    assert (event.order_id, event.quantity, event.reason) == (ORDER_B, 2, "damaged in return")
    assert (stock.on_hand, stock.available(T0), stock.reserved(T0)) == before == (10, 6, 4)


def test_write_off_return_does_not_raise_a_low_stock_alert() -> None:
    """Writing off damaged returns changes nothing available, so no low-stock event follows it."""
    stock = item(3, safety_stock=2)
    stock.write_off_return(ORDER_A, 5, "damaged in return", T0)
    assert_events(
        stock.collect_events(),
        an_event(StockItem.ReturnWrittenOff, order_id=ORDER_A, quantity=5, reason="damaged in return"),
    )
    assert not stock.low_stock_flagged


def test_write_off_return_replays_to_the_same_stock() -> None:
    """A history with restocked and written-off returns replays to the same StockItem."""
    stock = item(10)
    stock.restock_return(ORDER_A, 1, T0)
    stock.write_off_return(ORDER_A, 1, "damaged in return", T0)
    rebuilt = replayed(stock)
    assert_events(
        rebuilt.given_history[-2:],  # type: ignore[attr-defined]
        an_event(StockItem.ReturnRestocked, order_id=ORDER_A, quantity=1),
        an_event(StockItem.ReturnWrittenOff, order_id=ORDER_A, quantity=1, reason="damaged in return"),
    )
    assert state(rebuilt) == state(stock) and rebuilt.on_hand == 11


@pytest.mark.parametrize("quantity", [0, -1])
def test_write_off_return_of_non_positive_quantity_records_nothing(quantity: int) -> None:
    """A zero or negative write-off of returned units fails validation and leaves no event."""
    stock = item(10)
    with pytest.raises((ValidationError, EcomcoreError)):
        stock.write_off_return(ORDER_A, quantity, "damaged", T0)
    assert stock.collect_events() == []


# ------------------------------------------------------------------ running totals of reservations


def _brute_force_reserved(held: dict[UUID, Any], now: Any) -> int:
    return sum(r.quantity for r in held.values() if r.confirmed or r.expires_at > now)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([ORDER_A, ORDER_B, ORDER_C]),
            st.one_of(st.none(), st.integers(1, 5)),  # None: remove
            st.booleans(),  # confirmed
            st.integers(-3, 3),  # expiry in hours from T0
            st.integers(-4, 4),  # when to ask, in hours from T0
        ),
        max_size=25,
    )
)
def test_reserved_units_kept_as_running_totals_equal_the_sum_over_every_reservation(steps) -> None:
    """However reservations come, change, confirm, expire and go, the units held at any moment
    are the confirmed ones plus the unconfirmed ones not yet expired."""
    reservations = Reservations()
    model: dict[UUID, Reservation] = {}
    for order_id, quantity, confirmed, expiry, asked in steps:
        if quantity is None:
            reservations.remove(order_id)
            model.pop(order_id, None)
        else:
            held = Reservation(
                quantity=quantity, expires_at=None if confirmed else T0 + expiry * HOUR, confirmed=confirmed
            )
            reservations.set(order_id, held)
            model[order_id] = held
        for hours in (asked, asked + 1, -5, 5):
            assert reservations.reserved(T0 + hours * HOUR) == _brute_force_reserved(model, T0 + hours * HOUR)
        assert dict(reservations) == model


def test_a_checkout_costs_the_same_whatever_the_number_of_paid_orders_holding_units() -> None:
    """Availability does not look at each confirmed reservation: a paid order's units are
    counted in a running total (issue 10: cost growing with open reservations)."""
    stock = item(on_hand=1000)
    for n in range(200):
        order = uuid5(ORDER_A, str(n))
        stock.reserve(order, 1, T0 + HOUR, T0)
        stock.confirm(order, T0)
    looked_at = []

    class Watching(Reservation):
        def is_active(self, now):  # type: ignore[no-untyped-def]
            looked_at.append(now)
            return super().is_active(now)

    stock.reservations.set(ORDER_B, Watching(quantity=5, expires_at=T0 + HOUR))
    assert stock.available(T0) == 1000 - 200 - 5
    assert looked_at == []  # nothing expired yet: the totals answer alone
    assert stock.available(T0 + 2 * HOUR) == 1000 - 200  # expired, not yet released
    assert len(looked_at) == 1  # only the unconfirmed one was looked at
