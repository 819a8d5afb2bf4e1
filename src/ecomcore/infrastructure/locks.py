"""Writers of one busy aggregate take turns instead of racing (PostgreSQL advisory locks).

A flash sale sends many buyers of one SKU at once, from many processes. Optimistic
concurrency alone makes them race: each loads the StockItem, reserves, and all but one
find at save time that another got there first, then load and try again — the more
buyers, the more wasted work, until callers are handed ``ConcurrencyConflict``.

So a command locks each *contended* aggregate (``Aggregate.contended``: stock items and
coupon campaigns) before it reads it, and holds the lock until its transaction has
committed or failed. The next writer then reads the item only after the previous one's
events are committed: it never works on an old version, nothing is wasted, and commands
on other aggregates run alongside. Locks are PostgreSQL session advisory locks, keyed by
the aggregate id, held on a connection of the store's pool for the command's duration;
reads of the aggregate go on unhindered, and a process that dies loses its locks with its
connection.

Only a command's first lock waits. A further one is only tried: when another command
holds it, the attempt gives up everything it holds and runs again (like a lost race), so
two commands locking the same two items in opposite order never wait for each other.

SQLite has one writer at a time already and no such locks: there ``NoLocks`` does nothing,
and optimistic concurrency with retries does the work.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, OperationalError

log = logging.getLogger(__name__)


def lock_key(aggregate_id: UUID) -> int:
    """The advisory lock key of an aggregate: the id's first 64 bits (a shared key between
    two aggregates would only make them take turns)."""
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


class Locks(Protocol):
    def lock(self, aggregate_id: UUID) -> None: ...
    def release(self) -> None: ...


class NoLocks:
    """Nothing to lock (SQLite, or the in-memory store)."""

    def lock(self, aggregate_id: UUID) -> None:
        return None

    def release(self) -> None:
        return None


class AdvisoryLocks:
    """The advisory locks one attempt at one command holds (PostgreSQL)."""

    def __init__(self, pool: Any) -> None:
        import psycopg  # only PostgreSQL stores need it

        self._broken = (psycopg.OperationalError, psycopg.InterfaceError)
        self._pool = pool
        self._connection: Any = None
        self._held: set[int] = set()

    def lock(self, aggregate_id: UUID) -> None:
        key = lock_key(aggregate_id)
        if key in self._held:
            return
        if not self._held:
            self._execute("SELECT pg_advisory_lock(%s)", key)
        elif not _first(self._execute("SELECT pg_try_advisory_lock(%s)", key)):
            # Waiting here while holding others could deadlock: step back, as after a lost race.
            raise IntegrityError(f"aggregate {aggregate_id} is locked by another command: try again")
        self._held.add(key)

    def _execute(self, statement: str, key: int) -> Any:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._pool.getconn()
            try:
                return self._connection.execute(statement, (key,), prepare=True).fetchone()
            except self._broken as error:
                # A pooled connection a server restart broke: its session, and any lock
                # it held, is gone. Drop it; with none held yet, try once on a new one.
                broken, self._connection = self._connection, None
                broken.close()
                self._pool.putconn(broken)
                if attempt == 2 or self._held:
                    self._held.clear()
                    raise OperationalError(f"lost the connection holding advisory locks: {error}") from error
        raise AssertionError("unreachable")

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        held, self._held = self._held, set()
        try:
            if held:
                connection.execute("SELECT pg_advisory_unlock_all()", prepare=True)
        except Exception:
            # The connection broke: its session, and every lock it held, is gone with it.
            log.debug("releasing advisory locks failed; closing their connection", exc_info=True)
            connection.close()
        finally:
            self._pool.putconn(connection)


def _first(row: Any) -> Any:
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
