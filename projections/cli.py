"""The ``ecomcore`` command with the read side: the core commands plus projector workers.

    ecomcore project [--store URL] [--read-models URL] [--only NAME] (--until-caught-up | --follow)
    ecomcore rebuild [NAME | --all] [--check] [--store URL] [--read-models URL]

The core (``ecomcore.cli``) never imports the projections; this module adds them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from types import FrameType

from ecomcore_projections.base import ProjectionError
from ecomcore_projections.order_status import OrderStatusQueries
from ecomcore_projections.reconciliation import ReconciliationQueries
from ecomcore_projections.runner import REGISTRY, Projector, ReadModels, UnknownProjection, rebuild
from ecomcore_projections.stock import StockQueries

from ecomcore import cli as core_cli
from ecomcore.domain.money import format_amount
from ecomcore.infrastructure.clock import ManualClock
from ecomcore.infrastructure.settings import Settings
from ecomcore.infrastructure.store import EventStore
from ecomcore.simulation import simulate_trading_day

EXIT_DIFFERENCES = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = core_cli.build_parser()
    read_models_help = "read-model database URL (default: the store's own database)"

    demo = commands.choices["demo"]
    demo.add_argument("--read-models", metavar="URL", help=read_models_help)
    demo.add_argument("--no-projections", action="store_true",
                      help="only trade: leave the read models for a projector worker")
    demo.set_defaults(command=run_demo)

    project = commands.add_parser("project", help="run projector workers: catch up, or follow the event log")
    project.add_argument("--store", metavar="URL", help=core_cli.STORE_HELP)
    project.add_argument("--read-models", metavar="URL", help=read_models_help)
    project.add_argument("--only", metavar="NAME", choices=sorted(REGISTRY), help="one projection")
    mode = project.add_mutually_exclusive_group(required=True)
    mode.add_argument("--until-caught-up", action="store_true", help="apply everything up to the head, then stop")
    mode.add_argument("--follow", action="store_true", help="keep following until interrupted (SIGINT/SIGTERM)")
    project.add_argument("--poll", metavar="SECONDS", type=float, default=0.5, help="poll interval when idle")
    project.add_argument("--batch-size", metavar="N", type=core_cli._positive_int, default=1000)
    project.set_defaults(command=run_project)

    rebuild_ = commands.add_parser("rebuild", help="rebuild read models from zero (shadow tables, swapped in)")
    rebuild_.add_argument("name", nargs="?", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    rebuild_.add_argument("--all", action="store_true", help="every projection")
    rebuild_.add_argument("--check", action="store_true",
                          help="compare a rebuild with the live tables, print differences, exit 1 if any")
    rebuild_.add_argument("--store", metavar="URL", help=core_cli.STORE_HELP)
    rebuild_.add_argument("--read-models", metavar="URL", help=read_models_help)
    rebuild_.add_argument("--batch-size", metavar="N", type=core_cli._positive_int, default=1000)
    rebuild_.set_defaults(command=run_rebuild)
    return core_cli.main(argv, parser)


def run_demo(args: argparse.Namespace) -> int:
    """The simulated day, then the projections in-process; the summary comes from the read models."""
    clock = ManualClock(core_cli.DEMO_START)
    with core_cli._open_shop(args.store, clock) as shop:
        clock.set(core_cli._trading_morning(shop))
        print(f"simulating {args.orders} checkouts on {shop.settings.store_url}", file=sys.stderr)
        summary = simulate_trading_day(
            shop, clock, orders=args.orders, seed=args.seed, progress=core_cli._progress_line(sys.stderr)
        )
        if args.no_projections:
            print(core_cli.render_summary(summary, orders=args.orders, seed=args.seed))
            return core_cli.EXIT_OK
        read_models = ReadModels(args.read_models or shop.settings.store_url)
        try:
            applied = Projector(shop.store, read_models).catch_up(progress=_progress)
            print(f"\nprojected {applied} events into the read models", file=sys.stderr)
            sections = read_model_sections(read_models, clock.now(), shop.settings.currency)
        finally:
            read_models.dispose()
    print(core_cli.render_summary(summary, orders=args.orders, seed=args.seed, sections=sections))
    return core_cli.EXIT_OK


def read_model_sections(read_models: ReadModels, now: datetime, currency: str) -> list[str]:
    """Orders by state, stock, reorder suggestions and the reconciliation checks, from the read models."""
    engine = read_models.engine
    orders = OrderStatusQueries(engine, read_models.tables["order_status"])
    stock = StockQueries(engine, read_models.tables["stock"])
    ledger = ReconciliationQueries(engine, read_models.tables["reconciliation"])

    def money(amount: int) -> str:
        return format_amount(amount, currency)

    balances = ledger.balances()
    lines = [
        "",
        "Orders by state (read model)",
        *core_cli._rows((state.value, n) for state, n in orders.count_by_state().items()),
        "",
        "Stock left (available, all warehouses)",
        *core_cli._rows((total.sku_id, total.available) for total in stock.totals(now)),
        "",
        "Low-stock alerts (reorder suggestions)",
        *(
            f"  {level.sku_id} in {level.warehouse_id}: available {level.available}, "
            f"safety stock {level.safety_stock}"
            for level in stock.low_stock(now)
        ),
    ]
    if not stock.low_stock(now):
        lines.append("  none")
    discrepancies = ledger.discrepancies()
    lines += [
        "",
        "Reconciliation (ledger)",
        f"  {'money at the provider':<26}{money(balances.get('provider_cash', 0))}",
        f"  {'platform subsidy paid':<26}{money(balances.get('platform:subsidy', 0))}",
        f"  {'merchant settlements':<26}{len({s.merchant_id for s in ledger.settlements()})} merchants, "
        f"{money(sum(s.owed for s in ledger.settlements()))} owed",
        f"  {'discrepancies':<26}{len(discrepancies) or 'none'}",
        *(f"    {d.kind}: {d.message}" for d in discrepancies[:20]),
    ]
    return lines


def _open(args: argparse.Namespace) -> tuple[EventStore, ReadModels]:
    settings = Settings()
    if args.store:
        settings = settings.model_copy(update={"store_url": args.store})
    store = EventStore(settings)
    return store, ReadModels(args.read_models or settings.store_url)


def run_project(args: argparse.Namespace) -> int:
    store, read_models = _open(args)
    try:
        projector = Projector(store, read_models, names=[args.only] if args.only else None,
                              batch_size=args.batch_size)
        if args.until_caught_up:
            started = time.monotonic()
            applied = projector.catch_up(progress=_progress)
            sys.stderr.write("\n")
            print(f"applied {applied} events in {time.monotonic() - started:.1f} s")
        else:
            stop = threading.Event()
            _stop_on_signals(stop)
            print(f"following {store.recorder.__class__.__name__} for {', '.join(projector.projections)}",
                  file=sys.stderr)
            projector.follow(stop, poll_interval=args.poll)
        for lag in projector.lag():
            print(f"  {lag.name:<16} position {lag.position:>9}  behind {lag.events_behind:>7} events"
                  f"  {lag.seconds_behind:>8.1f} s")
        return core_cli.EXIT_OK
    except ProjectionError as error:
        return core_cli._fail("projection_failed", str(error))
    finally:
        read_models.dispose()
        store.close()


def run_rebuild(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        return core_cli._fail("invalid_command", "name one projection, or pass --all")
    store, read_models = _open(args)
    try:
        names = list(read_models.classes) if args.all else [args.name]
        failed = False
        for name in names:
            report = rebuild(store, read_models, name, check=args.check, batch_size=args.batch_size,
                             progress=_progress)
            sys.stderr.write("\n")
            if not args.check:
                print(f"rebuilt {name}: {report.events} events, position {report.position}")
            elif report.differences:
                failed = True
                print(f"{name}: {len(report.differences)} difference(s) at position {report.position}")
                for difference in report.differences[:50]:
                    print(f"  {difference}")
            else:
                print(f"{name}: live tables equal a rebuild from zero (position {report.position})")
        return EXIT_DIFFERENCES if failed else core_cli.EXIT_OK
    except UnknownProjection as error:
        return core_cli._fail("unknown_projection", str(error))
    except ProjectionError as error:
        return core_cli._fail("projection_failed", str(error))
    finally:
        read_models.dispose()
        store.close()


def _progress(name: str, position: int, head: int) -> None:
    sys.stderr.write(f"\r  {name}: {position}/{head}")
    sys.stderr.flush()


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


if __name__ == "__main__":
    sys.exit(main())
