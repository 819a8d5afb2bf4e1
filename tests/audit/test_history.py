"""``audit order``: an order's story across aggregates, in order, with its state after each step (spec §7)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from shop_fixtures import place_worked_example

from ecomcore_projections.audit.history import order_story

MINUTE = timedelta(minutes=1)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """``ecomcore demo --orders 30`` into a new SQLite store; its URL and a refunded order's id (hex)."""
    path = tmp_path_factory.mktemp("demo") / "store.sqlite"
    url = f"sqlite:///{path}"
    subprocess.run(
        [sys.executable, "-m", "ecomcore", "demo", "--orders", "30", "--store", url, "--no-projections"],
        check=True, capture_output=True,
    )
    with sqlite3.connect(path) as connection:
        (order_id,) = connection.execute(
            "SELECT originator_id FROM stored_events WHERE topic LIKE '%Order.RefundIssued' LIMIT 1"
        ).fetchone()
    return url, order_id


def told(shop, clock):
    """The worked example: coupons, paid, one unit refunded before dispatch, two parcels dispatched."""
    receipt, _, _ = place_worked_example(shop)
    clock.advance(5 * MINUTE)
    shop.pay(checkout_id=receipt.checkout_id, payment_id="pay-1", amount=17882, provider_txn="txn-1")
    m1, _ = receipt.order_ids
    clock.advance(5 * MINUTE)
    shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="out of stock")
    for n, shipment_id in enumerate(shop.order(m1).shipments):
        clock.advance(5 * MINUTE)
        shop.dispatch(shipment_id=shipment_id, carrier="SF", tracking_number=f"SF{n}")
    return m1


PLACED = [
    ("coupon.Locked", None), ("coupon.Locked", None),
    ("stock.Reserved", None), ("stock.Reserved", None), ("stock.Reserved", None),
    ("order.Placed", "pending_payment"), ("checkout.Placed", "pending_payment"),
]
PAID = [
    ("checkout.Paid", "pending_payment"), ("order.Paid", "paid"), ("order.ShipmentsPlanned", "paid"),
    ("shipment.Planned", "paid"), ("shipment.Planned", "paid"),
    ("coupon.Redeemed", "paid"), ("coupon.Redeemed", "paid"),
    ("stock.ReservationConfirmed", "paid"), ("stock.ReservationConfirmed", "paid"),
    ("stock.ReservationConfirmed", "paid"),
]
REFUNDED_AND_SHIPPED = [
    ("order.RefundIssued", "paid"), ("shipment.UnitsWithdrawn", "paid"), ("stock.ReservationReleased", "paid"),
    ("shipment.Dispatched", "paid"), ("order.ShipmentDispatched", "partially_shipped"),
    ("stock.Dispatched", "partially_shipped"), ("stock.Dispatched", "partially_shipped"),
    ("shipment.Dispatched", "partially_shipped"), ("order.ShipmentDispatched", "shipped"),
    ("stock.Dispatched", "shipped"),
]


def test_order_story_lists_every_step_with_the_state_after_it(shop, clock):
    """Checkout, coupons, reservations, payment, parcels, a refund and dispatches, in recorded order."""
    m1 = told(shop, clock)
    story = order_story(shop.store, m1)
    assert [(s.kind, s.order_state) for s in story.steps] == PLACED + PAID + REFUNDED_AND_SHIPPED
    assert [s.position for s in story.steps] == sorted(s.position for s in story.steps)
    refund = next(s for s in story.steps if s.kind == "order.RefundIssued")
    assert (refund.paid, refund.refunded, refund.refund_status) == (11282, 733, "partial")
    assert (story.order_state, story.paid, story.refunded) == ("shipped", 11282, 733)


def test_order_story_as_of_a_moment_stops_there(shop, clock):
    """--as-of keeps only the steps up to the moment and gives the order as it stood then."""
    from shop_fixtures import START

    m1 = told(shop, clock)
    story = order_story(shop.store, m1, as_of=START + 7 * MINUTE)
    assert [(s.kind, s.order_state) for s in story.steps] == PLACED + PAID
    assert (story.order_state, story.refund_status, story.paid, story.refunded) == ("paid", "none", 11282, 0)


def test_audit_order_command_prints_the_story_as_json(demo_store):
    """``ecomcore audit order ID --json`` on a demo store: the steps, ending in the order's state."""
    store_url, order_id = demo_store
    done = subprocess.run(
        [sys.executable, "-m", "ecomcore", "audit", "order", order_id, "--store", store_url, "--json"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    story = json.loads(done.stdout)
    assert story["order_id"].replace("-", "") == order_id
    kinds = [step["kind"] for step in story["steps"]]
    assert "order.Placed" in kinds and "order.RefundIssued" in kinds
    assert story["steps"][-1]["order_state"] == story["order_state"]
    bad = subprocess.run(
        [sys.executable, "-m", "ecomcore", "audit", "order", "nope", "--store", store_url],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error [usage]:") and bad.stderr.count("\n") == 1
