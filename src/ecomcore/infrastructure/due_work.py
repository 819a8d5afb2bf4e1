"""Which aggregates time may have made due: an index that follows the notification log.

A sweep used to read the whole log and load every checkout, coupon and delivered order
ever recorded, so its cost grew with history.  ``DueWork`` instead keeps one row per
*candidate* — an aggregate that some moment may make due — with that moment:

- a checkout: from ``Checkout.Placed`` at its payment deadline, gone once paid or cancelled;
- a coupon: from ``Coupon.Issued`` at the end of its validity; paused while locked or
  redeemed, resumed when unlocked or reinstated, gone once expired;
- an order: from its first ``Order.ShipmentDelivered`` at that delivery moment (the
  after-sales window is added when asking, since it is a setting); paused while a return
  is open; checked again at the next sweep after a refund, a failed parcel or a rejected
  return (each may change when, or whether, it is delivered); gone once completed or
  cancelled.

The index reads the log incrementally from its own position, only the topics above
(current and former names, ``renames.former_topics``).  On SQL stores it lives in two
small tables of the store's own database, each batch of notifications applied together
with the new position in one transaction, which moves the position only if no one else
moved it meanwhile (processes sharing a store share the index).  On ``memory://`` it
lives in this object.

The index only narrows the search: a sweep loads each candidate and the aggregate's own
rule decides whether it is really due; what the aggregate then says about its next
moment is written back with :meth:`DueWork.reschedule`, guarded so that it never
overwrites what a later event already changed.  A candidate's moment is never later than
the true one (a lower bound), so nothing due is missed; at worst a candidate is loaded
once more than needed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import DatabaseError, Notification

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.order import Order
from ecomcore.domain.renames import former_topics
from ecomcore.infrastructure.store import EventStore, topic_of

__all__ = ["Candidate", "DueKind", "DueWork"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The moment of a candidate to look at in the next sweep, whatever its time.
_CHECK_NEXT_SWEEP = 0
_TABLE = "ecomcore_due_work"
_POSITION_TABLE = "ecomcore_due_work_position"
_NAME = "due_work"
_SCHEMA_ATTEMPTS = 5
_CATCH_UP_ATTEMPTS = 20


class DueKind(StrEnum):
    CHECKOUT = "checkout"
    COUPON = "coupon"
    ORDER = "order"


@dataclass(frozen=True)
class Candidate:
    """An aggregate the index says may be due; ``touched`` guards a later reschedule."""

    kind: DueKind
    aggregate_id: UUID
    touched: int


def micros(moment: datetime) -> int:
    """``moment`` as whole microseconds since 1970 UTC (a naive moment is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


# ---------------------------------------------------------------------------- rules


class _Op(Enum):
    AT_EVENT_FIELD = "at"  # becomes (or stays) a candidate at a moment the event gives
    PAUSE = "pause"  # not due while paused; its moment is kept
    RESUME = "resume"  # due again at its kept moment (next sweep if none was kept)
    CHECK_NEXT_SWEEP = "check"  # look at it in the next sweep
    DROP = "drop"  # never due again


@dataclass(frozen=True)
class _Rule:
    kind: DueKind
    op: _Op
    moment: str = ""  # the event attribute giving the moment (``timestamp`` for the event's own)


_RULES: dict[type[DomainEvent], _Rule] = {
    Checkout.Placed: _Rule(DueKind.CHECKOUT, _Op.AT_EVENT_FIELD, "payment_deadline"),
    Checkout.Paid: _Rule(DueKind.CHECKOUT, _Op.DROP),
    Checkout.Cancelled: _Rule(DueKind.CHECKOUT, _Op.DROP),
    Coupon.Issued: _Rule(DueKind.COUPON, _Op.AT_EVENT_FIELD, "valid_until"),
    Coupon.Locked: _Rule(DueKind.COUPON, _Op.PAUSE),
    Coupon.Unlocked: _Rule(DueKind.COUPON, _Op.RESUME),
    Coupon.Redeemed: _Rule(DueKind.COUPON, _Op.PAUSE),
    Coupon.Reinstated: _Rule(DueKind.COUPON, _Op.RESUME),
    Coupon.Expired: _Rule(DueKind.COUPON, _Op.DROP),
    # The after-sales window runs from when the order became delivered, never before its
    # first delivery: the first delivery's moment is a lower bound of the true one.
    Order.ShipmentDelivered: _Rule(DueKind.ORDER, _Op.AT_EVENT_FIELD, "timestamp"),
    Order.ShipmentFailed: _Rule(DueKind.ORDER, _Op.CHECK_NEXT_SWEEP),
    Order.RefundIssued: _Rule(DueKind.ORDER, _Op.CHECK_NEXT_SWEEP),
    Order.ReturnRequested: _Rule(DueKind.ORDER, _Op.PAUSE),
    Order.ReturnRejected: _Rule(DueKind.ORDER, _Op.CHECK_NEXT_SWEEP),
    Order.Completed: _Rule(DueKind.ORDER, _Op.DROP),
    Order.Cancelled: _Rule(DueKind.ORDER, _Op.DROP),
}

_RULE_BY_TOPIC: dict[str, tuple[type[DomainEvent], _Rule]] = {
    topic: (cls, rule) for cls, rule in _RULES.items() for topic in (topic_of(cls), *former_topics(cls))
}
_TOPICS = sorted(_RULE_BY_TOPIC)


@dataclass(frozen=True)
class _Row:
    kind: DueKind
    at: int
    active: bool
    since: int  # notification id that made it a candidate (orders the answers, as the log did)
    touched: int  # notification id of the last event applied to it


def _apply(row: _Row | None, rule: _Rule, notification_id: int, moment: int) -> _Row | None:
    """The candidate after one event (``moment`` only for ``AT_EVENT_FIELD``)."""
    op, n = rule.op, notification_id
    if op is _Op.DROP:
        return None
    if op is _Op.PAUSE:
        return None if row is None else replace(row, active=False, touched=n)
    if op is _Op.AT_EVENT_FIELD:
        if row is None:
            return _Row(rule.kind, moment, True, n, n)
        return replace(row, at=min(row.at, moment), active=True, touched=n)
    if op is _Op.RESUME:
        if row is None:
            return _Row(rule.kind, _CHECK_NEXT_SWEEP, True, n, n)
        return replace(row, active=True, touched=n)
    if row is None:
        return _Row(rule.kind, _CHECK_NEXT_SWEEP, True, n, n)
    return replace(row, at=_CHECK_NEXT_SWEEP, active=True, touched=n)


# ---------------------------------------------------------------------------- the index


class _PositionMoved(Exception):
    """Another process applied notifications first; read the position again."""


class DueWork:
    """The candidates of time-driven work, kept by following the notification log."""

    def __init__(self, store: EventStore, batch_size: int = 1000) -> None:
        self._store = store
        self._batch_size = batch_size
        self._backend: _Backend = _backend_for(store)
        self._lock = threading.Lock()
        #: Notifications read from the log by this object, for tests and measurements.
        self.notifications_read = 0

    @property
    def position(self) -> int:
        """The id of the last notification the index has applied."""
        return self._backend.position()

    def catch_up(self) -> int:
        """Apply what was recorded since the index's position; returns how many notifications it read."""
        read = conflicts = 0
        with self._lock:
            position = self._backend.position()
            while True:
                batch = self._store.recorder.select_notifications(position + 1, self._batch_size, topics=_TOPICS)
                read += len(batch)
                self.notifications_read += len(batch)
                if not batch:
                    return read
                try:
                    self._backend.apply(position, batch[-1].id, self._changes(batch))
                except _PositionMoved:
                    # Another process applied these first: go on from where it got to.
                    conflicts += 1
                    if conflicts > _CATCH_UP_ATTEMPTS:
                        raise RuntimeError("the due-work index could not catch up with the notification log") from None
                    position = self._backend.position()
                    continue
                position = batch[-1].id
                if len(batch) < self._batch_size:
                    return read

    def due(self, kind: DueKind, not_after: datetime) -> list[Candidate]:
        """Active candidates of ``kind`` whose moment is at or before ``not_after``, as the log first named them.

        Call :meth:`catch_up` first to see what was recorded since.
        """
        return self._backend.due(kind, micros(not_after))

    def reschedule(self, candidate: Candidate, at: datetime | None) -> None:
        """What the aggregate said once loaded: its next moment, or ``None`` if it will
        not become due again by time alone.  Ignored if an event touched it meanwhile."""
        self._backend.reschedule(candidate, None if at is None else micros(at))

    def _changes(self, batch: Sequence[Notification]) -> Iterator[tuple[str, _Rule, int, int]]:
        """(aggregate id, rule, notification id, moment) for each notification of the batch."""
        for notification in batch:
            _, rule = _RULE_BY_TOPIC[notification.topic]
            moment = 0
            if rule.op is _Op.AT_EVENT_FIELD:
                event = self._store.mapper.to_domain_event(notification)
                moment = micros(cast(datetime, getattr(event, rule.moment)))
            yield str(notification.originator_id), rule, notification.id, moment


def _fold(
    rows: dict[str, _Row | None], changes: Iterable[tuple[str, _Rule, int, int]]
) -> dict[str, _Row | None]:
    """Apply ``changes`` in order to ``rows`` (the candidates before, ``None`` if absent);
    returns the new state of every aggregate the changes name."""
    after: dict[str, _Row | None] = {}
    for aggregate_id, rule, notification_id, moment in changes:
        before = after[aggregate_id] if aggregate_id in after else rows.get(aggregate_id)
        after[aggregate_id] = _apply(before, rule, notification_id, moment)
    return after


# ---------------------------------------------------------------------------- backends


class _Backend:
    def position(self) -> int:
        raise NotImplementedError

    def apply(self, old_position: int, new_position: int, changes: Iterable[tuple[str, _Rule, int, int]]) -> None:
        raise NotImplementedError

    def due(self, kind: DueKind, not_after: int) -> list[Candidate]:
        raise NotImplementedError

    def reschedule(self, candidate: Candidate, at: int | None) -> None:
        raise NotImplementedError


class _MemoryBackend(_Backend):
    def __init__(self) -> None:
        self._position = 0
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()

    def position(self) -> int:
        return self._position

    def apply(self, old_position: int, new_position: int, changes: Iterable[tuple[str, _Rule, int, int]]) -> None:
        with self._lock:
            if self._position != old_position:
                raise _PositionMoved
            after = _fold(cast(dict[str, _Row | None], self._rows), changes)
            for aggregate_id, row in after.items():
                if row is None:
                    self._rows.pop(aggregate_id, None)
                else:
                    self._rows[aggregate_id] = row
            self._position = new_position

    def due(self, kind: DueKind, not_after: int) -> list[Candidate]:
        with self._lock:
            found = [
                (row.since, Candidate(kind, UUID(aggregate_id), row.touched))
                for aggregate_id, row in self._rows.items()
                if row.kind is kind and row.active and row.at <= not_after
            ]
        return [candidate for _, candidate in sorted(found, key=lambda pair: pair[0])]

    def reschedule(self, candidate: Candidate, at: int | None) -> None:
        key = str(candidate.aggregate_id)
        with self._lock:
            row = self._rows.get(key)
            if row is None or row.touched != candidate.touched:
                return
            if at is None:
                del self._rows[key]
            else:
                self._rows[key] = replace(row, at=at, active=True)


class _SqlBackend(_Backend):
    """The same index in two tables of the store's own database (SQLite or PostgreSQL)."""

    def __init__(self, datastore: Any, postgres: bool) -> None:
        self._datastore = datastore
        self._postgres = postgres
        self._ready = False

    def _sql(self, statement: str) -> str:
        return statement if self._postgres else statement.replace("%s", "?")

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Any]:
        self._create_tables()
        with self._datastore.transaction(commit=commit) as cursor:
            yield cursor

    def _create_tables(self) -> None:
        if self._ready:
            return
        statements: list[tuple[str, tuple[str, ...]]] = [
            (
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (aggregate_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "at BIGINT NOT NULL, active SMALLINT NOT NULL, since BIGINT NOT NULL, touched BIGINT NOT NULL)",
                (),
            ),
            (f"CREATE INDEX IF NOT EXISTS {_TABLE}_due ON {_TABLE} (kind, active, at)", ()),
            (f"CREATE TABLE IF NOT EXISTS {_POSITION_TABLE} (name TEXT PRIMARY KEY, position BIGINT NOT NULL)", ()),
            (
                self._sql(
                    f"INSERT INTO {_POSITION_TABLE} (name, position) VALUES (%s, 0) ON CONFLICT (name) DO NOTHING"
                ),
                (_NAME,),
            ),
        ]
        for attempt in range(1, _SCHEMA_ATTEMPTS + 1):
            try:
                with self._datastore.transaction(commit=True) as cursor:
                    for statement, params in statements:
                        cursor.execute(statement, params)
                self._ready = True
                return
            except DatabaseError:
                # Processes starting together may race on CREATE … IF NOT EXISTS (PostgreSQL).
                if attempt == _SCHEMA_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.01, 0.05 * attempt))

    @staticmethod
    def _column(row: Any, index: int, name: str) -> Any:
        return row[name] if isinstance(row, dict) else row[index]

    def position(self) -> int:
        with self._transaction(commit=False) as cursor:
            cursor.execute(self._sql(f"SELECT position FROM {_POSITION_TABLE} WHERE name = %s"), (_NAME,))
            return int(self._column(cursor.fetchone(), 0, "position"))

    def apply(self, old_position: int, new_position: int, changes: Iterable[tuple[str, _Rule, int, int]]) -> None:
        changes = list(changes)
        ids = sorted({aggregate_id for aggregate_id, *_ in changes})
        with self._transaction(commit=True) as cursor:
            # Moving the position first takes the write lock, so two catch-ups never interleave.
            cursor.execute(
                self._sql(f"UPDATE {_POSITION_TABLE} SET position = %s WHERE name = %s AND position = %s"),
                (new_position, _NAME, old_position),
            )
            if not self._moved(cursor):
                raise _PositionMoved
            before: dict[str, _Row | None] = {}
            columns = "aggregate_id, kind, at, active, since, touched"
            if self._postgres:
                cursor.execute(f"SELECT {columns} FROM {_TABLE} WHERE aggregate_id = ANY(%s)", (ids,))
            else:
                marks = ", ".join("?" for _ in ids)
                cursor.execute(f"SELECT {columns} FROM {_TABLE} WHERE aggregate_id IN ({marks})", ids)
            for found in cursor.fetchall():
                values = [self._column(found, i, name) for i, name in enumerate(columns.split(", "))]
                before[values[0]] = _Row(DueKind(values[1]), int(values[2]), bool(values[3]), *map(int, values[4:]))
            after = _fold(before, changes)
            gone = [(aggregate_id,) for aggregate_id, row in after.items() if row is None and aggregate_id in before]
            kept = [
                (aggregate_id, row.kind.value, row.at, int(row.active), row.since, row.touched)
                for aggregate_id, row in after.items()
                if row is not None
            ]
            if gone:
                cursor.executemany(self._sql(f"DELETE FROM {_TABLE} WHERE aggregate_id = %s"), gone)
            if kept:
                cursor.executemany(
                    self._sql(
                        f"INSERT INTO {_TABLE} ({columns}) VALUES (%s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (aggregate_id) DO UPDATE SET kind = excluded.kind, at = excluded.at, "
                        "active = excluded.active, since = excluded.since, touched = excluded.touched"
                    ),
                    kept,
                )

    def _moved(self, cursor: Any) -> bool:
        if self._postgres:
            return bool(cursor.rowcount == 1)
        cursor.execute("SELECT changes()")
        return bool(cursor.fetchone()[0] == 1)

    def due(self, kind: DueKind, not_after: int) -> list[Candidate]:
        with self._transaction(commit=False) as cursor:
            cursor.execute(
                self._sql(
                    f"SELECT aggregate_id, touched FROM {_TABLE} "
                    "WHERE kind = %s AND active = 1 AND at <= %s ORDER BY since"
                ),
                (kind.value, not_after),
            )
            rows = cursor.fetchall()
        return [
            Candidate(kind, UUID(self._column(row, 0, "aggregate_id")), int(self._column(row, 1, "touched")))
            for row in rows
        ]

    def reschedule(self, candidate: Candidate, at: int | None) -> None:
        key = (str(candidate.aggregate_id), candidate.touched)
        with self._transaction(commit=True) as cursor:
            if at is None:
                cursor.execute(self._sql(f"DELETE FROM {_TABLE} WHERE aggregate_id = %s AND touched = %s"), key)
            else:
                cursor.execute(
                    self._sql(f"UPDATE {_TABLE} SET at = %s, active = 1 WHERE aggregate_id = %s AND touched = %s"),
                    (at, *key),
                )


def _backend_for(store: EventStore) -> _Backend:
    datastore = getattr(store.recorder, "datastore", None)
    if datastore is None:
        return _MemoryBackend()
    return _SqlBackend(datastore, postgres=type(datastore).__module__.startswith("eventsourcing.postgres"))
