"""What every command shares: logging on stderr (secrets masked), progress, and signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from ecomcore.infrastructure.settings import DEFAULT_STORE_URL
from ecomcore_projections.cli.masking import mask
from ecomcore_projections.cli.options import LOG_LEVELS

log = logging.getLogger("ecomcore.cli")
#: What the projector workers report (the runner logs under the same name).
worker_log = logging.getLogger("ecomcore.projections")

STORE_HELP = f"event store URL: sqlite:///path or postgresql://user:pw@host/db (default {DEFAULT_STORE_URL})"
READ_MODELS_HELP = "read-model database URL (default: the store's own database)"

__all__ = ["LOG_LEVELS", "READ_MODELS_HELP", "STORE_HELP", "configure_logging", "log", "stop_on_signals", "worker_log"]


class MaskingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with every password and key masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (not when the handler was made)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    """ecomcore's log lines at ``level``, the libraries' from warnings on (all of them at debug);
    one handler, on the root logger, so no line escapes the masking."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    root.addHandler(StderrHandler())
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    ours = logging.getLogger("ecomcore")
    for handler in [h for h in ours.handlers if isinstance(h, StderrHandler)]:
        ours.removeHandler(handler)  # left by an earlier version of this function
    ours.setLevel(level.upper())
    ours.propagate = True
    # The connection pool warns once a second while a server is down; the command says it once.
    logging.getLogger("psycopg.pool").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT stop the worker between batches; it then exits 0."""

    def handler(signum: int, frame: FrameType | None) -> None:
        worker_log.info("%s received: stopping after this batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
