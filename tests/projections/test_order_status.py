"""The order-status read model (spec §6 item 1) on SQLite and PostgreSQL: rows after each
step of scripted histories, its queries, refusals, and rows independent of batch boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from shop_fixtures import START, campaign, stocked_shop
from sqlalchemy import Engine, MetaData, Table, create_engine, select

from ecomcore import CouponTerms, ManualClock, OrderState, RefundStatus, ShipmentState
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.order import Order
from ecomcore.domain.shipment import Shipment
from ecomcore.infrastructure.catalogue import sqlalchemy_url
from ecomcore_projections.base import ProjectionFailed, UtcDateTime
from ecomcore_projections.order_status import (
    OrderStatusProjection,
    OrderStatusQueries,
)
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.runner import Projector

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def shop(store_url, clock):
    shop = stocked_shop(store_url, clock, stock=(("A1", "w1", 10), ("C1", "w2", 10), ("E1", "w2", 10)))
    yield shop
    shop.close()


@pytest.fixture
def queries_class() -> type[OrderStatusQueries]:
    """The read model under test: conftest's read_models, projector and queries hold it."""
    return OrderStatusQueries


# ---------------------------------------------------------------------- scripted histories


class Alice:
    """What the main history made: ids to look rows up by."""

    checkout_id: UUID
    m1: UUID  # tea house: A1 × 2 from w1, C1 × 3 from w2 → two parcels
    m2: UUID  # iron works: E1 × 1, paid and never dispatched
    p1: UUID  # w1 parcel: delivered
    p2: UUID  # w2 parcel: lost, refunded
    return_id: UUID
    return_parcel: UUID


def alice_history(shop, clock: ManualClock, ids: Alice) -> Iterator[str]:
    """Checkout → pay → dispatch → tracking out of order → one parcel delivered, one lost →
    refund the lost units → a return → receipt confirmed; yields after each step."""
    coupon = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="cash", amount_off=500, funding="m1")), customer_id="alice"
    )
    receipt = shop.checkout(
        customer_id="alice",
        items=[{"sku_id": "A1", "quantity": 2}, {"sku_id": "C1", "quantity": 3}, {"sku_id": "E1", "quantity": 1}],
        merchant_coupon_ids=[coupon],
        shipping_address="1 Tea Road",
    )
    ids.checkout_id, (ids.m1, ids.m2) = receipt.checkout_id, receipt.order_ids
    yield "placed"
    clock.advance(HOUR)  # 09:00
    shop.pay(checkout_id=receipt.checkout_id, payment_id="pay-1", amount=receipt.payable, provider_txn="txn-1")
    ids.p1, ids.p2 = shop.order(ids.m1).shipments
    yield "paid"
    clock.advance(HOUR)  # 10:00
    shop.dispatch(shipment_id=ids.p1, carrier="SF", tracking_number="SF100")
    yield "first parcel dispatched"
    shop.dispatch(shipment_id=ids.p2, carrier="YTO", tracking_number="YT200")
    yield "both dispatched"
    clock.advance(3 * HOUR)  # 13:00: the carrier reports its scans late and out of order
    for hour, status, location in [(12, "arrived at hub", "Hangzhou"), (11, "picked up", "Shanghai"),
                                   (12, "sorted", "Hangzhou")]:
        shop.update_tracking(shipment_id=ids.p1, occurred_at=START.replace(hour=hour), status=status,
                             location=location)
    yield "tracked"
    clock.advance(DAY)  # day 2, 13:00
    shop.deliver(shipment_id=ids.p1)
    shop.report_delivery_failure(shipment_id=ids.p2, reason="lost by carrier")
    yield "one delivered, one lost"
    clock.advance(HOUR)  # 14:00
    shop.refund_only(order_id=ids.m1, refund_id="re-1", lines={2: 3}, reason="parcel lost", shipment_id=ids.p2)
    yield "lost units refunded"
    clock.advance(HOUR)  # 15:00
    ids.return_id = shop.request_return(order_id=ids.m1, customer_id="alice", lines={1: 1}, reason="box crushed")
    shop.approve_return(order_id=ids.m1, return_id=ids.return_id)
    ids.return_parcel = shop.ship_return(order_id=ids.m1, return_id=ids.return_id, carrier="SF",
                                         tracking_number="RET-1")
    yield "return sent"
    clock.advance(DAY)  # day 3, 15:00
    shop.receive_return(order_id=ids.m1, return_id=ids.return_id, sellable={1: 1})
    yield "return received"
    shop.refund_return(order_id=ids.m1, return_id=ids.return_id, refund_id="re-2")
    yield "return refunded"
    clock.advance(HOUR)  # 16:00
    shop.confirm_receipt(order_id=ids.m1, customer_id="alice")
    yield "confirmed"


class Others:
    bob: UUID  # cancelled by the customer
    carol: UUID  # expired, then paid late (refunded at once)
    dave: UUID  # every unit refunded before dispatch: parcel shrunk, then cancelled; closed
    erin: UUID  # return rejected; completed automatically after the after-sales window


def other_histories(shop, clock: ManualClock, ids: Others) -> Iterator[str]:
    """Cancelled, expired and late-paid, closed before dispatch, completed automatically."""
    bob = shop.checkout(customer_id="bob", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="2 Oak Lane")
    (ids.bob,) = bob.order_ids
    clock.advance(HOUR)
    shop.cancel(checkout_id=bob.checkout_id)
    yield "bob cancelled"
    carol = shop.checkout(customer_id="carol", items=[{"sku_id": "E1", "quantity": 2}], shipping_address="3 Elm St")
    (ids.carol,) = carol.order_ids
    clock.advance(25 * HOUR)
    yield "carol overdue"
    shop.expire_overdue_orders()
    yield "carol expired"
    clock.advance(HOUR)
    shop.pay(checkout_id=carol.checkout_id, payment_id="pay-late", amount=carol.payable, provider_txn="txn-late")
    yield "carol paid late"
    dave = shop.checkout(customer_id="dave", items=[{"sku_id": "C1", "quantity": 3}], shipping_address="4 Ash Rd")
    (ids.dave,) = dave.order_ids
    shop.pay(checkout_id=dave.checkout_id, payment_id="pay-dave", amount=dave.payable, provider_txn="txn-dave")
    clock.advance(HOUR)
    shop.refund_only(order_id=ids.dave, refund_id="re-d1", lines={1: 1}, reason="changed mind")
    shop.refund_only(order_id=ids.dave, refund_id="re-d2", lines={1: 2}, reason="changed mind")
    yield "dave closed"
    erin = shop.checkout(customer_id="erin", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="5 Fir Ct")
    (ids.erin,) = erin.order_ids
    shop.pay(checkout_id=erin.checkout_id, payment_id="pay-erin", amount=erin.payable, provider_txn="txn-erin")
    (parcel,) = shop.order(ids.erin).shipments
    shop.dispatch(shipment_id=parcel, carrier="ZTO", tracking_number="ZT1")
    clock.advance(DAY)
    shop.deliver(shipment_id=parcel)
    return_id = shop.request_return(order_id=ids.erin, customer_id="erin", lines={1: 1}, reason="no reason")
    shop.reject_return(order_id=ids.erin, return_id=return_id, reason="used")
    clock.advance(8 * DAY)
    shop.sweep()
    yield "erin completed"


# ---------------------------------------------------------------------- helpers


def utc(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def dump(engine: Engine, tables: dict[str, Table]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, ordered by primary key."""
    with engine.connect() as conn:
        return {
            logical: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for logical, table in sorted(tables.items())
        }


def notifications(store) -> list:
    topics = [get_topic(t) for t in OrderStatusProjection.handles]
    return list(store.recorder.select_notifications(1, 1_000_000, topics=topics))


class RolledBack(Exception):
    pass


def project_in_batches(store, engine: Engine, label: str, size: int, *, cold: bool = False,
                       roll_back_first: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Apply the whole log in batches of ``size`` into tables of their own, one transaction
    each; ``cold``: a new projection (empty cache) per batch; ``roll_back_first``: each batch
    is first applied and rolled back (the runner then calls forget), then applied for real."""
    metadata = MetaData()
    tables = OrderStatusProjection.define_tables(metadata, lambda logical: f"rm_{label}_{logical}")
    metadata.create_all(engine)
    found = notifications(store)
    projection = OrderStatusProjection(tables, store)
    for start in range(0, len(found), size):
        batch = found[start:start + size]
        if cold:
            projection = OrderStatusProjection(tables, store)
        if roll_back_first:
            with pytest.raises(RolledBack), engine.begin() as conn:
                projection.apply_batch(conn, [(n.id, store.mapper.to_domain_event(n)) for n in batch])
                raise RolledBack
            projection.forget()
        with engine.begin() as conn:
            projection.apply_batch(conn, [(n.id, store.mapper.to_domain_event(n)) for n in batch])
    return dump(engine, tables)


def timeline(detail) -> list[tuple[str, str]]:
    return [(entry.event_type, entry.description) for entry in detail.timeline]


# ---------------------------------------------------------------------- tests


def test_handles_every_order_and_shipment_event_and_no_checkout_event():
    """The projection selects every Order and Shipment event (a gap would be refused) and no Checkout event."""
    handled = set(OrderStatusProjection.handles)
    assert handled == set(Order._handlers) | set(Shipment._handlers)
    assert not handled & set(Checkout._handlers)
    assert len(OrderStatusProjection.handles) == len(handled)


def test_scripted_history_rows_after_each_step(shop, clock, projector, queries):
    """Order state, money, lines, parcels with tracking and the timeline match the history step by step."""
    ids = Alice()
    seen: dict[str, Any] = {}
    for step in alice_history(shop, clock, ids):
        projector.catch_up()
        seen[step] = queries.order(ids.m1)
        # The domain's own answer, for every step: the read model never disagrees with it.
        order = shop.order(ids.m1)
        row = seen[step]
        assert (row.state, row.refund_status, row.paid, row.refunded, row.version) == (
            order.state, order.refund_status, order.paid, order.refunded, order.version
        ), step

    placed = seen["placed"]
    assert placed.model_dump(include={
        "checkout_id", "customer_id", "merchant_id", "currency", "state", "refund_status", "gross",
        "promotion_discount", "merchant_coupon_discount", "platform_coupon_discount", "freight", "payable", "paid",
        "refunded", "payment_deadline", "placed_at", "paid_at", "delivered_at", "shipping_address", "open_returns",
    }) == {
        "checkout_id": ids.checkout_id, "customer_id": "alice", "merchant_id": "m1", "currency": "CNY",
        "state": OrderState.PENDING_PAYMENT, "refund_status": RefundStatus.NONE, "gross": 8980,
        "promotion_discount": 0, "merchant_coupon_discount": 500, "platform_coupon_discount": 0,
        "freight": 1100, "payable": 9580, "paid": 0, "refunded": 0, "payment_deadline": utc(12, 8),
        "placed_at": utc(11, 8), "paid_at": None, "delivered_at": None, "shipping_address": "1 Tea Road",
        "open_returns": 0,
    }
    assert [(ln.line_no, ln.sku_id, ln.quantity, ln.gross, ln.merchant_coupon_discount, ln.net)
            for ln in placed.lines] == [
        (1, "A1", 2, 5980, 333, 5647),
        (2, "C1", 3, 3000, 167, 2833),
    ]
    assert placed.shipments == () and timeline(placed) == [
        ("Order.Placed", "placed: 2 line(s), 5 unit(s), payable CNY 95.80, to be paid by 2026-11-12 08:00 UTC"),
    ]

    paid = seen["paid"]
    assert (paid.state, paid.paid, paid.paid_at, paid.payment_id) == (OrderState.PAID, 9580, utc(11, 9), "pay-1")
    assert [(s.seq, s.shipment_id, s.warehouse_id, s.state, s.carrier, s.is_return) for s in paid.shipments] == [
        (1, ids.p1, "w1", ShipmentState.PLANNED, "", False),
        (2, ids.p2, "w2", ShipmentState.PLANNED, "", False),
    ]
    assert [[(i.line_no, i.sku_id, i.quantity, i.weight_g) for i in s.items] for s in paid.shipments] == [
        [(1, "A1", 2, 800)], [(2, "C1", 3, 300)],
    ]

    assert seen["first parcel dispatched"].state is OrderState.PARTIALLY_SHIPPED
    both = seen["both dispatched"]
    assert both.state is OrderState.SHIPPED
    assert [(s.state, s.carrier, s.tracking_number, s.dispatched_at) for s in both.shipments] == [
        (ShipmentState.DISPATCHED, "SF", "SF100", utc(11, 10)),
        (ShipmentState.DISPATCHED, "YTO", "YT200", utc(11, 10)),
    ]

    tracked = seen["tracked"].shipments[0]
    assert tracked.state is ShipmentState.IN_TRANSIT
    # Sorted by when the scan happened; the two 12:00 scans stay in the order they were reported.
    assert [(t.seq, t.occurred_at, t.status, t.location) for t in tracked.tracking] == [
        (1, utc(11, 11), "picked up", "Shanghai"),
        (2, utc(11, 12), "arrived at hub", "Hangzhou"),
        (3, utc(11, 12), "sorted", "Hangzhou"),
    ]
    assert [(t.occurred_at, t.status, t.location) for t in tracked.tracking] == [
        (u.occurred_at, u.status, u.location) for u in shop.shipment(ids.p1).tracking
    ]

    lost = seen["one delivered, one lost"]
    assert (lost.state, lost.delivered_at) == (OrderState.SHIPPED, None)
    assert [(s.state, s.reason) for s in lost.shipments] == [
        (ShipmentState.DELIVERED, None), (ShipmentState.FAILED, "lost by carrier"),
    ]

    refunded = seen["lost units refunded"]
    assert (refunded.state, refunded.refund_status, refunded.refunded, refunded.delivered_at) == (
        OrderState.DELIVERED, RefundStatus.PARTIAL, 2833, utc(12, 13)
    )
    assert [(ln.line_no, ln.refunded_units, ln.refunded_amount) for ln in refunded.lines] == [(1, 0, 0), (2, 3, 2833)]

    sent = seen["return sent"]
    assert sent.open_returns == 1
    (back,) = [s for s in sent.shipments if s.is_return]
    assert (back.seq, back.shipment_id, back.return_id, back.state, back.carrier, back.tracking_number,
            back.warehouse_id) == (3, ids.return_parcel, ids.return_id, ShipmentState.DISPATCHED, "SF", "RET-1", "w1")
    assert [(i.line_no, i.quantity, i.sellable, i.damaged) for i in back.items] == [(1, 1, None, None)]

    received = seen["return received"]
    assert received.open_returns == 1 and received.refunded == 2833
    assert [(i.line_no, i.sellable, i.damaged) for i in received.shipments[2].items] == [(1, 1, 0)]
    assert received.shipments[2].state is ShipmentState.RECEIVED

    returned = seen["return refunded"]
    assert (returned.state, returned.refund_status, returned.refunded, returned.open_returns) == (
        OrderState.DELIVERED, RefundStatus.PARTIAL, 2833 + 2823, 0
    )
    assert [(ln.line_no, ln.refunded_units, ln.refunded_amount) for ln in returned.lines] == [
        (1, 1, 2823), (2, 3, 2833),
    ]

    done = seen["confirmed"]
    assert (done.state, done.completion, done.completed_at, done.closed_at, done.updated_at) == (
        OrderState.COMPLETED, "confirmed", utc(13, 16), None, utc(13, 16)
    )
    assert timeline(done) == [
        ("Order.Placed", "placed: 2 line(s), 5 unit(s), payable CNY 95.80, to be paid by 2026-11-12 08:00 UTC"),
        ("Order.Paid", "paid CNY 95.80 (payment pay-1, provider txn-1)"),
        ("Order.ShipmentsPlanned", "2 parcel(s) planned"),
        ("Shipment.Dispatched", "parcel dispatched from w1 with SF, waybill SF100"),
        ("Shipment.Dispatched", "parcel dispatched from w2 with YTO, waybill YT200"),
        ("Shipment.TrackingUpdated", "tracking SF100: arrived at hub at Hangzhou (2026-11-11 12:00 UTC)"),
        ("Shipment.TrackingUpdated", "tracking SF100: picked up at Shanghai (2026-11-11 11:00 UTC)"),
        ("Shipment.TrackingUpdated", "tracking SF100: sorted at Hangzhou (2026-11-11 12:00 UTC)"),
        ("Shipment.Delivered", "parcel SF100 delivered"),
        ("Shipment.Failed", "parcel YT200 failed: lost by carrier"),
        ("Order.RefundIssued", "refund only: CNY 28.33 for line 2 × 3 (refund re-1: parcel lost)"),
        ("Order.ReturnRequested", "return requested: line 1 × 1 (box crushed)"),
        ("Order.ReturnApproved", "return approved"),
        ("Shipment.ReturnSent", "return parcel sent to w1 with SF, waybill RET-1"),
        ("Order.ReturnReceived", "return received: line 1 × 1 sellable"),
        ("Order.RefundIssued", "return refunded: CNY 28.23 for line 1 × 1 (refund re-2: box crushed)"),
        ("Order.Completed", "completed: receipt confirmed"),
    ]
    assert [e.seq for e in done.timeline] == list(range(1, 18))
    positions = [e.position for e in done.timeline]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [e.shipment_id for e in done.timeline if e.event_type == "Shipment.Dispatched"] == [ids.p1, ids.p2]
    # The other merchant's order of the same checkout: paid, its parcel never left.
    other = queries.order(ids.m2)
    assert (other.checkout_id, other.state, other.paid, [s.state for s in other.shipments]) == (
        ids.checkout_id, OrderState.PAID, 4000, [ShipmentState.PLANNED]
    )


def test_cancelled_expired_late_paid_and_closed_orders(shop, clock, projector, queries):
    """Cancellation, expiry with a late payment refunded at once, a refund of everything before
    dispatch (parcel shrunk then cancelled) and automatic completion show in rows and timelines."""
    ids = Others()
    for step in other_histories(shop, clock, ids):
        projector.catch_up()
        if step == "carol overdue":
            overdue = queries.unpaid_past_deadline(clock.now())
            assert [o.order_id for o in overdue] == [ids.carol]
            assert queries.unpaid_past_deadline(overdue[0].payment_deadline - timedelta(microseconds=1)) == ()
            assert [o.order_id for o in queries.unpaid_past_deadline(overdue[0].payment_deadline)] == [ids.carol]
        if step == "carol expired":
            assert queries.unpaid_past_deadline(clock.now()) == ()

    bob = queries.order(ids.bob)
    assert (bob.state, bob.cancel_reason, bob.cancelled_at, bob.paid, bob.shipments) == (
        OrderState.CANCELLED, "customer", utc(11, 9), 0, ()
    )
    assert timeline(bob)[-1] == ("Order.Cancelled", "cancelled (customer)")

    carol = queries.order(ids.carol)
    assert (carol.state, carol.cancel_reason, carol.paid, carol.late_payments, carol.late_refunded,
            carol.refund_status, carol.refunded) == (OrderState.CANCELLED, "timeout", 0, 7200, 7200,
                                                     RefundStatus.NONE, 0)
    assert timeline(carol)[1:] == [
        ("Order.Cancelled", "cancelled (timeout)"),
        ("Order.LatePaymentReceived", "late payment of CNY 72.00 received (payment pay-late); refunded in full"),
        ("Order.RefundIssued", f"late payment refunded: CNY 72.00 (refund late:pay-late:{ids.carol})"),
    ]

    dave = queries.order(ids.dave)
    assert (dave.state, dave.refund_status, dave.paid, dave.refunded, dave.freight_refunded, dave.closed_at) == (
        OrderState.CLOSED, RefundStatus.FULL, 3800, 3800, 800, utc(12, 12)
    )
    assert [(ln.refunded_units, ln.refunded_amount) for ln in dave.lines] == [(3, 3000)]
    (parcel,) = dave.shipments
    assert (parcel.state, parcel.reason, [(i.quantity, i.weight_g) for i in parcel.items]) == (
        ShipmentState.CANCELLED, "refunded before dispatch", [(2, 200)]
    )
    assert [d for _, d in timeline(dave)[3:]] == [
        "refund only: CNY 10.00 for line 1 × 1 (refund re-d1: changed mind)",
        "refund only: CNY 28.00 for line 1 × 2, freight CNY 8.00 included (refund re-d2: changed mind)",
    ]

    erin = queries.order(ids.erin)
    assert (erin.state, erin.completion, erin.open_returns) == (OrderState.COMPLETED, "automatic", 0)
    assert [d for _, d in timeline(erin)][-3:] == [
        "return requested: line 1 × 1 (no reason)",
        "return rejected (used)",
        "completed after the after-sales window",
    ]


def test_queries_by_customer_state_and_deadline(shop, clock, projector, queries):
    """A customer's orders newest first, orders by state oldest first, and the overdue list."""
    alice, others = Alice(), Others()
    for _ in alice_history(shop, clock, alice):
        pass
    for _ in other_histories(shop, clock, others):
        pass
    erin = shop.checkout(customer_id="erin", items=[{"sku_id": "E1", "quantity": 1}], shipping_address="5 Fir Ct")
    clock.advance(2 * DAY)
    projector.catch_up()

    assert {o.order_id for o in queries.customer_orders("alice")} == {alice.m1, alice.m2}
    assert [o.order_id for o in queries.customer_orders("erin")] == [erin.order_ids[0], others.erin]
    assert [o.order_id for o in queries.customer_orders("erin", limit=1)] == [erin.order_ids[0]]
    assert queries.customer_orders("nobody") == ()
    assert [o.order_id for o in queries.orders_by_state(OrderState.CANCELLED)] == [others.bob, others.carol]
    assert [o.order_id for o in queries.orders_by_state("completed")] == [alice.m1, others.erin]
    assert [o.order_id for o in queries.orders_by_state("closed")] == [others.dave]
    assert [o.order_id for o in queries.orders_by_state("paid")] == [alice.m2]
    assert [o.order_id for o in queries.unpaid_past_deadline(clock.now())] == [erin.order_ids[0]]
    assert queries.order(UUID(int=0)) is None
    with pytest.raises(ValueError):
        queries.orders_by_state("lost")
    with pytest.raises(ValueError, match="timezone-aware"):
        queries.unpaid_past_deadline(datetime(2030, 1, 1))
    # The same answers inside a caller's connection.
    with projector.read_models.engine.connect() as conn:
        in_conn = OrderStatusQueries(conn, projector.read_models.tables["order_status"])
        assert in_conn.order(alice.m1) == queries.order(alice.m1)


def test_rows_do_not_depend_on_batch_boundaries(shop, clock, store_url, projector, read_models, monkeypatch):
    """Batches of 1, 7 (each first rolled back) and 3 with a cold cache, one batch of all, the
    runner and a checked rebuild all give identical rows."""
    for _ in alice_history(shop, clock, Alice()):
        pass
    for _ in other_histories(shop, clock, Others()):
        pass
    projector.catch_up()
    loads: list[tuple[UUID, int | None]] = []
    load = shop.store.load

    def counted_load(aggregate_id: UUID, version: int | None = None):
        loads.append((aggregate_id, version))
        return load(aggregate_id, version=version)

    monkeypatch.setattr(shop.store, "load", counted_load)
    engine = create_engine(sqlalchemy_url(store_url))
    try:
        runner_rows = dump(engine, read_models.tables["order_status"])
        assert sum(len(rows) for rows in runner_rows.values()) > 50
        everything = project_in_batches(shop.store, engine, "all", 1_000_000)
        assert project_in_batches(shop.store, engine, "b1", 1) == everything
        assert loads == []  # a warm cache folds every event without reading the store
        assert project_in_batches(shop.store, engine, "b7", 7, roll_back_first=True) == everything
        assert project_in_batches(shop.store, engine, "b3", 3, cold=True) == everything
        assert len(loads) > 20  # after a rollback or with a cold cache, aggregates come from the store
        assert runner_rows == everything
    finally:
        engine.dispose()
    report = rebuild(shop.store, read_models, "order_status", check=True)
    assert report.differences == ()


def test_a_repeated_or_missing_event_is_refused(shop, clock, store_url, read_models):
    """An event applied twice, an event after a gap, or a stranger raises; the runner rolls back."""
    for _ in alice_history(shop, clock, Alice()):
        pass
    found = notifications(shop.store)
    engine = read_models.engine
    projection = OrderStatusProjection(read_models.tables["order_status"], shop.store)
    first = shop.store.mapper.to_domain_event(found[0])
    with engine.begin() as conn:
        projection.apply_batch(conn, [(found[0].id, first)])
    with pytest.raises(ProjectionFailed, match="row is at version 1, not 0"), engine.begin() as conn:
        projection.apply_batch(conn, [(found[0].id, first)])
    projection.forget()
    later = next(n for n in found[1:] if n.originator_id == found[0].originator_id and n.originator_version == 3)
    with pytest.raises(ProjectionFailed, match="row is at version 1, not 2"), engine.begin() as conn:
        projection.apply_batch(conn, [(later.id, shop.store.mapper.to_domain_event(later))])
    checkout_placed = shop.store.mapper.to_domain_event(
        shop.store.recorder.select_notifications(1, 1, topics=[get_topic(Checkout.Placed)])[0]
    )
    with pytest.raises(ProjectionFailed, match="does not handle"), engine.begin() as conn:
        projection.apply_batch(conn, [(1, checkout_placed)])
    # Through the runner: the batch fails as a whole, naming the event, and the position stays.
    projector = Projector(shop.store, read_models, names=["order_status"])
    with pytest.raises(ProjectionFailed, match="Order.Placed"):
        projector.apply("order_status", found[:3])
    assert read_models.position("order_status") == 0


def test_timestamps_are_stored_as_naive_utc_and_read_back_aware():
    """Aware datetimes are stored as naive UTC and read back aware in UTC; naive ones are refused."""
    kind = UtcDateTime()
    east = datetime(2026, 11, 11, 16, 30, tzinfo=timezone(timedelta(hours=8)))
    stored = kind.process_bind_param(east, None)
    assert stored == datetime(2026, 11, 11, 8, 30) and stored.tzinfo is None
    assert kind.process_result_value(stored, None) == east
    assert kind.process_result_value(stored, None).tzinfo == UTC
    with pytest.raises(ValueError, match="naive"):
        kind.process_bind_param(datetime(2026, 11, 11), None)


def test_sqlite_timestamps_keep_the_text_sqlalchemy_writes(tmp_path):
    """On SQLite the timestamps are written as the very text SQLAlchemy's DateTime writes (so tables made
    before compare and sort alike) and read back as the same aware instant."""
    from sqlalchemy import (
        Column,
        DateTime,
        Integer,
        Table,
        create_engine,
        insert,
        select,
        text,
    )

    engine = create_engine(f"sqlite:///{tmp_path}/t.sqlite")
    metadata = MetaData()
    table = Table("t", metadata, Column("id", Integer, primary_key=True), Column("fast", UtcDateTime),
                  Column("plain", DateTime))
    metadata.create_all(engine)
    for n, moment in enumerate([datetime(2026, 11, 11, 16, 30, tzinfo=timezone(timedelta(hours=8))),
                                datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)]):
        with engine.begin() as conn:
            conn.execute(insert(table).values(id=n, fast=moment, plain=moment.astimezone(UTC).replace(tzinfo=None)))
            fast, plain = conn.execute(text("SELECT fast, plain FROM t WHERE id = :n"), {"n": n}).one()
            assert fast == plain
            assert conn.execute(select(table.c.fast).where(table.c.id == n)).scalar() == moment
    engine.dispose()
