"""The sweep finds its work through the due-work index, not by reading all of history.

The index follows the notification log from a stored position; a sweep catches it up,
asks for the candidates whose moment has come, and the aggregates decide.  These tests
compare a sweep with an oracle that reads the whole log and asks every aggregate, check
that nothing else is touched, and that the index survives a restart of the shop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from shop_fixtures import campaign, open_shop

from ecomcore import PLATFORM, ManualClock, Shop
from ecomcore.application.handlers.sweeper import aggregate_ids_with
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.coupon import Coupon, CouponState, CouponTerms
from ecomcore.domain.order import Order, OrderState
from ecomcore.simulation import simulate_trading_day

DAY = timedelta(days=1)


def _all_versions(shop: Shop) -> dict[UUID, int]:
    versions = {}
    for cls, event in ((Checkout, Checkout.Placed), (Coupon, Coupon.Issued), (Order, Order.Placed)):
        for aggregate_id in aggregate_ids_with(shop.store, event):
            versions[aggregate_id] = shop._load(cls, aggregate_id).version
    return versions


def _oracle(shop: Shop, now: datetime) -> dict[str, set[UUID]]:
    """What is due at ``now``, found the slow way: every aggregate in the log, asked."""
    window = shop.settings.after_sales_window
    checkouts = {
        i for i in aggregate_ids_with(shop.store, Checkout.Placed) if shop.checkout_of(i).is_overdue(now)
    }
    coupons = set()
    for i in aggregate_ids_with(shop.store, Coupon.Issued):
        coupon = shop.coupon(i)
        if coupon.state is CouponState.AVAILABLE and now >= coupon.valid_until:
            coupons.add(i)
    orders = set()
    for i in aggregate_ids_with(shop.store, Order.ShipmentDelivered):
        order = shop.order(i)
        if (
            order.state is OrderState.DELIVERED
            and order.delivered_at is not None
            and now >= order.delivered_at + window
            and not order.has_open_return
        ):
            orders.add(i)
    return {"expired_checkouts": checkouts, "expired_coupons": coupons, "completed_orders": orders}


def _sweep_ids(shop: Shop, now: datetime) -> dict[str, set[UUID]]:
    return {
        "expired_checkouts": set(shop.expire_overdue_orders(now)),
        "expired_coupons": set(shop.expire_coupons(now)),
        "completed_orders": set(shop.complete_orders(now)),
    }


@pytest.mark.stores("memory", "sqlite", "postgres")
def test_after_a_long_history_one_sweep_finds_exactly_what_is_due(store_url: str) -> None:
    """A simulated trading day, then weeks with no sweep; one sweep does exactly the
    oracle's work, touches nothing else, and a second sweep finds nothing."""
    clock = ManualClock(datetime(2030, 11, 11, tzinfo=UTC))
    with Shop(store_url, clock=clock) as shop:
        simulate_trading_day(shop, clock, orders=40, seed=3)
        # Work that becomes due while no sweep runs: a coupon expiring tomorrow, one in
        # a year, an unpaid checkout's deadline; then several days pass.
        soon = shop.issue_coupon(
            campaign_id=campaign(shop, CouponTerms(kind="cash", amount_off=100, funding=PLATFORM), days=1),
            customer_id="late-lucy",
        )
        later = shop.issue_coupon(
            campaign_id=campaign(shop, CouponTerms(kind="cash", amount_off=100, funding=PLATFORM), days=365),
            customer_id="late-lucy",
        )
        clock.advance(40 * DAY)
        now = clock.now()
        expected = _oracle(shop, now)
        assert soon in expected["expired_coupons"] and later not in expected["expired_coupons"]
        assert expected["completed_orders"], "the day should leave delivered orders to complete"
        before = _all_versions(shop)

        done = _sweep_ids(shop, now)

        assert done == expected
        after = _all_versions(shop)
        handled = set().union(*done.values())
        # Nothing that was not due was touched (a cancelled checkout also records on its orders).
        cancelled_orders = {o for c in done["expired_checkouts"] for o in shop.checkout_of(c).order_ids}
        untouched = {i for i in before if i not in handled and i not in cancelled_orders}
        assert {i: after[i] for i in untouched} == {i: before[i] for i in untouched}
        assert shop.sweep(now) == {"expired_checkouts": 0, "expired_coupons": 0, "completed_orders": 0}
        assert shop.coupon(later).state is CouponState.AVAILABLE


@pytest.mark.stores("memory", "sqlite", "postgres")
def test_work_that_fell_due_on_different_days_is_found_by_one_sweep(shop: Shop, clock: ManualClock) -> None:
    """Checkouts, coupons and an order fall due on different days with no sweep between;
    the one sweep after them does each once, and nothing more."""
    terms = CouponTerms(kind="cash", amount_off=100, funding="m1")
    short = shop.issue_coupon(campaign_id=campaign(shop, terms, days=2), customer_id="ann")
    long = shop.issue_coupon(campaign_id=campaign(shop, terms, days=60), customer_id="ann")
    locked = shop.issue_coupon(campaign_id=campaign(shop, terms, days=3), customer_id="bo")
    unpaid = shop.checkout(customer_id="ann", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    paid = shop.checkout(
        customer_id="bo", items=[{"sku_id": "C1", "quantity": 1}], merchant_coupon_ids=[locked], shipping_address="x"
    )
    receipt = shop.pay(checkout_id=paid.checkout_id, payment_id="p1", amount=paid.payable, provider_txn="t")
    (shipment_id,) = receipt.shipment_ids
    shop.dispatch(shipment_id=shipment_id, carrier="SF", tracking_number="SF1")
    clock.advance(DAY)
    shop.deliver(shipment_id=shipment_id)
    clock.advance(3 * DAY)
    unpaid_later = shop.checkout(customer_id="cy", items=[{"sku_id": "E1", "quantity": 1}], shipping_address="x")
    clock.advance(10 * DAY)  # every deadline, the short validities and the after-sales window pass

    assert shop.sweep() == {"expired_checkouts": 2, "expired_coupons": 1, "completed_orders": 1}
    assert shop.checkout_of(unpaid.checkout_id).is_cancelled
    assert shop.checkout_of(unpaid_later.checkout_id).is_cancelled
    assert shop.coupon(short).state is CouponState.EXPIRED
    assert shop.coupon(long).state is CouponState.AVAILABLE
    assert shop.coupon(locked).state is CouponState.REDEEMED  # used, so never expired by the sweep
    assert shop.order(paid.order_ids[0]).state is OrderState.COMPLETED
    assert shop.sweep() == {"expired_checkouts": 0, "expired_coupons": 0, "completed_orders": 0}
    clock.advance(60 * DAY)
    assert shop.expire_coupons() == [long]


@pytest.mark.stores("memory", "sqlite")
def test_an_open_return_holds_the_order_until_it_is_settled(shop: Shop, clock: ManualClock) -> None:
    """A return opened within the window keeps the order from completing; once it is
    rejected, the order completes at the next sweep (its window having passed)."""
    placed = shop.checkout(customer_id="dee", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    receipt = shop.pay(checkout_id=placed.checkout_id, payment_id="p", amount=placed.payable, provider_txn="t")
    (shipment_id,) = receipt.shipment_ids
    shop.dispatch(shipment_id=shipment_id, carrier="SF", tracking_number="SF1")
    shop.deliver(shipment_id=shipment_id)
    order_id = placed.order_ids[0]
    return_id = shop.request_return(order_id=order_id, customer_id="dee", lines={1: 1}, reason="too big")
    clock.advance(10 * DAY)
    assert shop.complete_orders() == []
    shop.reject_return(order_id=order_id, return_id=return_id, reason="worn")
    assert shop.complete_orders() == [order_id]


@pytest.mark.stores("sqlite", "postgres")
def test_the_index_survives_a_restart_and_reads_only_what_is_new(store_url: str) -> None:
    """A new Shop on the same store resumes from the stored position: its first sweep
    reads no old notification, and one new event costs one notification read."""
    clock = ManualClock(datetime(2030, 11, 11, tzinfo=UTC))
    with Shop(store_url, clock=clock) as shop:
        simulate_trading_day(shop, clock, orders=15, seed=5)
        shop.sweep()
        position = shop._due_work.position
        assert position > 0
        assert shop._due_work.notifications_read > 0

    with open_shop(store_url, clock) as reopened:
        index = reopened._due_work
        assert index.position == position
        assert reopened.sweep() == {"expired_checkouts": 0, "expired_coupons": 0, "completed_orders": 0}
        assert index.notifications_read == 0
        coupon = reopened.issue_coupon(
            campaign_id=campaign(reopened, CouponTerms(kind="cash", amount_off=100, funding=PLATFORM), days=1),
            customer_id="newcomer",
        )
        clock.advance(2 * DAY)
        assert reopened.expire_coupons() == [coupon]
        assert index.notifications_read == 1  # the coupon's Issued: nothing older was read again
        assert index.position > position
