"""The trading commands: ``demo`` (a simulated day, then the read models) and ``sweep``."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from functools import partial

from ecomcore import Clock, ManualClock, Settings, Shop, SystemClock
from ecomcore.domain.money import format_amount
from ecomcore.simulation import (
    FIRST_TRADING_MORNING,
    LowStockAlert,
    count_rows,
    simulate_trading_day,
    state_and_stock_sections,
    trading_morning,
)
from ecomcore_projections.cli.common import (
    EXIT_OK,
    read_models_url,
    worker_log,
)
from ecomcore_projections.order_status import OrderStatusQueries
from ecomcore_projections.progress import ProgressReporter
from ecomcore_projections.reconciliation import ReconciliationQueries
from ecomcore_projections.runner import Projector, ReadModels
from ecomcore_projections.stock import StockQueries


def run_demo(args: argparse.Namespace) -> int:
    """The simulated day, then (unless --no-projections) the projections in-process, so that
    the summary's states, stock and reconciliation come from the read models."""
    clock = ManualClock(FIRST_TRADING_MORNING)
    with Shop(args.store, clock=clock, settings=Settings()) as shop:
        clock.set(trading_morning(shop))
        print(f"simulating {args.orders} checkouts on {shop.settings.store_url}", file=sys.stderr)
        with ProgressReporter(unit="attempts") as progress:
            summary = simulate_trading_day(
                shop, clock, orders=args.orders, seed=args.seed, progress=partial(progress, "orders")
            )
        sections = None if args.no_projections else project_in_process(shop, args, clock.now())
    print(summary.render(orders=args.orders, seed=args.seed, sections=sections))
    return EXIT_OK


def project_in_process(shop: Shop, args: argparse.Namespace, now: datetime) -> list[str]:
    read_models = ReadModels(read_models_url(args, shop.settings.store_url))
    try:
        with ProgressReporter() as progress:
            applied = Projector(shop.store, read_models).catch_up(progress=progress)
        worker_log.info("projected %d events into the read models", applied)
        return read_model_sections(read_models, now, shop.settings.currency)
    finally:
        read_models.dispose()


def read_model_sections(read_models: ReadModels, now: datetime, currency: str) -> list[str]:
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
    balances = ledger.balances()
    settlements = ledger.settlements()
    discrepancies = ledger.discrepancies()
    return [
        *state_and_stock_sections(
            orders.count_by_state(),
            {total.sku_id: total.available for total in stock.totals(now)},
            alerts,
            orders_title="Orders by state (read model)",
        ),
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


def run_sweep(args: argparse.Namespace) -> int:
    clock: Clock = ManualClock(args.now) if args.now else SystemClock()
    with Shop(args.store, clock=clock, settings=Settings()) as shop:
        now = clock.now()
        counts = shop.sweep(now)
    print(f"Sweep as of {now.isoformat(timespec='seconds')}")
    for line in count_rows((name.replace("_", " "), count) for name, count in counts.items()):
        print(line)
    return EXIT_OK


# --------------------------------------------------------------------------- projector workers

#: Workers notice a PostgreSQL store that went away within about ten of these seconds
#: (the library tries ten times), unless ``ECOMCORE_POSTGRES_CONNECT_TIMEOUT_S`` says otherwise.
