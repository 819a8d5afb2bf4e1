"""The ``ecomcore`` command line.

    ecomcore demo  [--store URL] [--orders N] [--seed S]   a simulated trading day
    ecomcore sweep [--store URL] [--now ISO8601]            time-driven work, once

The store defaults to ``ECOMCORE_STORE_URL`` (else ``sqlite:///ecomcore.sqlite``).
Expected failures (a bad store URL, a refused command) print ``error [code]: message``
on stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from eventsourcing.persistence import PersistenceError
from sqlalchemy.exc import SQLAlchemyError

from ecomcore.application.shop import Shop
from ecomcore.domain.errors import EcomcoreError
from ecomcore.domain.money import format_amount
from ecomcore.infrastructure.clock import Clock, ManualClock, SystemClock
from ecomcore.infrastructure.settings import DEFAULT_STORE_URL, Settings
from ecomcore.simulation import DaySummary, simulate_trading_day

log = logging.getLogger("ecomcore.cli")

#: A fresh store's simulated day starts on Double 11 (双十一), so runs are repeatable.
DEMO_START = datetime(2026, 11, 11, 8, 0, tzinfo=UTC)

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one command; ``parser`` lets an outer layer (the projections) add its own commands."""
    parser = parser or build_parser()[0]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has already reported
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    configure_logging(getattr(args, "log_level", None))
    try:
        return args.command(args)
    except EcomcoreError as error:
        log.debug("%s", error.code, exc_info=True)
        return _fail(error.code, error.message)
    except (PersistenceError, SQLAlchemyError) as error:
        # The store could not be opened or reached: the user's to fix, not a bug.
        log.debug("store_unavailable", exc_info=True)
        return _fail("store_unavailable", _first_line(error))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged (not when the handler was made)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=None,
        help="how much to log on stderr (default: $ECOMCORE_LOG_LEVEL, else info; debug adds tracebacks)",
    )


def _fail(code: str, message: str) -> int:
    print(f"error [{code}]: {message}", file=sys.stderr)
    return EXIT_ERROR


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- arguments


STORE_HELP = (
    "event store URL: sqlite:///path or postgresql://user:pw@host/db "
    f"(default: $ECOMCORE_STORE_URL, else {DEFAULT_STORE_URL})"
)


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The core commands; returns the parser and its sub-command set, for more commands."""
    parser = argparse.ArgumentParser(
        prog="ecomcore", description="The event-sourced core of an e-commerce back office."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    store_help = STORE_HELP

    demo = commands.add_parser("demo", help="run a simulated trading day and print what happened")
    demo.add_argument("--store", metavar="URL", help=store_help)
    demo.add_argument("--orders", metavar="N", type=_positive_int, default=200,
                      help="checkout attempts in the day (default %(default)s)")
    demo.add_argument("--seed", metavar="S", type=int, default=7,
                      help="random seed: on a fresh store the same seed gives the same day (default %(default)s)")
    demo.set_defaults(command=run_demo)
    add_log_level(demo)

    sweep = commands.add_parser("sweep", help="expire overdue checkouts and coupons, complete orders, once")
    sweep.add_argument("--store", metavar="URL", help=store_help)
    sweep.add_argument("--now", metavar="ISO8601", type=_moment, default=None,
                       help="the moment to sweep as of, ISO 8601 (naive means UTC; default: the system clock)")
    sweep.set_defaults(command=run_sweep)
    add_log_level(sweep)
    return parser, commands


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


_positive_int = whole_number(1)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _open_shop(store_url: str | None, clock: Clock) -> Shop:
    return Shop(store_url, clock=clock, settings=Settings())


# --------------------------------------------------------------------------- demo


def run_demo(args: argparse.Namespace) -> int:
    clock = ManualClock(DEMO_START)
    with _open_shop(args.store, clock) as shop:
        clock.set(_trading_morning(shop))
        print(f"simulating {args.orders} checkouts on {shop.settings.store_url}", file=sys.stderr)
        summary = simulate_trading_day(
            shop, clock, orders=args.orders, seed=args.seed, progress=_progress_line(sys.stderr)
        )
    print(render_summary(summary, orders=args.orders, seed=args.seed))
    return EXIT_OK


def _trading_morning(shop: Shop) -> datetime:
    """When the simulated day opens: Double 11 on a fresh store, else the morning after
    the store's latest event, so that no run's history goes back in time."""
    latest = _latest_event_time(shop)
    if latest is None:
        return DEMO_START
    morning_after = (latest + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    return max(DEMO_START, morning_after)


def _latest_event_time(shop: Shop) -> datetime | None:
    # The last notification is the latest event written; events are written in time
    # order by every clock that only moves forward, which is good enough to start after.
    recorder = shop.store.recorder
    last_id = recorder.max_notification_id()
    if not last_id:
        return None
    notifications = recorder.select_notifications(last_id, 1)
    if not notifications:
        return None
    return shop.store.mapper.to_domain_event(notifications[0]).timestamp


def _progress_line(stream: TextIO) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        stream.write(f"\r  orders {done}/{total}{end}")
        stream.flush()

    return show


def render_summary(
    summary: DaySummary, *, orders: int, seed: int, sections: Sequence[str] | None = None
) -> str:
    """The day in a few lines a person can read; ``sections`` replace the state and stock
    sections (the read side prints them from its read models)."""
    head = [
        f"Trading day {summary.trading_day:%Y-%m-%d} (seed {seed}, {orders} checkout attempts)",
        "",
        *_figures(summary),
    ]
    if sections is not None:
        return "\n".join([*head, *sections])
    lines = [
        *head,
        "",
        "Orders by state",
        *_rows((state.value, count) for state, count in summary.orders_by_state.items()),
        "",
        "Stock left (available, all warehouses)",
        *_rows(summary.stock_left.items()),
        "",
        "Low-stock alerts (reorder suggestions)",
        *(
            f"  {alert.sku_id} in {alert.warehouse_id}: "
            f"available {alert.available}, safety stock {alert.safety_stock}"
            for alert in summary.low_stock_alerts
        ),
    ]
    if not summary.low_stock_alerts:
        lines.append("  none")
    return "\n".join(lines)


def _figures(s: DaySummary) -> list[str]:
    def money(amount: int) -> str:
        return format_amount(amount, s.currency)

    figures = {
        "checkouts placed": s.checkouts_placed,
        "refused for stock": s.checkouts_refused_for_stock,
        "cancelled by customers": s.checkouts_cancelled,
        "expired unpaid": s.checkouts_expired,
        "money taken": money(s.money_taken),
        "late payments refunded": f"{s.late_payments_refunded} ({money(s.late_payments_refunded_amount)})",
        "coupons issued": f"{s.coupons_issued} ({s.coupons_expired_by_sweep} expired unused)",
        "shipments": f"{s.shipments_dispatched} dispatched, {s.shipments_delivered} delivered, "
        f"{s.shipments_failed} failed",
        "stocktake shortage": f"{s.stocktake_shortage} unit(s) fewer than reserved",
        "refunds only": f"{s.refunds_only} ({money(s.refunds_only_amount)})",
        "returns": f"{s.returns_requested} requested, {s.returns_rejected} rejected, "
        f"{s.returns_refunded} refunded ({money(s.returns_refunded_amount)})",
        "returned units": f"{s.units_restocked} restocked, {s.units_damaged} damaged",
        "coupons returned": s.coupons_returned,
    }
    return [f"  {label:<26}{value}" for label, value in figures.items()]


def _rows(rows: Iterable[tuple[str, int]]) -> list[str]:
    return [f"  {name:<24}{count:>5}" for name, count in rows]


# --------------------------------------------------------------------------- sweep


def run_sweep(args: argparse.Namespace) -> int:
    clock: Clock = ManualClock(args.now) if args.now else SystemClock()
    with _open_shop(args.store, clock) as shop:
        now = clock.now()
        counts = shop.sweep(now)
    print(f"Sweep as of {now.isoformat(timespec='seconds')}")
    for name, count in counts.items():
        print(f"  {name.replace('_', ' '):<24}{count:>5}")
    return EXIT_OK
