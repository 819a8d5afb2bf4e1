"""Scenarios through the public Shop API.

The business rules run on the in-memory store: they do not depend on how events are kept
(``pytest --all-stores`` runs them on SQLite and PostgreSQL too).  The scenarios about
storage run on SQLite and PostgreSQL: a second Shop reading what the first wrote, and
snapshots and encryption at rest, which run on the in-memory store as well.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from shop_fixtures import START, campaign, open_shop, stock_catalogue, stored_events

from ecomcore import (
    PLATFORM,
    CancelReason,
    CouponNotUsable,
    CouponState,
    CouponTerms,
    IllegalTransition,
    InsufficientStock,
    InvalidCommand,
    OrderState,
    PaymentRefused,
    RefundStatus,
    ShipmentState,
)

pytestmark = pytest.mark.stores("memory")
#: Scenarios about how events are kept rather than about the rules: on every store, and on
#: the SQL ones only where a second Shop must read what the first wrote.
on_every_store = pytest.mark.stores("memory", "sqlite", "postgres")
on_sql_stores = pytest.mark.stores("sqlite", "postgres")


@pytest.fixture
def shop(store_url, clock):
    shop = open_shop(store_url, clock)
    stock_catalogue(shop)
    for sku_id, warehouse_id, quantity in [
        ("A1", "w1", 10), ("B1", "w1", 5), ("C1", "w2", 10), ("D1", "w1", 2), ("D1", "w2", 3), ("E1", "w2", 10)
    ]:
        shop.receive_stock(sku_id=sku_id, warehouse_id=warehouse_id, quantity=quantity, reference="po-1")
    yield shop
    shop.close()


def test_spec_worked_example_threshold_coupon(shop):
    """2×2990 + 1×4500 with 'spend 10000 get 1500 off' apportions 856/644 and charges freight by weight."""
    coupon = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="threshold", threshold=10000, amount_off=1500, funding="m1")),
        customer_id="alice",
    )
    receipt = shop.checkout(
        customer_id="alice",
        items=[{"sku_id": "A1", "quantity": 2}, {"sku_id": "B1", "quantity": 1}],
        merchant_coupon_ids=[coupon],
        shipping_address="1 Tea Road",
    )
    order = shop.order(receipt.order_ids[0])
    assert [(l.merchant_coupon_discount, l.net) for l in order.lines] == [(856, 5124), (644, 3856)]
    # 2×400 g + 1200 g = 2000 g: first kg 800 + one more kg 300.
    assert order.freight == 1100
    assert receipt.payable == order.payable == 8980 + 1100
    assert shop.coupon(coupon).state is CouponState.LOCKED


def test_multi_merchant_checkout_splits_orders_and_apportions_platform_coupon(shop):
    """A two-merchant cart makes two orders of one checkout; the platform coupon is shared by amount."""
    platform = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="cash", amount_off=1000, funding=PLATFORM)), customer_id="bob"
    )
    receipt = shop.checkout(
        customer_id="bob",
        items=[{"sku_id": "C1", "quantity": 3}, {"sku_id": "E1", "quantity": 1}],
        platform_coupon_id=platform,
        shipping_address="2 Iron Street",
    )
    orders = [shop.order(oid) for oid in receipt.order_ids]
    assert [o.merchant_id for o in orders] == ["m1", "m2"]
    assert {o.checkout_id for o in orders} == {receipt.checkout_id}
    # Gross 3000 and 3000: the 1000 off splits 500/500 exactly.
    assert [o.lines[0].platform_coupon_discount for o in orders] == [500, 500]
    assert sum(o.payable for o in orders) == receipt.payable


def test_payment_must_match_and_is_idempotent(shop):
    """A wrong amount stores nothing; the same payment id again returns the same receipt."""
    receipt = shop.checkout(customer_id="carol", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    before = stored_events(shop)
    with pytest.raises(PaymentRefused) as refused:
        shop.pay(checkout_id=receipt.checkout_id, payment_id="p1", amount=receipt.payable - 1, provider_txn="t1")
    assert refused.value.code == "payment_refused"
    assert stored_events(shop) == before
    paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="p1", amount=receipt.payable, provider_txn="t1")
    after_first = stored_events(shop)
    assert shop.pay(checkout_id=receipt.checkout_id, payment_id="p1", amount=receipt.payable, provider_txn="t1") == paid
    assert stored_events(shop) == after_first
    with pytest.raises(PaymentRefused):
        shop.pay(checkout_id=receipt.checkout_id, payment_id="p1", amount=receipt.payable + 5, provider_txn="t1")
    order = shop.order(receipt.order_ids[0])
    assert order.state is OrderState.PAID and order.paid == receipt.payable
    assert shop.stock_item("A1", "w1").reservation_for(order.id).confirmed


def test_checkout_is_all_or_nothing(shop):
    """If one line cannot be reserved, nothing is stored: no reservation, the coupon stays available."""
    coupon = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="cash", amount_off=100, funding="m1")), customer_id="dave"
    )
    before = stored_events(shop)
    available_a = shop.available("A1")
    with pytest.raises(InsufficientStock) as refused:
        shop.checkout(
            customer_id="dave",
            items=[{"sku_id": "A1", "quantity": 2}, {"sku_id": "B1", "quantity": 6}],
            merchant_coupon_ids=[coupon],
            shipping_address="x",
        )
    assert refused.value.sku_ids == ["B1"]
    assert "sku B1 has 5 available, 6 requested" in str(refused.value)
    assert stored_events(shop) == before
    assert shop.available("A1") == available_a
    assert shop.coupon(coupon).state is CouponState.AVAILABLE


def test_invalid_command_is_typed_and_stores_nothing(shop):
    """Bad input raises InvalidCommand with a stable code and a readable message."""
    before = stored_events(shop)
    with pytest.raises(InvalidCommand) as invalid:
        shop.checkout(customer_id="eve", items=[{"sku_id": "A1", "quantity": 0}], shipping_address="x")
    assert invalid.value.code == "invalid_command"
    assert "items.0.quantity" in invalid.value.message
    with pytest.raises(InvalidCommand):
        shop.pay(checkout_id="not-a-uuid", payment_id="p", amount=1.5, provider_txn="t")
    assert stored_events(shop) == before


def test_checkout_is_idempotent_on_client_request_id(shop):
    """Retrying with the same client request id returns the first checkout and reserves nothing more."""
    first = shop.checkout(
        customer_id="frank", items=[{"sku_id": "A1", "quantity": 2}], shipping_address="x", client_request_id="r-1"
    )
    again = shop.checkout(
        customer_id="frank", items=[{"sku_id": "A1", "quantity": 2}], shipping_address="x", client_request_id="r-1"
    )
    assert again == first
    assert shop.available("A1") == 8


def test_allocation_prefers_one_warehouse_that_supplies_the_whole_order(shop):
    """w1 lacks C1, so a cart of A1 and C1 is split; D1 alone from w1 when it fits, else split over w1 and w2."""
    shop.receive_stock(sku_id="A1", warehouse_id="w2", quantity=5, reference="po-2")
    receipt = shop.checkout(
        customer_id="gina", items=[{"sku_id": "A1", "quantity": 1}, {"sku_id": "C1", "quantity": 1}], shipping_address="x"
    )
    lines = shop.order(receipt.order_ids[0]).lines
    assert [a.warehouse_id for line in lines for a in line.allocations] == ["w2", "w2"]
    heavy = shop.checkout(customer_id="gina", items=[{"sku_id": "D1", "quantity": 4}], shipping_address="x")
    allocations = shop.order(heavy.order_ids[0]).lines[0].allocations
    assert [(a.warehouse_id, a.quantity) for a in allocations] == [("w1", 2), ("w2", 2)]


def test_unpaid_checkout_expires_releasing_stock_and_coupons(shop, clock):
    """Past the deadline the reservation stops counting at once; the sweeper cancels and unlocks."""
    coupon = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="cash", amount_off=100, funding="m1"), days=30),
        customer_id="hank",
    )
    receipt = shop.checkout(
        customer_id="hank", items=[{"sku_id": "A1", "quantity": 4}], merchant_coupon_ids=[coupon], shipping_address="x"
    )
    assert shop.available("A1") == 6
    clock.advance(timedelta(hours=24))
    assert shop.available("A1") == 10  # expired: no longer counts, before any sweep
    assert shop.expire_overdue_orders() == [receipt.checkout_id]
    assert shop.expire_overdue_orders() == []
    order = shop.order(receipt.order_ids[0])
    assert order.state is OrderState.CANCELLED
    assert shop.stock_item("A1", "w1").reservation_for(order.id) is None
    assert shop.coupon(coupon).state is CouponState.AVAILABLE


def test_late_payment_is_recorded_and_refunded(shop, clock):
    """A payment after the deadline cancels the checkout for timeout, records the money and refunds it."""
    receipt = shop.checkout(
        customer_id="ivy", items=[{"sku_id": "C1", "quantity": 1}, {"sku_id": "E1", "quantity": 1}], shipping_address="x"
    )
    clock.advance(timedelta(hours=25))
    paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="late-1", amount=receipt.payable, provider_txn="t")
    assert paid.outcome == "refunded"
    orders = [shop.order(oid) for oid in receipt.order_ids]
    assert all(o.state is OrderState.CANCELLED for o in orders)
    assert sum(o.late_payments for o in orders) == receipt.payable
    assert sum(o.late_refunded for o in orders) == receipt.payable
    assert all(o.refund_status is RefundStatus.NONE for o in orders)
    assert shop.checkout_of(receipt.checkout_id).cancelled_reason is CancelReason.TIMEOUT
    assert shop.pay(checkout_id=receipt.checkout_id, payment_id="late-1", amount=receipt.payable, provider_txn="t") == paid


def test_payment_after_customer_cancellation_is_refunded(shop):
    """Money for an already-cancelled checkout is recorded and refunded; the checkout stays cancelled."""
    receipt = shop.checkout(customer_id="jack", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    shop.cancel(checkout_id=receipt.checkout_id)
    paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="p", amount=receipt.payable, provider_txn="t")
    assert paid.outcome == "refunded"
    assert shop.checkout_of(receipt.checkout_id).cancelled_reason is CancelReason.CUSTOMER


def test_cancel_after_payment_is_refused(shop):
    """After payment a checkout cannot be cancelled; money goes back only through refunds."""
    receipt = shop.checkout(customer_id="kim", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    shop.pay(checkout_id=receipt.checkout_id, payment_id="p", amount=receipt.payable, provider_txn="t")
    with pytest.raises(IllegalTransition):
        shop.cancel(checkout_id=receipt.checkout_id)


def test_paid_order_ships_in_parcels_and_completes(shop, clock):
    """Shipments per warehouse and by weight; order state follows them to delivered and completed."""
    receipt = shop.checkout(
        customer_id="lee", items=[{"sku_id": "D1", "quantity": 4}, {"sku_id": "E1", "quantity": 1}], shipping_address="x"
    )
    paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="p", amount=receipt.payable, provider_txn="t")
    shipments = [shop.shipment(sid) for sid in paid.shipment_ids]
    # D1: 2 in w1 (18 kg), 2 in w2 with E1 (18.5 kg) → w1 one parcel, w2 one parcel.
    assert sorted((s.warehouse_id, s.weight_g) for s in shipments) == [("w1", 18000), ("w2", 18500)]
    assert all(s.weight_g <= 20000 for s in shipments)
    first, second = paid.shipment_ids
    shop.dispatch(shipment_id=first, carrier="SF", tracking_number="SF1")
    assert shop.order(receipt.order_ids[0]).state is OrderState.PARTIALLY_SHIPPED
    assert shop.stock_item("D1", "w1").on_hand == 0
    shop.dispatch(shipment_id=first, carrier="SF", tracking_number="SF1")  # idempotent
    shop.dispatch(shipment_id=second, carrier="SF", tracking_number="SF2")
    assert shop.order(receipt.order_ids[0]).state is OrderState.SHIPPED
    assert shop.update_tracking(shipment_id=first, occurred_at=clock.now(), status="in_transit", location="Hub")
    assert not shop.update_tracking(shipment_id=first, occurred_at=clock.now(), status="in_transit", location="Hub")
    assert shop.shipment(first).state is ShipmentState.IN_TRANSIT
    shop.deliver(shipment_id=first)
    shop.deliver(shipment_id=second)
    assert shop.order(receipt.order_ids[0]).state is OrderState.DELIVERED
    clock.advance(timedelta(days=6))
    assert shop.complete_orders() == []
    clock.advance(timedelta(days=1))
    assert shop.complete_orders() == [receipt.order_ids[0]]
    assert shop.order(receipt.order_ids[0]).state is OrderState.COMPLETED


def test_confirm_receipt_completes_a_delivered_order(shop):
    """The customer's confirmation completes the order; only its own customer may confirm."""
    receipt = shop.checkout(customer_id="may", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="p", amount=receipt.payable, provider_txn="t")
    with pytest.raises(IllegalTransition):
        shop.confirm_receipt(order_id=receipt.order_ids[0], customer_id="may")
    (shipment_id,) = paid.shipment_ids
    shop.dispatch(shipment_id=shipment_id, carrier="YT", tracking_number="YT1")
    shop.deliver(shipment_id=shipment_id)
    shop.confirm_receipt(order_id=receipt.order_ids[0], customer_id="may")
    assert shop.order(receipt.order_ids[0]).state is OrderState.COMPLETED


def test_coupon_rules_at_checkout(shop, clock):
    """Another customer's, an expired, or a second coupon of the same merchant is refused."""
    terms = CouponTerms(kind="cash", amount_off=100, funding="m1")
    camp = campaign(shop, terms, days=1)
    mine, second = shop.issue_coupon(campaign_id=camp, customer_id="ned"), shop.issue_coupon(campaign_id=camp, customer_id="ned")
    items = [{"sku_id": "A1", "quantity": 1}]
    with pytest.raises(CouponNotUsable):
        shop.checkout(customer_id="olga", items=items, merchant_coupon_ids=[mine], shipping_address="x")
    with pytest.raises(CouponNotUsable):
        shop.checkout(customer_id="ned", items=items, merchant_coupon_ids=[mine, second], shipping_address="x")
    clock.advance(timedelta(days=1))
    with pytest.raises(CouponNotUsable) as expired:
        shop.checkout(customer_id="ned", items=items, merchant_coupon_ids=[mine], shipping_address="x")
    assert expired.value.code == "coupon_not_usable"
    assert shop.expire_coupons() == [mine, second]
    assert shop.coupon(mine).state is CouponState.EXPIRED


def test_low_stock_is_detected_once(shop):
    """Falling to the safety stock records one LowStockDetected; it is not repeated while low."""
    shop.set_up_stock(sku_id="B1", warehouse_id="w1", safety_stock=3, reorder_quantity=20)
    shop.checkout(customer_id="pat", items=[{"sku_id": "B1", "quantity": 2}], shipping_address="x")
    shop.checkout(customer_id="pat", items=[{"sku_id": "B1", "quantity": 1}], shipping_address="x")
    item = shop.stock_item("B1", "w1")
    assert item.low_stock_flagged
    history = list(shop.store.events.get(item.id))
    alerts = [e for e in history if type(e).__name__ == "LowStockDetected"]
    assert len(alerts) == 1 and alerts[0].suggested_reorder_quantity == 20


def test_stocktake_below_reserved_records_a_shortage(shop):
    """A count below what is reserved is accepted and reports the shortage."""
    shop.checkout(customer_id="quinn", items=[{"sku_id": "A1", "quantity": 6}], shipping_address="x")
    assert shop.count_stock(sku_id="A1", warehouse_id="w1", counted_quantity=4, reason="stocktake") == 2
    item = shop.stock_item("A1", "w1")
    assert item.on_hand == 4 and item.available(shop.clock.now()) == -2


@on_sql_stores
def test_aggregates_replay_identically_in_a_fresh_process(shop, store_url, clock):
    """A new Shop without cache rebuilds the same state from the stored events (and snapshots)."""
    for n in range(3):
        receipt = shop.checkout(customer_id=f"r{n}", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
        shop.pay(checkout_id=receipt.checkout_id, payment_id=f"p{n}", amount=receipt.payable, provider_txn="t")
    fresh = open_shop(store_url, clock, aggregate_cache_size=0)
    try:
        live, replayed = shop.stock_item("A1", "w1"), fresh.stock_item("A1", "w1")
        assert vars(replayed) == vars(live)
        assert vars(fresh.order(receipt.order_ids[0])) == vars(shop.order(receipt.order_ids[0]))
        as_of = fresh.stock_item("A1", "w1", version=3)  # registered, received, reserved
        assert as_of.version == 3 and as_of.on_hand == 10 and len(as_of.reservations) == 1
    finally:
        fresh.close()


@on_every_store
def test_long_stock_stream_loads_from_a_snapshot(store_url, clock):
    """Past the snapshot interval a StockItem loads from its latest snapshot, with the same state."""
    shop = open_shop(store_url, clock, snapshot_interval=10, aggregate_cache_size=0)
    stock_catalogue(shop)
    for n in range(25):
        shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference=f"po-{n}")
    item = shop.stock_item("A1", "w1")
    snapshots = list(shop.store.snapshots.get(item.id))
    assert [s.originator_version for s in snapshots] == [10, 20]
    assert item.on_hand == 25 and item.version == 26
    shop.close()


@on_every_store
def test_events_can_be_encrypted(store_url, clock):
    """With a cipher key the stored state is AES-GCM ciphertext, and still loads."""
    from eventsourcing.cryptography import AESCipher

    shop = open_shop(store_url, clock, cipher_key=AESCipher.create_key(16))
    stock_catalogue(shop)
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=3, reference="secret-po")
    (stored,) = shop.store.recorder.select_notifications(1, 10)[-1:]
    assert b"secret-po" not in stored.state
    assert shop.stock_item("A1", "w1").on_hand == 3
    shop.close()


def test_units_missing_at_stocktake_cannot_be_dispatched(shop):
    """After a count below what is reserved, dispatching more than is on hand is refused and stores nothing."""
    receipt = shop.checkout(customer_id="sam", items=[{"sku_id": "B1", "quantity": 3}], shipping_address="x")
    paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="p", amount=receipt.payable, provider_txn="t")
    shop.count_stock(sku_id="B1", warehouse_id="w1", counted_quantity=2, reason="stocktake")
    before = stored_events(shop)
    with pytest.raises(IllegalTransition, match="only 2 on hand"):
        shop.dispatch(shipment_id=paid.shipment_ids[0], carrier="SF", tracking_number="SF9")
    assert stored_events(shop) == before
    assert shop.shipment(paid.shipment_ids[0]).state is ShipmentState.PLANNED


def _promotion(promotion_id, *, days=(0, 7), sku_ids=(), exclusive=True):
    from ecomcore import Promotion, PromotionTerms, PromotionTier, Scope

    return Promotion(
        promotion_id=promotion_id,
        terms=PromotionTerms(
            merchant_id="m1",
            tiers=(PromotionTier(threshold=20000, amount_off=2000), PromotionTier(threshold=30000, amount_off=4000)),
            scope=Scope(sku_ids=sku_ids),
            exclusive=exclusive,
        ),
        starts_at=START + timedelta(days=days[0]),
        ends_at=START + timedelta(days=days[1]),
    )


def test_overlapping_exclusive_promotion_is_refused(shop):
    """A promotion overlapping an exclusive one in time and goods is refused, naming the other."""
    from ecomcore import PromotionConflict

    shop.add_promotion(_promotion("double11", sku_ids=("A1", "B1")))
    with pytest.raises(PromotionConflict) as conflict:
        shop.add_promotion(_promotion("flash", days=(3, 4), sku_ids=("B1",), exclusive=False))
    assert conflict.value.code == "promotion_conflict" and "double11" in conflict.value.message
    shop.add_promotion(_promotion("later", days=(7, 9), sku_ids=("A1",)))  # after it ends
    shop.add_promotion(_promotion("other-goods", days=(1, 2), sku_ids=("C1",)))  # disjoint SKUs
    shop.add_promotion(_promotion("double11", days=(0, 7), sku_ids=("A1", "B1", "E1")))  # replacing itself
    assert [p.promotion_id for p in shop.catalogue.promotions("m1")] == ["double11", "other-goods", "later"]


def test_best_tier_of_the_active_promotion_applies(shop):
    """The automatic promotion gives its best reached tier, apportioned before coupons."""
    shop.add_promotion(_promotion("double11", sku_ids=("A1", "B1")))
    receipt = shop.checkout(
        customer_id="tom", items=[{"sku_id": "A1", "quantity": 5}, {"sku_id": "B1", "quantity": 4}], shipping_address="x"
    )
    order = shop.order(receipt.order_ids[0])
    assert order.promotion_id == "double11"
    assert sum(line.promotion_discount for line in order.lines) == 4000  # 14950 + 18000 ≥ 30000
