"""Available-stock read model (spec §5.2, §6.2) against the StockItem aggregates, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from eventsourcing.utils import get_topic
from shop_fixtures import START, open_shop, stock_catalogue
from sqlalchemy import MetaData, create_engine

from ecomcore import ManualClock, Settings, Shop
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.stock_item import StockItem, stock_item_id
from ecomcore.simulation import simulate_trading_day
from ecomcore_projections.base import ProjectionFailed, live_name
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.runner import Projector, ReadModels
from ecomcore_projections.stock import StockProjection, StockQueries

HOUR = timedelta(hours=1)


@pytest.fixture
def shop(store_url, clock):
    # Snapshots every 2 events: they are not notifications, so the projection still sees every event.
    shop = open_shop(store_url, clock, snapshot_interval=2)
    stock_catalogue(shop)
    yield shop
    shop.close()


@pytest.fixture
def queries_class() -> type[StockQueries]:
    """The read model under test: conftest's read_models, projector and queries hold it."""
    return StockQueries


def registered_items(shop) -> set[tuple[str, str]]:
    topic = get_topic(StockItem.Registered)
    found = shop.store.recorder.select_notifications(1, 100_000, topics=[topic])
    return {(e.sku_id, e.warehouse_id) for e in map(shop.store.mapper.to_domain_event, found)}


def assert_read_model_matches(shop, projector, queries, now) -> None:
    """Every stock item's row and reservations equal the aggregate's, at ``now``."""
    projector.catch_up()
    levels = queries.levels(now)
    assert {(x.sku_id, x.warehouse_id) for x in levels} == registered_items(shop)
    for level in levels:
        item = shop.stock_item(level.sku_id, level.warehouse_id)
        assert (
            level.on_hand,
            level.reserved,
            level.available,
            level.low_stock_flagged,
            level.safety_stock,
            level.reorder_quantity,
        ) == (
            item.on_hand,
            item.reserved(now),
            item.available(now),
            item.low_stock_flagged,
            item.safety_stock,
            item.reorder_quantity,
        ), (level.sku_id, level.warehouse_id)
        held = {
            r.order_id: (r.quantity, r.expires_at, r.confirmed, r.active)
            for r in queries.reservations(level.sku_id, level.warehouse_id, now)
        }
        assert held == {
            order_id: (r.quantity, r.expires_at, r.confirmed, r.is_active(now))
            for order_id, r in item.reservations.items()
        }
    open_suggestions = {(s.sku_id, s.warehouse_id) for s in queries.reorder_suggestions()}
    assert open_suggestions == {(x.sku_id, x.warehouse_id) for x in levels if x.low_stock_flagged}
    assert {(x.sku_id, x.warehouse_id) for x in queries.low_stock(now)} == open_suggestions


def scripted_history(shop, clock, check) -> None:
    """Receipts, checkouts, an expiry without sweeper, payment, dispatch, refund, return, stocktake."""
    shop.set_up_stock(sku_id="A1", warehouse_id="w1", safety_stock=3, reorder_quantity=20)
    for sku_id, warehouse_id, quantity in [
        ("A1", "w1", 10),
        ("B1", "w1", 5),
        ("C1", "w2", 4),
        ("C1", "w3", 6),
        ("E1", "w2", 10),
    ]:
        shop.receive_stock(sku_id=sku_id, warehouse_id=warehouse_id, quantity=quantity, reference="po-1")
    check()

    alice = shop.checkout(
        customer_id="alice",
        items=[{"sku_id": "A1", "quantity": 4}, {"sku_id": "B1", "quantity": 2}],
        shipping_address="a",
    )
    clock.advance(HOUR)
    # Bob's cart spans warehouses: A1 from w1, C1 split 4 from w2 and 4 from w3; A1 falls to the safety stock.
    shop.checkout(
        customer_id="bob",
        items=[{"sku_id": "A1", "quantity": 4}, {"sku_id": "C1", "quantity": 8}],
        shipping_address="b",
    )
    check()
    paid = shop.pay(checkout_id=alice.checkout_id, payment_id="pay-a", amount=alice.payable, provider_txn="t-a")
    check()

    clock.advance(25 * HOUR)  # bob's deadline passed; no sweeper yet: his units stop counting at once
    check()
    assert shop.sweep()["expired_checkouts"] == 1
    check()

    carol = shop.checkout(
        customer_id="carol",
        items=[{"sku_id": "E1", "quantity": 3}, {"sku_id": "C1", "quantity": 2}],
        shipping_address="c",
    )
    shop.pay(checkout_id=carol.checkout_id, payment_id="pay-c", amount=carol.payable, provider_txn="t-c")
    e1_order = next(oid for oid in carol.order_ids if shop.order(oid).merchant_id == "m2")
    shop.refund_only(order_id=e1_order, refund_id="re-c1", lines={1: 1}, reason="changed mind")  # releases 1 E1
    check()

    (alice_order,) = alice.order_ids
    for shipment_id in paid.shipment_ids:
        shop.dispatch(shipment_id=shipment_id, carrier="SF", tracking_number="SF-a")
        shop.deliver(shipment_id=shipment_id)
    check()
    return_id = shop.request_return(order_id=alice_order, customer_id="alice", lines={1: 2}, reason="wrong colour")
    shop.approve_return(order_id=alice_order, return_id=return_id)
    shop.ship_return(order_id=alice_order, return_id=return_id, carrier="SF", tracking_number="RET-a")
    shop.receive_return(order_id=alice_order, return_id=return_id, sellable={1: 1}, damaged={1: 1})
    shop.refund_return(order_id=alice_order, return_id=return_id, refund_id="re-a1")
    check()

    assert shop.count_stock(sku_id="C1", warehouse_id="w3", counted_quantity=5) == 0
    assert shop.count_stock(sku_id="E1", warehouse_id="w2", counted_quantity=1) == 1  # 2 still reserved: a shortage
    shop.write_off_stock(sku_id="B1", warehouse_id="w1", quantity=1, reason="broken")
    shop.set_up_stock(sku_id="A1", warehouse_id="w1", safety_stock=8, reorder_quantity=30)
    check()


def test_read_model_equals_the_stock_items_after_a_scripted_history(shop, clock, projector, queries):
    """After each step of a history the read model's on hand, reserved, available and flag equal the aggregates'."""
    scripted_history(shop, clock, lambda: assert_read_model_matches(shop, projector, queries, clock.now()))
    now = clock.now()
    a1 = queries.level("A1", "w1", now)
    # 10 in, 4 dispatched, 1 restocked; raising the safety stock to 8 flags it low again.
    assert (a1.on_hand, a1.reserved, a1.available, a1.low_stock_flagged) == (7, 0, 7, True)
    c1 = queries.total("C1", now)
    assert (c1.on_hand, c1.reserved, c1.available, c1.warehouses) == (9, 2, 7, 2)
    e1 = queries.level("E1", "w2", now)
    assert (e1.on_hand, e1.reserved, e1.available) == (1, 2, -1)  # the stocktake's shortage shows
    history = queries.reorder_suggestions(open_only=False)
    assert [(s.sku_id, s.warehouse_id, s.suggested_quantity, s.available_when_opened, s.is_open) for s in history] == [
        ("A1", "w1", 20, 0, False),  # at registration: nothing on hand yet
        ("A1", "w1", 20, 2, False),  # bob's checkout left 2; cleared when his expired reservation was released
        ("C1", "w2", 1, 0, False),  # bob took all 4 (safety stock 0); cleared by the same release
        ("A1", "w1", 30, 7, True),  # safety stock raised to 8 with 7 available (same moment as E1: by SKU)
        ("E1", "w2", 2, -1, True),  # the stocktake found 1 with 2 promised
    ]


def test_expired_reservation_stops_counting_before_the_sweeper(shop, projector, queries):
    """An unpaid reservation counts until its deadline and not a moment after, without any new event."""
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=5, reference="po-1")
    receipt = shop.checkout(customer_id="bob", items=[{"sku_id": "A1", "quantity": 2}], shipping_address="b")
    projector.catch_up()
    deadline = receipt.payment_deadline
    (held,) = queries.reservations("A1", "w1", deadline)
    assert held.expires_at == deadline and held.expires_at.tzinfo is not None  # round-trips as aware UTC
    assert queries.level("A1", "w1", deadline - timedelta(microseconds=1)).available == 3
    assert queries.level("A1", "w1", deadline).available == 5
    assert shop.stock_item("A1", "w1").available(deadline) == 5


def test_rows_do_not_depend_on_batch_boundaries(shop, clock, read_models):
    """Applied one event per batch, the rows equal a rebuild from zero in one large batch."""
    scripted_history(shop, clock, lambda: None)
    Projector(shop.store, read_models, names=["stock"], batch_size=1).catch_up()
    report = rebuild(shop.store, read_models, "stock", check=True, batch_size=100_000)
    assert report.events > 0 and report.differences == ()


def test_handles_every_stock_item_event():
    """The projection declares every event class of StockItem."""
    events = {v for v in vars(StockItem).values() if isinstance(v, type) and issubclass(v, DomainEvent)}
    assert set(StockProjection.handles) == events


@pytest.fixture
def bare(tmp_path):
    """The projection over an empty SQLite database, fed hand-built events."""
    engine = create_engine(f"sqlite:///{tmp_path}/rm.sqlite")
    metadata = MetaData()
    tables = StockProjection.define_tables(metadata, live_name)
    metadata.create_all(engine)
    yield engine, StockProjection(tables, store=None)
    engine.dispose()


def _event(cls, version, **facts):
    return cls(originator_id=stock_item_id("A1", "w1"), originator_version=version, timestamp=START, **facts)


def test_unexpected_events_raise(bare):
    """A gap in versions, an unknown item or reservation, or an unhandled event stops the projection."""
    engine, projection = bare
    with pytest.raises(ProjectionFailed, match="never registered"), engine.begin() as conn:
        projection.apply_batch(conn, [(1, _event(StockItem.Received, 2, quantity=1, reference="x"))])
    with engine.begin() as conn:
        registered = _event(StockItem.Registered, 1, sku_id="A1", warehouse_id="w1", safety_stock=0, reorder_quantity=0)
        projection.apply_batch(conn, [(1, registered)])
    with pytest.raises(ProjectionFailed, match="must be version 2, got 3"), engine.begin() as conn:
        projection.apply_batch(conn, [(2, _event(StockItem.Received, 3, quantity=1, reference="x"))])
    with pytest.raises(ProjectionFailed, match="holds no reservation"), engine.begin() as conn:
        released = _event(StockItem.ReservationReleased, 2, order_id=uuid4(), quantity=1, reason="x")
        projection.apply_batch(conn, [(2, released)])
    with pytest.raises(ProjectionFailed, match="not flagged low"), engine.begin() as conn:
        projection.apply_batch(conn, [(2, _event(StockItem.LowStockCleared, 2, available=1))])
    with pytest.raises(ProjectionFailed, match="does not handle"), engine.begin() as conn:
        stranger = DomainEvent(originator_id=stock_item_id("A1", "w1"), originator_version=2, timestamp=START)
        projection.apply_batch(conn, [(2, stranger)])


def test_a_simulated_trading_day_matches_the_stock_items(tmp_path):
    """After the demo's trading day every stock row equals its aggregate, at the end and a week later."""
    url = f"sqlite:///{tmp_path}/store.sqlite"
    clock = ManualClock(START)
    shop = Shop(url, clock=clock, settings=Settings(store_url=url))
    read_models = ReadModels(url, projections={"stock": StockProjection})
    try:
        simulate_trading_day(shop, clock, orders=60, seed=11)
        projector = Projector(shop.store, read_models)
        queries = StockQueries(read_models.engine, read_models.tables["stock"])
        assert_read_model_matches(shop, projector, queries, clock.now())
        assert_read_model_matches(shop, projector, queries, clock.now() + 7 * 24 * HOUR)
    finally:
        read_models.dispose()
        shop.close()
