"""What a failure of the store means for the caller: the one place where the event-sourcing
library's, SQLAlchemy's and the drivers' errors become ecomcore's typed errors.

- ``StoreUnavailable``: the server cannot be reached, went away or is restarting, the disk
  is full, SQLite stayed locked past its timeout — nothing was stored; try again later;
- ``StoreCorrupted``: what is stored cannot be read as ecomcore wrote it (an SQLite file
  that is not a database or is malformed, an unknown topic, an undecodable event);
- ``NotFound``: the library found no aggregate with the id asked for;
- ``StoreError``: any other fault of the database (a value it refuses, a missing table).

The same failure is the same typed error on SQLite and PostgreSQL, and the original is
always kept as its ``__cause__``. Optimistic-concurrency conflicts are not mapped here:
``unit_of_work.transact`` catches them first, as its signal to run a command again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import MapperDeserialisationError, PersistenceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from eventsourcing.utils import TopicError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import InterfaceError as SqlInterfaceError
from sqlalchemy.exc import OperationalError as SqlOperationalError
from sqlalchemy.exc import TimeoutError as SqlPoolTimeout

from ecomcore.domain.errors import EcomcoreError, NotFound, StoreCorrupted, StoreError, StoreUnavailable

try:  # the PostgreSQL driver is optional: a SQLite-only install has none
    import psycopg
except ImportError:  # pragma: no cover - psycopg comes with the postgres extra
    psycopg = None  # type: ignore[assignment]

__all__ = ["store_errors", "typed_store_error"]

#: Words of SQLite's OperationalError that mean "not now" rather than "never".
_SQLITE_UNAVAILABLE = ("locked", "busy", "disk i/o", "full", "unable to open", "readonly", "read-only")
#: Words of SQLite's DatabaseError that mean the file is not a sound database.
_SQLITE_CORRUPTED = ("not a database", "malformed", "corrupt")


@contextmanager
def store_errors() -> Iterator[None]:
    """Raise the library's and the database's errors as ecomcore's typed errors.

    ecomcore's own errors pass as they are, and so does anything that is no fault of the
    store (a bug shows its own traceback).
    """
    try:
        yield
    except EcomcoreError:
        raise
    except Exception as error:
        typed = typed_store_error(error)
        if typed is None:
            raise
        raise typed from error


def typed_store_error(error: BaseException) -> StoreError | NotFound | None:
    """The typed error ``error`` (a library, SQLAlchemy or driver error) means, or ``None``
    when it is no failure of the store."""
    if isinstance(error, AggregateNotFoundError):
        return NotFound(f"not found: {_first_line(error)}")
    if isinstance(error, (MapperDeserialisationError, TopicError)):
        return StoreCorrupted(f"cannot read a stored event: {_first_line(error)}")
    kind = _kind(error)
    if kind is None:
        return None
    what = {
        StoreUnavailable: "the store is unavailable",
        StoreCorrupted: "the store is damaged",
        StoreError: "the store failed",
    }[kind]
    return kind(f"{what}: {_first_line(_driver_error(error) or error)}")


def _kind(error: BaseException) -> type[StoreError] | None:
    # The driver's own error, where there is one, says most exactly what happened.
    driver = _driver_error(error)
    if isinstance(driver, sqlite3.Error):
        return _sqlite_kind(driver)
    if psycopg is not None and isinstance(driver, psycopg.Error):
        # PoolTimeout, refused or dropped connections, admin shutdown, disk full (53100)…
        unavailable = isinstance(driver, (psycopg.OperationalError, psycopg.InterfaceError))
        return StoreUnavailable if unavailable else StoreError
    for current in _chain(error):
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return StoreUnavailable
        if isinstance(
            current,
            (
                LibraryOperationalError,
                LibraryInterfaceError,
                SqlOperationalError,
                SqlInterfaceError,
                SqlPoolTimeout,
                DisconnectionError,
                ConnectionError,
            ),
        ):
            return StoreUnavailable
    if any(isinstance(current, (PersistenceError, DBAPIError)) for current in _chain(error)):
        return StoreError
    return None


def _sqlite_kind(error: sqlite3.Error) -> type[StoreError]:
    message = str(error).lower()
    if isinstance(error, sqlite3.OperationalError) and any(word in message for word in _SQLITE_UNAVAILABLE):
        return StoreUnavailable
    if any(word in message for word in _SQLITE_CORRUPTED):
        return StoreCorrupted
    return StoreError


def _driver_error(error: BaseException) -> BaseException | None:
    for current in _chain(error):
        # SQLAlchemy keeps the driver's error in ``orig``; the library chains it as the cause.
        for candidate in (current, getattr(current, "orig", None)):
            if _is_driver_error(candidate):
                return candidate
    return None


def _is_driver_error(error: object) -> bool:
    return isinstance(error, sqlite3.Error) or (psycopg is not None and isinstance(error, psycopg.Error))


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
