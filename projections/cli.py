"""The ``ecomcore`` command with the read side: the core commands plus projector workers.

    ecomcore project [--store URL] [--read-models URL] [--only NAME] (--until-caught-up | --follow)
    ecomcore rebuild [NAME | --all] [--check] [--store URL] [--read-models URL]
    ecomcore status  [--store URL] [--read-models URL] [--json] [--max-lag EVENTS]

The core (``ecomcore.cli``) never imports the projections; this module adds them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from types import FrameType

from ecomcore_projections.base import describe_cause
from ecomcore_projections.faults import Backoff, is_transient
from ecomcore_projections.order_status import OrderStatusQueries
from ecomcore_projections.progress import ProgressReporter
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.reconciliation import ReconciliationQueries
from ecomcore_projections.runner import REGISTRY, Projector, ReadModels
from ecomcore_projections.stock import StockQueries

from ecomcore import cli as core_cli
from ecomcore.domain.money import format_amount
from ecomcore.infrastructure.clock import ManualClock
from ecomcore.infrastructure.settings import Settings
from ecomcore.infrastructure.store import EventStore
from ecomcore.simulation import simulate_trading_day

log = logging.getLogger("ecomcore.projections")

EXIT_DIFFERENCES = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = core_cli.build_parser()
    read_models_help = "read-model database URL (default: $ECOMCORE_READ_MODELS_URL, else the store's own database)"

    demo = commands.choices["demo"]
    demo.add_argument("--read-models", metavar="URL", help=read_models_help)
    demo.add_argument("--no-projections", action="store_true",
                      help="only trade: leave the read models for a projector worker")
    demo.set_defaults(command=run_demo)

    project = commands.add_parser("project", help="run projector workers: catch up, or follow the event log")
    _store_options(project, read_models_help)
    project.add_argument("--only", metavar="NAME", choices=sorted(REGISTRY), help="one projection")
    mode = project.add_mutually_exclusive_group(required=True)
    mode.add_argument("--until-caught-up", action="store_true", help="apply everything up to the head, then stop")
    mode.add_argument("--follow", action="store_true", help="keep following until interrupted (SIGINT/SIGTERM)")
    project.add_argument("--poll", metavar="SECONDS", type=_seconds, default=_env_number("POLL", 0.5),
                         help="poll interval when idle (default: $ECOMCORE_POLL, else 0.5)")
    project.add_argument("--batch-size", metavar="N", type=core_cli.whole_number(1),
                         default=int(_env_number("BATCH_SIZE", 1000)),
                         help="events per batch and transaction (default: $ECOMCORE_BATCH_SIZE, else 1000)")
    project.add_argument("--log-interval", metavar="SECONDS", type=_seconds, default=_env_number("LOG_INTERVAL", 10.0),
                         help="log progress at most this often (default: $ECOMCORE_LOG_INTERVAL, else 10)")
    project.add_argument("--give-up-after", metavar="SECONDS", type=_seconds,
                         default=_env_number("GIVE_UP_AFTER", 60.0),
                         help="with --until-caught-up: give up after this long unable to reach a database "
                              "(default: $ECOMCORE_GIVE_UP_AFTER, else 60); --follow never gives up")
    project.set_defaults(command=run_project)

    rebuild_ = commands.add_parser("rebuild", help="rebuild read models from zero (shadow tables, swapped in)")
    rebuild_.add_argument("name", nargs="?", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    rebuild_.add_argument("--all", action="store_true", help="every projection")
    rebuild_.add_argument("--check", action="store_true",
                          help="compare a rebuild with the live tables, print differences, exit 1 if any")
    _store_options(rebuild_, read_models_help)
    rebuild_.add_argument("--batch-size", metavar="N", type=core_cli.whole_number(1),
                          default=int(_env_number("BATCH_SIZE", 1000)))
    rebuild_.set_defaults(command=run_rebuild)

    status = commands.add_parser("status", help="each projection's position, lag and schema version")
    _store_options(status, read_models_help)
    status.add_argument("--json", action="store_true", help="print JSON for machines")
    status.add_argument("--max-lag", metavar="EVENTS", type=core_cli.whole_number(0), default=None,
                        help="exit 1 if any projection is more than EVENTS behind (or its schema is out of date)")
    status.set_defaults(command=run_status)
    for command in commands.choices.values():
        if not any(action.dest == "log_level" for action in command._actions):
            core_cli.add_log_level(command)
    return core_cli.main(argv, parser)


def _store_options(parser: argparse.ArgumentParser, read_models_help: str) -> None:
    parser.add_argument("--store", metavar="URL", help=core_cli.STORE_HELP)
    parser.add_argument("--read-models", metavar="URL", help=read_models_help)


def _env_number(name: str, default: float) -> float:
    """A numeric default from ``$ECOMCORE_<name>``, validated like the option itself."""
    raw = os.environ.get(f"ECOMCORE_{name}")
    if raw is None:
        return default
    try:
        return _seconds(raw)
    except argparse.ArgumentTypeError as error:
        raise SystemExit(f"ecomcore: error: ECOMCORE_{name}: {error}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


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
        read_models = ReadModels(_read_models_url(args, shop.settings.store_url))
        try:
            with ProgressReporter() as progress:
                applied = Projector(shop.store, read_models).catch_up(progress=progress)
            log.info("projected %d events into the read models", applied)
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


def _read_models_url(args: argparse.Namespace, store_url: str) -> str:
    return args.read_models or os.environ.get("ECOMCORE_READ_MODELS_URL") or store_url


#: Workers notice a PostgreSQL store that went away within about ten of these seconds
#: (the library tries ten times), unless ``ECOMCORE_POSTGRES_CONNECT_TIMEOUT_S`` says otherwise.
WORKER_CONNECT_TIMEOUT_S = 1


def _open(
    args: argparse.Namespace,
    *,
    create_tables: bool = True,
    stop: threading.Event | None = None,
    wait_for: float | None = 0.0,
) -> tuple[EventStore, ReadModels]:
    """The store and the read models; a store that cannot be reached yet is waited for,
    with back-off, for ``wait_for`` seconds (None: until ``stop``)."""
    settings = Settings()
    updates: dict[str, object] = {}
    if args.store:
        updates["store_url"] = args.store
    if "ECOMCORE_POSTGRES_CONNECT_TIMEOUT_S" not in os.environ:
        updates["postgres_connect_timeout_s"] = WORKER_CONNECT_TIMEOUT_S
    settings = settings.model_copy(update=updates)
    store = _open_store(settings, stop or threading.Event(), wait_for)
    try:
        return store, ReadModels(_read_models_url(args, settings.store_url), create_tables=create_tables)
    except BaseException:
        store.close()
        raise


def _open_store(settings: Settings, stop: threading.Event, wait_for: float | None) -> EventStore:
    backoff = Backoff()
    started = time.monotonic()
    while True:
        try:
            return EventStore(settings)
        except Exception as error:
            waited = time.monotonic() - started
            if not is_transient(error) or stop.is_set() or (wait_for is not None and waited >= wait_for):
                raise
            delay = backoff.next_delay()
            log.warning("store unreachable (%s); retrying in %.1f s", describe_cause(error), delay)
            if stop.wait(delay):
                raise


def run_project(args: argparse.Namespace) -> int:
    stop = threading.Event()
    _stop_on_signals(stop)
    store, read_models = _open(args, create_tables=False, stop=stop,
                               wait_for=None if args.follow else args.give_up_after)
    try:
        projector = Projector(store, read_models, names=[args.only] if args.only else None,
                              batch_size=args.batch_size, log_interval=args.log_interval)
        started = time.monotonic()
        if args.until_caught_up:
            applied = projector.run(stop, give_up_after=args.give_up_after, create_tables=True)
        else:
            applied = projector.run(stop, follow=True, poll_interval=args.poll, create_tables=True)
        elapsed = time.monotonic() - started
        print(f"applied {applied} events in {elapsed:.1f} s")
        try:
            lags = projector.lag()
        except Exception as error:
            if not is_transient(error):
                raise
            print(f"  lag unknown: {describe_cause(error)}")  # stopped while a database is down
            return core_cli.EXIT_OK
        for lag in lags:
            print(f"  {lag.name:<16} position {lag.position:>9}  behind {lag.events_behind:>7} events"
                  f"  {lag.seconds_behind:>8.1f} s")
        return core_cli.EXIT_OK
    finally:
        read_models.dispose()
        store.close()


def run_status(args: argparse.Namespace) -> int:
    store, read_models = _open(args, create_tables=False)
    try:
        statuses = Projector(store, read_models).status()
    finally:
        read_models.dispose()
        store.close()
    unhealthy = args.max_lag is not None and any(
        s.events_behind > args.max_lag or not s.schema_ok for s in statuses
    )
    if args.json:
        print(json.dumps(
            {
                "projections": [
                    {**asdict(s), "schema_ok": s.schema_ok} for s in statuses
                ],
                "max_lag": args.max_lag,
                "healthy": not unhealthy,
            },
            indent=2,
        ))
    else:
        print(f"{'projection':<16}{'position':>10}{'head':>10}{'behind':>9}{'seconds':>10}  schema")
        for s in statuses:
            schema = f"v{s.schema_version}" if s.schema_version is not None else "not started"
            if not s.schema_ok:
                schema += f" (needs v{s.expected_schema_version}: run `ecomcore rebuild {s.name}`)"
            print(f"{s.name:<16}{s.position:>10}{s.head:>10}{s.events_behind:>9}{s.seconds_behind:>10.1f}  {schema}")
    return EXIT_DIFFERENCES if unhealthy else core_cli.EXIT_OK


def run_rebuild(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        return core_cli._fail("invalid_command", "name one projection, or pass --all")
    store, read_models = _open(args)
    try:
        names = list(read_models.classes) if args.all else [args.name]
        read_models.projection_class(names[0])
        failed = False
        with ProgressReporter() as progress:
            reports = []
            for name in names:
                reports.append(rebuild(store, read_models, name, check=args.check, batch_size=args.batch_size,
                                       progress=progress))
        for report in reports:
            if not args.check:
                print(f"rebuilt {report.name}: {report.events} events, position {report.position}")
            elif report.differences:
                failed = True
                print(f"{report.name}: {len(report.differences)} difference(s) at position {report.position}")
                for difference in report.differences[:50]:
                    print(f"  {difference}")
            else:
                print(f"{report.name}: live tables equal a rebuild from zero (position {report.position})")
        return EXIT_DIFFERENCES if failed else core_cli.EXIT_OK
    finally:
        read_models.dispose()
        store.close()


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT stop the worker between batches; it then exits 0."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping after this batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


if __name__ == "__main__":
    sys.exit(main())
