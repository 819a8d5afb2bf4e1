"""What every command shares: exit statuses, one-line errors, logging, options and opening the stores."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from ecomcore import Settings
from ecomcore.infrastructure.settings import DEFAULT_STORE_URL
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import describe_cause
from ecomcore_projections.faults import Backoff, is_transient
from ecomcore_projections.runner import ReadModels

log = logging.getLogger("ecomcore.cli")
#: What the projector workers report (the runner logs under the same name).
worker_log = logging.getLogger("ecomcore.projections")



EXIT_OK = 0
EXIT_DIFFERENCES = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
#: The reader of our output went away (like SIGPIPE: 128 + 13).
EXIT_BROKEN_PIPE = 141


def fail(code: str, message: str) -> int:
    print(f"error [{code}]: {message}", file=sys.stderr)
    return EXIT_ERROR


def first_line(error: BaseException) -> str:
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
    for handler in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(chosen.upper())
    logger.propagate = False


class StderrHandler(logging.StreamHandler):
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


def store_options(parser: argparse.ArgumentParser) -> None:
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


def moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def env_number(name: str, default: float) -> float:
    """A numeric default from ``$ECOMCORE_<name>``, validated like the option itself."""
    raw = os.environ.get(f"ECOMCORE_{name}")
    if raw is None:
        return default
    try:
        return seconds(raw)
    except argparse.ArgumentTypeError as error:
        raise SystemExit(f"ecomcore: error: ECOMCORE_{name}: {error}") from None


def read_models_url(args: argparse.Namespace, store_url: str) -> str:
    return args.read_models or os.environ.get("ECOMCORE_READ_MODELS_URL") or store_url


# --------------------------------------------------------------------------- demo and sweep


WORKER_CONNECT_TIMEOUT_S = 1


def open_store_and_read_models(
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
    store = open_store(settings, stop or threading.Event(), wait_for)
    try:
        return store, ReadModels(read_models_url(args, settings.store_url), create_tables=create_tables)
    except BaseException:
        store.close()
        raise


def open_store(settings: Settings, stop: threading.Event, wait_for: float | None) -> EventStore:
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


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT stop the worker between batches; it then exits 0."""

    def handler(signum: int, frame: FrameType | None) -> None:
        worker_log.info("%s received: stopping after this batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

