"""``ecomcore audit order|stock|refund``: an order's story, stock as of a moment, a refund explained."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.audit.history import OrderStory, order_story
from ecomcore_projections.audit.refund import RefundExplanation, explain_refunds
from ecomcore_projections.audit.stock import StockAsOf, stock_as_of
from ecomcore_projections.cli.failures import EXIT_DIFFERENCES, EXIT_OK
from ecomcore_projections.cli.options import moment
from ecomcore_projections.cli.stores import load_settings, open_store


def order_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an order id (a UUID)") from None


def add_history_commands(audit_commands: argparse._SubParsersAction) -> None:
    """Add ``order``, ``stock`` and ``refund`` to the ``audit`` group."""
    order = audit_commands.add_parser("order", help="everything that happened to an order, step by step")
    order.add_argument("order_id", metavar="ORDER_ID", type=order_id, help="the order's id")
    order.add_argument("--as-of", metavar="ISO8601", type=moment,
                       help="only the steps up to this moment, and the order as it stood then (naive means UTC)")
    order.set_defaults(command=run_audit_order)

    stock = audit_commands.add_parser("stock", help="a SKU's on hand, reserved and available at a moment")
    stock.add_argument("sku_id", metavar="SKU", help="the SKU's id")
    stock.add_argument("--warehouse", metavar="W", action="append",
                       help="only this warehouse (repeat for several; default: every warehouse)")
    stock.add_argument("--as-of", metavar="ISO8601", type=moment, required=True,
                       help="the moment, ISO 8601 (naive means UTC)")
    stock.set_defaults(command=run_audit_stock)

    refund = audit_commands.add_parser(
        "refund", help="an order's lines, discounts and refunds recomputed from history; exit 1 on a mismatch"
    )
    refund.add_argument("order_id", metavar="ORDER_ID", type=order_id, help="the order's id")
    refund.set_defaults(command=run_audit_refund)


def _with_store(args: argparse.Namespace, query: Callable[[EventStore], Any]) -> Any:
    store = open_store(load_settings(args), must_exist=True)
    try:
        return query(store)
    finally:
        store.close()


def run_audit_order(args: argparse.Namespace) -> int:
    story: OrderStory = _with_store(args, lambda store: order_story(store, args.order_id, args.as_of))
    if args.json:
        print(json.dumps(story.as_json(), indent=2))
        return EXIT_OK
    as_of = f" as of {story.as_of.isoformat()}" if story.as_of else ""
    print(f"Order {story.order_id}{as_of}")
    print(f"checkout {story.checkout_id} · customer {story.customer_id} · merchant {story.merchant_id} · "
          f"payable {story.payable} {story.currency}")
    print(f"{'when':<20} {'step':<32} {'state':<18} {'refund':<8} {'paid':>9} {'refunded':>9}  detail")
    for step in story.steps:
        print(f"{step.at.strftime('%Y-%m-%d %H:%M:%S'):<20} {step.kind:<32} {step.order_state or '-':<18} "
              f"{step.refund_status or '-':<8} {step.paid:>9} {step.refunded:>9}  {step.detail}")
    print(f"now: {story.order_state or '-'}, refunds {story.refund_status or '-'}, "
          f"paid {story.paid}, refunded {story.refunded} ({len(story.steps)} steps)")
    return EXIT_OK


def run_audit_stock(args: argparse.Namespace) -> int:
    stock: StockAsOf = _with_store(args, lambda store: stock_as_of(store, args.sku_id, args.as_of, args.warehouse))
    if args.json:
        print(json.dumps(stock.as_json(), indent=2))
        return EXIT_OK
    print(f"SKU {stock.sku_id} as of {stock.as_of.isoformat()}")
    print(f"{'warehouse':<12}{'on hand':>9}{'reserved':>10}{'available':>11}")
    for w in stock.warehouses:
        print(f"{w.warehouse_id:<12}{w.on_hand:>9}{w.reserved:>10}{w.available:>11}")
    print(f"{'total':<12}{stock.on_hand:>9}{stock.reserved:>10}{stock.available:>11}")
    for w in stock.warehouses:
        for r in w.active:
            until = "paid (confirmed)" if r.confirmed else f"until {r.expires_at.isoformat() if r.expires_at else '-'}"
            print(f"  {w.warehouse_id}: order {r.order_id} holds {r.quantity}, {until}")
        for e in w.expired:
            print(f"  {w.warehouse_id}: order {e.order_id}'s {e.quantity} expired at "
                  f"{e.expires_at.isoformat() if e.expires_at else '-'} (unpaid; no longer counts)")
    return EXIT_OK


def run_audit_refund(args: argparse.Namespace) -> int:
    explained: RefundExplanation = _with_store(args, lambda store: explain_refunds(store, args.order_id))
    status = EXIT_OK if explained.consistent else EXIT_DIFFERENCES
    if args.json:
        print(json.dumps(explained.as_json(), indent=2))
        return status
    e = explained
    print(f"Order {e.order_id} ({e.state}): paid {e.paid} {e.currency} = goods {e.goods_net} + freight {e.freight}")
    print(f"{'line':>4} {'sku':<10}{'qty':>4}{'gross':>9}{'promo':>8}{'m.coupon':>9}{'p.coupon':>9}{'net':>9}"
          f"{'refunded':>13}{'remaining':>13}")
    for line in e.lines:
        print(f"{line.line_no:>4} {line.sku_id:<10}{line.quantity:>4}{line.gross:>9}{line.promotion_discount:>8}"
              f"{line.merchant_coupon_discount:>9}{line.platform_coupon_discount:>9}{line.net:>9}"
              f"{f'{line.refunded_units}u {line.refunded_amount}':>13}"
              f"{f'{line.remaining_units}u {line.remaining_refundable}':>13}")
    print(f"Discounts, each by {e.apportion_rule}:")
    for d in e.discounts:
        print(f"  {d.source} {d.discount_id or ''}: {d.total} over {d.weights_total} "
              f"({d.eligible}){'' if d.reproduced else ' — NOT reproduced'}")
        for s in d.shares:
            mark = " +1" if s.extra_unit else ""
            stored = "" if s.stored is None else f", stored {s.stored}"
            print(f"    line {s.line_no} {s.sku_id}: {d.total}×{s.weight}/{d.weights_total} = {s.floor} "
                  f"r {s.remainder}{mark} → {s.recomputed}{stored}")
    print(f"Refunds, each line by {e.unit_refund_rule}:")
    for r in e.refunds:
        print(f"  {r.refund_id} ({r.kind}, {r.issued_at}): {r.amount_stored} stored, {r.amount_recomputed} recomputed")
        for rl in r.lines:
            print(f"    line {rl.line_no}: k={rl.units} r={rl.refunded_before} n={rl.quantity} net={rl.net}: "
                  f"{rl.after} − {rl.before} = {rl.recomputed} (stored {rl.stored})")
        if r.freight_stored or r.freight_recomputed:
            print(f"    freight: {r.freight_recomputed} (stored {r.freight_stored})")
    print(f"Refunded {e.refunded}; remaining refundable {e.remaining_refundable}")
    if e.mismatches:
        print(f"{len(e.mismatches)} mismatch(es) between history and what was stored:")
        for mismatch in e.mismatches:
            print(f"  {mismatch}")
    else:
        print("Every amount recomputed from history matches what was stored.")
    return status
