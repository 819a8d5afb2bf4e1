"""The ``ecomcore`` command line: the core's commands and the read side's projector workers.

    ecomcore demo    [--store URL] [--orders N] [--seed S] [--read-models URL] [--no-projections]
    ecomcore sweep   [--store URL] [--now ISO8601]
    ecomcore project [--store URL] [--read-models URL] [--only NAME] (--until-caught-up | --follow)
    ecomcore rebuild [NAME | --all] [--check] [--store URL] [--read-models URL]
    ecomcore status  [--store URL] [--read-models URL] [--json] [--max-lag EVENTS]

Every command takes ``--log-level``. The store defaults to ``ECOMCORE_STORE_URL`` (else
``sqlite:///ecomcore.sqlite``), the read models to ``ECOMCORE_READ_MODELS_URL`` (else the
store's own database). Expected failures (a bad store URL, a refused command, an event a
projection cannot apply) print ``error [code]: message`` on stderr and exit with status 2,
without a traceback; ``rebuild --check`` and ``status --max-lag`` exit 1 when they find a
difference or a lag.

This is the one command-line module, in the outermost package: it uses the core's public
API and the read side; the core never imports it.
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
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from types import FrameType
from typing import Any

from eventsourcing.persistence import PersistenceError
from sqlalchemy.exc import SQLAlchemyError

from ecomcore import Clock, EcomcoreError, ManualClock, Settings, Shop, SystemClock
from ecomcore.domain.money import format_amount
from ecomcore.infrastructure.settings import DEFAULT_STORE_URL
from ecomcore.infrastructure.store import EventStore
from ecomcore.simulation import (
    FIRST_TRADING_MORNING,
    LowStockAlert,
    count_rows,
    simulate_trading_day,
    state_and_stock_sections,
    trading_morning,
)
from ecomcore_projections.base import describe_cause
from ecomcore_projections.faults import Backoff, is_transient
from ecomcore_projections.order_status import OrderStatusQueries
from ecomcore_projections.progress import ProgressReporter
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.reconciliation import ReconciliationQueries
from ecomcore_projections.runner import REGISTRY, Projector, ReadModels
from ecomcore_projections.stock import StockQueries

log = logging.getLogger("ecomcore.cli")
#: What the projector workers report (the runner logs under the same name).
worker_log = logging.getLogger("ecomcore.projections")

EXIT_OK = 0
EXIT_DIFFERENCES = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has already reported
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    configure_logging(args.log_level)
    try:
        return int(args.command(args))
    except EcomcoreError as error:
        log.debug("%s", error.code, exc_info=True)
        return fail(error.code, error.message)
    except (PersistenceError, SQLAlchemyError) as error:
        # The store could not be opened or reached: the user's to fix, not a bug.
        log.debug("store_unavailable", exc_info=True)
        return fail("store_unavailable", _first_line(error))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def fail(code: str, message: str) -> int:
    print(f"error [{code}]: {message}", file=sys.stderr)
    return EXIT_ERROR


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- logging

LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_logging(level: str | None) -> None:
    """Log lines on stderr: ``--log-level``, else ``$ECOMCORE_LOG_LEVEL``, else info."""
    chosen = (level or os.environ.get("ECOMCORE_LOG_LEVEL") or "info").lower()
    if chosen not in LOG_LEVELS:
        chosen = "info"
    logger = logging.getLogger("ecomcore")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(chosen.upper())
    logger.propagate = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (not when the handler was made)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


# --------------------------------------------------------------------------- arguments

STORE_HELP = (
    "event store URL: sqlite:///path or postgresql://user:pw@host/db "
    f"(default: $ECOMCORE_STORE_URL, else {DEFAULT_STORE_URL})"
)
READ_MODELS_HELP = "read-model database URL (default: $ECOMCORE_READ_MODELS_URL, else the store's own database)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecomcore", description="The event-sourced core of an e-commerce back office."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a simulated trading day and print what happened")
    demo.add_argument("--store", metavar="URL", help=STORE_HELP)
    demo.add_argument("--orders", metavar="N", type=whole_number(1), default=200,
                      help="checkout attempts in the day (default %(default)s)")
    demo.add_argument("--seed", metavar="S", type=int, default=7,
                      help="random seed: on a fresh store the same seed gives the same day (default %(default)s)")
    demo.add_argument("--read-models", metavar="URL", help=READ_MODELS_HELP)
    demo.add_argument("--no-projections", action="store_true",
                      help="only trade: leave the read models for a projector worker")
    demo.set_defaults(command=run_demo)

    sweep = commands.add_parser("sweep", help="expire overdue checkouts and coupons, complete orders, once")
    sweep.add_argument("--store", metavar="URL", help=STORE_HELP)
    sweep.add_argument("--now", metavar="ISO8601", type=_moment, default=None,
                       help="the moment to sweep as of, ISO 8601 (naive means UTC; default: the system clock)")
    sweep.set_defaults(command=run_sweep)

    poll, batch_size = _env_number("POLL", 0.5), int(_env_number("BATCH_SIZE", 1000))
    project = commands.add_parser("project", help="run projector workers: catch up, or follow the event log")
    _store_options(project)
    project.add_argument("--only", metavar="NAME", choices=sorted(REGISTRY), help="one projection")
    mode = project.add_mutually_exclusive_group(required=True)
    mode.add_argument("--until-caught-up", action="store_true", help="apply everything up to the head, then stop")
    mode.add_argument("--follow", action="store_true", help="keep following until interrupted (SIGINT/SIGTERM)")
    project.add_argument("--poll", metavar="SECONDS", type=_seconds, default=poll,
                         help="poll interval when idle (default: $ECOMCORE_POLL, else 0.5)")
    project.add_argument("--batch-size", metavar="N", type=whole_number(1), default=batch_size,
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
    _store_options(rebuild_)
    rebuild_.add_argument("--batch-size", metavar="N", type=whole_number(1), default=batch_size)
    rebuild_.set_defaults(command=run_rebuild)

    status = commands.add_parser("status", help="each projection's position, lag and schema version")
    _store_options(status)
    status.add_argument("--json", action="store_true", help="print JSON for machines")
    status.add_argument("--max-lag", metavar="EVENTS", type=whole_number(0), default=None,
                        help="exit 1 if any projection is more than EVENTS behind (or its schema is out of date)")
    status.set_defaults(command=run_status)

    for command in commands.choices.values():
        command.add_argument(
            "--log-level", choices=LOG_LEVELS, default=None,
            help="how much to log on stderr (default: $ECOMCORE_LOG_LEVEL, else info; debug adds tracebacks)",
        )
    return parser


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL", help=STORE_HELP)
    parser.add_argument("--read-models", metavar="URL", help=READ_MODELS_HELP)


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _env_number(name: str, default: float) -> float:
    """A numeric default from ``$ECOMCORE_<name>``, validated like the option itself."""
    raw = os.environ.get(f"ECOMCORE_{name}")
    if raw is None:
        return default
    try:
        return _seconds(raw)
    except argparse.ArgumentTypeError as error:
        raise SystemExit(f"ecomcore: error: ECOMCORE_{name}: {error}") from None


def _read_models_url(args: argparse.Namespace, store_url: str) -> str:
    return args.read_models or os.environ.get("ECOMCORE_READ_MODELS_URL") or store_url


# --------------------------------------------------------------------------- demo and sweep


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
        sections = None if args.no_projections else _project_in_process(shop, args, clock.now())
    print(summary.render(orders=args.orders, seed=args.seed, sections=sections))
    return EXIT_OK


def _project_in_process(shop: Shop, args: argparse.Namespace, now: datetime) -> list[str]:
    read_models = ReadModels(_read_models_url(args, shop.settings.store_url))
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
            worker_log.warning("store unreachable (%s); retrying in %.1f s", describe_cause(error), delay)
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
            return EXIT_OK
        for lag in lags:
            print(f"  {lag.name:<16} position {lag.position:>9}  behind {lag.events_behind:>7} events"
                  f"  {lag.seconds_behind:>8.1f} s")
        return EXIT_OK
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
                "projections": [{**asdict(s), "schema_ok": s.schema_ok} for s in statuses],
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
    return EXIT_DIFFERENCES if unhealthy else EXIT_OK


def run_rebuild(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        return fail("invalid_command", "name one projection, or pass --all")
    store, read_models = _open(args)
    try:
        names = list(read_models.classes) if args.all else [args.name]
        read_models.projection_class(names[0])
        with ProgressReporter() as progress:
            reports = [
                rebuild(store, read_models, name, check=args.check, batch_size=args.batch_size, progress=progress)
                for name in names
            ]
        failed = False
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
        return EXIT_DIFFERENCES if failed else EXIT_OK
    finally:
        read_models.dispose()
        store.close()


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT stop the worker between batches; it then exits 0."""

    def handler(signum: int, frame: FrameType | None) -> None:
        worker_log.info("%s received: stopping after this batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


if __name__ == "__main__":
    sys.exit(main())
