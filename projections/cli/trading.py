"""The trading commands: ``demo`` (a simulated day, then the read models) and ``sweep``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from ecomcore import Clock, ManualClock, Settings, Shop, SystemClock
from ecomcore.domain.money import format_amount
from ecomcore.simulation import (
    FIRST_TRADING_MORNING,
    LowStockAlert,
    SimulatedProvider,
    count_rows,
    simulate_trading_day,
    state_and_stock_sections,
    trading_morning,
)
from ecomcore_projections.audit.statement import write_statement
from ecomcore_projections.cli.common import worker_log
from ecomcore_projections.cli.failures import EXIT_OK
from ecomcore_projections.cli.masking import mask
from ecomcore_projections.cli.reconcile import statement_path
from ecomcore_projections.cli.stores import (
    check_store,
    close_read_models,
    load_settings,
    open_read_models,
    read_models_url,
)
from ecomcore_projections.order_status import OrderStatusQueries
from ecomcore_projections.progress import ProgressReporter
from ecomcore_projections.reconciliation import ReconciliationQueries
from ecomcore_projections.runner import Projector, ReadModels
from ecomcore_projections.stock import StockQueries


def open_shop(settings: Settings, clock: Clock, *, must_exist: bool) -> Shop:
    check_store(settings, must_exist=must_exist)
    return Shop(clock=clock, settings=settings)


def run_demo(args: argparse.Namespace) -> int:
    """The simulated day, then (unless --no-projections) the projections in-process, so that
    the summary's states, stock and reconciliation come from the read models."""
    settings = load_settings(args)
    clock = ManualClock(FIRST_TRADING_MORNING)
    with open_shop(settings, clock, must_exist=False) as shop:
        clock.set(trading_morning(shop))
        earlier_runs = bool(shop.store.recorder.max_notification_id())
        provider = SimulatedProvider()
        print(f"simulating {args.orders} checkouts on {mask(settings.store_url)}", file=sys.stderr)
        with ProgressReporter(unit="attempts") as progress:
            summary = simulate_trading_day(
                shop, clock, orders=args.orders, seed=args.seed, progress=partial(progress, "orders"),
                provider=provider,
            )
        statement = write_provider_statement(settings.store_url, provider, append=earlier_runs)
        read_side = None if args.no_projections else project_in_process(shop, args, clock.now())
    if args.json:
        report: dict[str, Any] = {"orders": args.orders, "seed": args.seed, **summary.model_dump(mode="json")}
        report["read_models"] = None if read_side is None else read_side[1]
        report["statement"] = None if statement is None else str(statement)
        print(json.dumps(report, indent=2))
    else:
        print(summary.render(orders=args.orders, seed=args.seed, sections=None if read_side is None else read_side[0]))
    return EXIT_OK


def write_provider_statement(store_url: str, provider: SimulatedProvider, *, append: bool) -> Path | None:
    """The simulated provider's statement, beside an SQLite store (``<file>.statement.csv``) or, for
    PostgreSQL, in the current directory (``<database>.statement.csv``); appended to when the store
    already held earlier days, so that it stays the statement of everything in the store."""
    path = statement_path(store_url)
    if path is None:
        return None
    try:
        written = write_statement(path, provider.transactions, append=append and path.exists())
    except OSError as error:
        worker_log.warning("could not write the provider's statement to %s: %s", path, error.strerror)
        return None
    worker_log.info(
        "the payment provider's statement (%d lines): %s; match it: ecomcore reconcile --statement %s",
        written, path, path,
    )
    return path


def project_in_process(shop: Shop, args: argparse.Namespace, now: datetime) -> tuple[list[str], dict[str, Any]]:
    """Project the store into the read models; their sections of the summary, as lines and as data."""
    read_models = open_read_models(read_models_url(args, shop.settings.store_url), shop.settings, create_tables=True)
    try:
        with ProgressReporter() as progress:
            applied = Projector(shop.store, read_models).catch_up(progress=progress)
        worker_log.info("projected %d events into the read models", applied)
        return read_model_sections(read_models, now, shop.settings.currency)
    finally:
        close_read_models(read_models)


def read_model_sections(read_models: ReadModels, now: datetime, currency: str) -> tuple[list[str], dict[str, Any]]:
    """Orders by state, stock, reorder suggestions and the reconciliation checks, from the read models."""
    engine = read_models.engine
    orders = OrderStatusQueries(engine, read_models.tables["order_status"])
    stock = StockQueries(engine, read_models.tables["stock"])
    ledger = ReconciliationQueries(engine, read_models.tables["reconciliation"])

    def money(amount: int) -> str:
        return format_amount(amount, currency)

    alerts = [
        LowStockAlert(sku_id=level.sku_id, warehouse_id=level.warehouse_id,
                      available=level.available, safety_stock=level.safety_stock)
        for level in stock.low_stock(now)
    ]
    by_state = orders.count_by_state()
    available = {total.sku_id: total.available for total in stock.totals(now)}
    balances = ledger.balances()
    settlements = ledger.settlements()
    discrepancies = ledger.discrepancies()
    lines = [
        *state_and_stock_sections(by_state, available, alerts, orders_title="Orders by state (read model)"),
        "",
        "Reconciliation (ledger)",
        f"  {'money at the provider':<26}{money(balances.get('provider_cash', 0))}",
        f"  {'platform subsidy paid':<26}{money(balances.get('platform:subsidy', 0))}",
        (
            f"  {'merchant settlements':<26}{len({s.merchant_id for s in settlements})} merchants, "
            f"{money(sum(s.owed for s in settlements))} owed"
        ),
        f"  {'discrepancies':<26}{len(discrepancies) or 'none'}",
        *(f"    {d.kind}: {d.message}" for d in discrepancies[:20]),
    ]
    data = {
        "orders_by_state": {str(getattr(state, "value", state)): count for state, count in by_state.items()},
        "stock_available": available,
        "low_stock_alerts": [alert.model_dump(mode="json") for alert in alerts],
        "balances": dict(balances),
        "merchants_settled": len({s.merchant_id for s in settlements}),
        "merchant_settlements_owed": sum(s.owed for s in settlements),
        "discrepancies": [{"kind": d.kind, "message": d.message} for d in discrepancies],
    }
    return lines, data


def run_sweep(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    clock: Clock = ManualClock(args.now) if args.now else SystemClock()
    with open_shop(settings, clock, must_exist=True) as shop:
        now = clock.now()
        counts = shop.sweep(now)
    if args.json:
        print(json.dumps({"now": now.isoformat(), **{name: count for name, count in counts.items()}}, indent=2))
        return EXIT_OK
    print(f"Sweep as of {now.isoformat(timespec='seconds')}")
    for line in count_rows((name.replace("_", " "), count) for name, count in counts.items()):
        print(line)
    return EXIT_OK
