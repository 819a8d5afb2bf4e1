"""``audit refund``: what was paid, how discounts were apportioned, every refund's formula (spec §3, §7)."""

from __future__ import annotations

import json
import subprocess
import sys

from shop_fixtures import place_worked_example
from test_history import demo_store  # noqa: F401  (the shared demo store fixture)

from ecomcore_projections.audit.refund import explain_refunds


def test_refund_explanation_reproduces_every_fen(shop):
    """The worked example's m1 refunded unit by unit in several steps: shares, formulas and remainder."""
    receipt, _, _ = place_worked_example(shop)
    shop.pay(checkout_id=receipt.checkout_id, payment_id="pay-1", amount=17882, provider_txn="txn-1")
    m1, _ = receipt.order_ids
    shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="x")
    shop.refund_only(order_id=m1, refund_id="re-2", lines={1: 1, 3: 1}, reason="x")
    shop.refund_only(order_id=m1, refund_id="re-3", lines={2: 1}, reason="x")
    e = explain_refunds(shop.store, m1)
    assert e.consistent and e.mismatches == ()
    assert [(d.source, d.total, d.weights_total, [(s.line_no, s.floor, s.extra_unit, s.recomputed) for s in d.shares])
            for d in e.discounts] == [
        ("promotion", 1000, 13480, [(1, 443, True, 444), (2, 333, True, 334), (3, 222, False, 222)]),
        ("merchant_coupon", 1500, 12480, [(1, 665, False, 665), (2, 500, True, 501), (3, 333, True, 334)]),
        ("platform_coupon", 1698, 16980, [(1, 487, False, 487), (2, 366, True, 367), (3, 244, False, 244),
                                          (1, 600, False, 600)]),
    ]
    assert [(r.refund_id, [(l.line_no, l.refunded_before, l.after, l.before, l.recomputed) for l in r.lines],
             r.amount_stored) for r in e.refunds] == [
        ("re-1", [(3, 0, 733, 0, 733)], 733),
        ("re-2", [(1, 0, 2192, 0, 2192), (3, 1, 1466, 733, 733)], 2925),
        ("re-3", [(2, 0, 3298, 0, 3298)], 3298),
    ]
    assert [(l.net, l.refunded_units, l.refunded_amount, l.remaining_refundable) for l in e.lines] == [
        (4384, 1, 2192, 2192), (3298, 1, 3298, 0), (2200, 2, 1466, 734),
    ]
    assert (e.paid, e.refunded, e.remaining_refundable) == (11282, 6956, 2926)


def test_audit_refund_command_prints_json(demo_store):  # noqa: F811
    """``ecomcore audit refund ID --json`` on a demo store: consistent, exit 0, amounts as integers."""
    store_url, order_id = demo_store
    done = subprocess.run(
        [sys.executable, "-m", "ecomcore", "audit", "refund", order_id, "--store", store_url, "--json"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    explained = json.loads(done.stdout)
    assert explained["consistent"] is True and explained["mismatches"] == []
    assert explained["refunded"] == sum(r["amount_stored"] for r in explained["refunds"] if r["kind"] != "late_payment")
    assert all(isinstance(line["net"], int) for line in explained["lines"])
