"""Which faults a worker waits out, and how long it waits between tries.

A transient fault is one the database or the network will get over by itself: the
server restarting or shutting a connection, a connection refused or dropped, SQLite
busy or locked.  Everything else (a constraint violated, a table missing, bad data) is
a fault of the data or the code, and retrying it would only repeat it.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError as SqlInterfaceError
from sqlalchemy.exc import OperationalError as SqlOperationalError

from ecomcore import EcomcoreError

#: Words of SQLite's OperationalError that mean "try again later" (others, like
#: "no such table", are not transient).
_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o error", "unable to open database")

#: psycopg's connection faults (and its pool's time-out), which waiting out can cure.  The
#: driver comes with the ``postgres`` extra: a SQLite-only install has none, and then no
#: error can be one of them.
_PSYCOPG_TRANSIENT: tuple[type[BaseException], ...] = ()
try:
    import psycopg
except ImportError:  # pragma: no cover - the package installed without the postgres extra
    pass
else:
    _PSYCOPG_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)
    try:  # psycopg_pool is what the eventsourcing PostgreSQL recorder pools connections with.
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - psycopg_pool ships with the postgres extra
        pass
    else:
        _PSYCOPG_TRANSIENT = (*_PSYCOPG_TRANSIENT, PoolTimeout)


def is_transient(error: BaseException) -> bool:
    """True for faults that waiting out can cure (checked along the chain of causes)."""
    if isinstance(error, EcomcoreError):
        return False  # our own verdicts (a projection failed, a schema mismatch) are final
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_transient_one(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sqlite3.OperationalError):
        return _sqlite_says_wait(error)
    if isinstance(error, (SqlOperationalError, SqlInterfaceError)):
        original = error.orig
        if isinstance(original, sqlite3.OperationalError):
            return _sqlite_says_wait(original)
        return isinstance(original, _PSYCOPG_TRANSIENT)
    if isinstance(error, _PSYCOPG_TRANSIENT):
        return True
    if isinstance(error, (StoreOperationalError, StoreInterfaceError)):
        cause = error.__cause__
        return _sqlite_says_wait(cause) if isinstance(cause, sqlite3.OperationalError) else True
    return isinstance(error, ConnectionError)


def _sqlite_says_wait(error: sqlite3.Error) -> bool:
    message = str(error).lower()
    return any(word in message for word in _SQLITE_TRANSIENT)


@dataclass
class Backoff:
    """Capped exponential back-off with a little jitter: 0.5 s, 1 s, 2 s, … up to 30 s."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    _next: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        delay = self._next or self.initial
        self._next = min(self.maximum, delay * self.factor)
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = 0.0


class Faults:
    """A worker's faults in a row (the store's, the read models', the broker's): each is
    logged and waited out with capped back-off, and a run that does not follow gives up
    once they have lasted ``give_up_after`` seconds.  Which faults are worth waiting out
    is the caller's to decide (:func:`is_transient`, a broker's faults)."""

    def __init__(
        self,
        log: logging.Logger,
        stop: threading.Event,
        *,
        follow: bool,
        give_up_after: float | None,
        backoff: Backoff | None = None,
    ) -> None:
        self.log, self.stop, self.follow, self.give_up_after = log, stop, follow, give_up_after
        self.backoff = backoff or Backoff()
        self.since: float | None = None

    def wait_out(self, error: BaseException, what: str, give_up: Callable[[str], BaseException]) -> None:
        """Log ``what`` went wrong and wait before the next try (less if ``stop`` is set);
        raise ``give_up(message)`` instead once a run that does not follow has had faults
        for ``give_up_after`` seconds."""
        now = time.monotonic()
        self.since = self.since or now
        if not self.follow and self.give_up_after is not None and now - self.since >= self.give_up_after:
            raise give_up(f"gave up after {now - self.since:.0f} s of faults: {what}") from error
        delay = self.backoff.next_delay()
        self.log.warning("%s; retrying in %.1f s", what, delay)
        self.stop.wait(delay)

    def recovered(self) -> None:
        """A try went through: the next fault starts a new run of them."""
        if self.since is not None:
            self.log.info("recovered after %.1f s", time.monotonic() - self.since)
            self.since = None
            self.backoff.reset()
