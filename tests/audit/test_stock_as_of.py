"""``audit stock``: on hand, reserved and available at a moment, by the live rule (spec §5.2, §7)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

from shop_fixtures import START
from test_history import demo_store  # noqa: F401  (the shared demo store fixture)

from ecomcore_projections.audit.stock import stock_as_of

HOUR = timedelta(hours=1)


def test_stock_as_of_matches_a_hand_computed_history(shop, clock):
    """A1 in w1: 10 received; bob reserves 3 (never pays), carol 2 (pays); bob's expire before any sweep."""
    bob = shop.checkout(customer_id="bob", items=[{"sku_id": "A1", "quantity": 3}], shipping_address="1 Road")
    clock.advance(HOUR)
    carol = shop.checkout(customer_id="carol", items=[{"sku_id": "A1", "quantity": 2}], shipping_address="2 Road")
    clock.advance(HOUR)
    shop.pay(checkout_id=carol.checkout_id, payment_id="p-carol", amount=carol.payable, provider_txn="t-carol")
    clock.advance(30 * HOUR)
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=5, reference="po-2")  # after bob's deadline
    (bob_order,), (carol_order,) = bob.order_ids, carol.order_ids

    def seen(at):
        stock = stock_as_of(shop.store, "A1", at)
        (w1,) = stock.warehouses
        return (
            stock.on_hand, stock.reserved, stock.available,
            sorted((r.order_id, r.quantity, r.confirmed) for r in w1.active),
            [(r.order_id, r.quantity) for r in w1.expired],
        )

    assert seen(START - HOUR) == (0, 0, 0, [], [])
    assert seen(START) == (10, 3, 7, [(bob_order, 3, False)], [])
    both = sorted([(bob_order, 3, False), (carol_order, 2, False)])
    assert seen(START + HOUR) == (10, 5, 5, both, [])
    paid = sorted([(bob_order, 3, False), (carol_order, 2, True)])
    assert seen(START + 2 * HOUR) == (10, 5, 5, paid, [])
    # Bob's deadline (24 h) has passed and no sweeper ran: his units no longer count.
    assert seen(START + 25 * HOUR) == (10, 2, 8, [(carol_order, 2, True)], [(bob_order, 3)])
    assert seen(clock.now()) == (15, 2, 13, [(carol_order, 2, True)], [(bob_order, 3)])
    assert stock_as_of(shop.store, "A1", clock.now(), ["w1"]).available == 13


def test_audit_stock_command_prints_json(demo_store):  # noqa: F811
    """``ecomcore audit stock SKU --as-of T --json`` on a demo store: totals are the warehouses' sums."""
    store_url, _ = demo_store
    done = subprocess.run(
        [sys.executable, "-m", "ecomcore", "audit", "stock", "HOME-WOK-32", "--as-of", "2030-01-01",
         "--store", store_url, "--json"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    stock = json.loads(done.stdout)
    assert stock["warehouses"] and stock["available"] == sum(w["available"] for w in stock["warehouses"])
    assert stock["on_hand"] - stock["reserved"] == stock["available"]
