"""Projector workers: follow the notification log and keep read models exactly up to date.

Exactly once: each batch of events and the projection's new position are written in
one database transaction, and the position moves only from the value the batch was
read after (compare and set).  A crash loses at most an uncommitted batch, which the
next run reads again; two workers on one projection cannot both apply a batch.

Workers keep going: a transient fault (the database restarting, a dropped connection,
SQLite busy) is logged and retried with capped exponential back-off, resuming from the
stored position; an event a projection cannot apply stops it, naming the event.

Nothing is skipped unseen: each projection reads only its own topics, and for every
stretch it reads, the database also lists the stretch's distinct topics; an event whose
topic names no event class this code knows (written by a newer ecomcore, or tampered with)
stops it like an event it cannot decode, with ``ProjectionFailed`` naming the notification
(its cause a ``StoreCorrupted``).

The runner polls the log in large batches.  It does not rely on LISTEN/NOTIFY: the
``eventsourcing`` recorders do not send it unless database functions are enabled,
which loses tracking rows in 9.5.6.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic
from sqlalchemy import (
    Connection,
    inspect,
)
from sqlalchemy.exc import DBAPIError

from ecomcore import StoreCorrupted
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.renames import former_topics
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import (
    Projection,
    ProjectionFailed,
    ReadModelError,
    SchemaMismatch,
    describe_cause,
)
from ecomcore_projections.faults import Backoff, Faults, is_transient
from ecomcore_projections.read_models import (
    POSITIONS_TABLE,
    REGISTRY,
    UNVERSIONED,
    PositionMoved,
    ReadModels,
    StoredPosition,
    dump,
    ordered_rows,
    pk_first,
    registered,
)

log = logging.getLogger("ecomcore.projections")

class ReadModelsUnavailable(ReadModelError):
    """The store or the read-model database stayed unreachable for longer than the worker waits."""

    code = "store_unavailable"


@dataclass(frozen=True)
class Lag:
    """How far a projection is behind the store head."""

    name: str
    position: int
    head: int
    events_behind: int
    seconds_behind: float


@dataclass(frozen=True)
class Status:
    """A projection's position, lag and schema, as ``ecomcore status`` shows it."""

    name: str
    position: int
    head: int
    events_behind: int
    seconds_behind: float
    schema_version: int | None  # stored; None before the projection first ran
    expected_schema_version: int

    @property
    def schema_ok(self) -> bool:
        return self.schema_version in (None, self.expected_schema_version)


@dataclass
class _Target:
    """One projection instance (with the tables it writes) and the position row it keeps."""

    key: str
    projection: Projection
    topics: list[str]


class Projector:
    """Applies the store's events to projections, batch by batch, exactly once."""

    def __init__(
        self,
        store: EventStore,
        read_models: ReadModels,
        names: Iterable[str] | None = None,
        *,
        batch_size: int = 1000,
        log_interval: float = 10.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.store = store
        self.read_models = read_models
        self.batch_size = batch_size
        self.log_interval = log_interval
        self._targets: dict[str, _Target] = {}
        #: The last position each target was seen at (for logging while a database is down).
        self._seen: dict[str, int] = {}
        self._report = _Reporter(self, log_interval)
        for name in list(names) if names is not None else list(read_models.classes):
            cls = read_models.projection_class(name)
            self._add(name, cls(read_models.tables[name], store))

    @classmethod
    def into(
        cls,
        store: EventStore,
        read_models: ReadModels,
        projection: Projection,
        *,
        key: str,
        batch_size: int = 1000,
    ) -> Projector:
        """A projector of one projection instance into tables of its own (a rebuild's shadow
        tables, an as-of copy), keeping its position under ``key``."""
        projector = cls(store, read_models, names=[], batch_size=batch_size)
        projector._add(key, projection)
        return projector

    def _add(self, key: str, projection: Projection) -> None:
        # Events stored before a class was renamed or moved keep their former topic.
        topics = [
            topic
            for event_type in type(projection).handles
            for topic in (get_topic(event_type), *former_topics(event_type))
        ]
        self._targets[key] = _Target(key, projection, topics)

    @property
    def names(self) -> list[str]:
        return list(self._targets)

    @property
    def projections(self) -> dict[str, Projection]:
        return {key: target.projection for key, target in self._targets.items()}

    # ------------------------------------------------------------------ running

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        follow: bool = False,
        poll_interval: float = 0.5,
        give_up_after: float | None = 60.0,
        backoff: Backoff | None = None,
        create_tables: bool = False,
    ) -> int:
        """Catch up (and with ``follow``, keep following until ``stop`` is set), retrying
        transient faults with capped exponential back-off; returns how many events were applied.

        Only a run that does not follow gives up, after ``give_up_after`` seconds of
        faults in a row, with :class:`ReadModelsUnavailable`.  With ``create_tables`` the
        read-model tables are created first (waiting, like everything else, for a database
        that cannot be reached yet).
        """
        stop = stop or threading.Event()
        faults = Faults(log, stop, follow=follow, give_up_after=give_up_after, backoff=backoff)
        applied = 0
        tables_ready = not create_tables
        sources_checked = False
        log.info("projecting %s", ", ".join(self._targets))
        while not stop.is_set():
            try:
                if not tables_ready:
                    self.read_models.create_tables()
                    tables_ready = True
                    log.info("starting from position(s) %s", self._positions_text())
                if not sources_checked:
                    for target in self._targets.values():
                        self.read_models.refuse_if_kafka_fed(target.key, "a store-fed worker")
                    sources_checked = True
                done = self.catch_up(stop=stop)
            except Exception as error:
                if not is_transient(error):
                    raise
                faults.wait_out(error, describe_cause(error), ReadModelsUnavailable)
                continue
            faults.recovered()
            applied += done
            if not follow:
                break
            if not done:
                stop.wait(poll_interval)
        log.info("%s at position(s) %s", "stopped" if stop.is_set() else "caught up", self._positions_text())
        return applied

    def follow(self, stop: threading.Event, *, poll_interval: float = 0.5) -> int:
        """Catch up, then keep following the log until ``stop`` is set (faults are retried)."""
        return self.run(stop, follow=True, poll_interval=poll_interval)

    def catch_up(
        self,
        progress: Callable[[str, int, int], None] | None = None,
        *,
        until: int | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Apply everything up to the head (as it was when each projection started) or
        ``until``, batch by batch, each in its own transaction; stops between batches
        once ``stop`` is set.  Returns how many events were applied."""
        applied = 0
        for key in self._targets:
            applied += self._catch_up(key, progress, until=until, stop=stop, report=self._report)
            if stop is not None and stop.is_set():
                break
        return applied

    def catch_up_in(self, conn: Connection, key: str, *, until: int | None = None) -> int:
        """Apply everything after ``key``'s position up to the head or ``until`` inside the
        caller's transaction (for a rebuild's last stretch, while the live position is held)."""
        target = self._targets[key]
        recorder = self.store.recorder
        stop = (recorder.max_notification_id() or 0) if until is None else until
        applied = 0
        while True:
            current = self.read_models.position(key, conn)
            if current >= stop:
                return applied
            batch = recorder.select_notifications(current + 1, self.batch_size, stop=stop, topics=target.topics)
            done = len(batch) < self.batch_size
            self._refuse_unknown_topics(key, current + 1, stop if done else batch[-1].id)
            applied += self._apply_in(conn, target, self._decode(key, batch), advance_to=stop if done else None)

    def _catch_up(
        self,
        key: str,
        progress: Callable[[str, int, int], None] | None,
        *,
        until: int | None,
        stop: threading.Event | None,
        report: _Reporter,
    ) -> int:
        target = self._targets[key]
        recorder = self.store.recorder
        applied = 0
        while stop is None or not stop.is_set():
            # Every id up to a head read before selecting is committed and visible (the
            # recorders write under a table lock), so the position can jump to it when
            # the select comes back short: lag then counts only events really not seen.
            head = recorder.max_notification_id() or 0
            end = head if until is None else min(until, head)
            start = self.read_models.position(key) + 1
            batch = (
                recorder.select_notifications(start, self.batch_size, stop=end, topics=target.topics)
                if start <= end
                else []
            )
            done = len(batch) < self.batch_size
            if start <= end:
                self._refuse_unknown_topics(key, start, end if done else batch[-1].id)
            try:
                count = self.apply(key, batch, advance_to=end if done else None)
            except PositionMoved:
                continue  # another worker applied this stretch first: read on from its position
            except _WriteFailed:
                count = self._apply_one_by_one(key, batch)  # find the event the database refuses
            applied += count
            position = self.read_models.position(key)
            self._seen[key] = position
            report.applied(key, count, end)
            if progress:
                progress(key, position, end)
            if done:
                break
        return applied

    def _apply_one_by_one(self, key: str, batch: Sequence[Notification]) -> int:
        applied = 0
        for notification in batch:
            try:
                applied += self.apply(key, [notification])
            except _WriteFailed as failure:
                raise failure.failed from failure.failed.cause
        return applied

    def apply(self, key: str, notifications: Sequence[Notification], *, advance_to: int | None = None) -> int:
        """Apply one batch and the new position in one transaction; events at or below the
        stored position are skipped, so a batch applied twice changes nothing."""
        target = self._targets[key]
        events = self._decode(key, notifications)
        with self.read_models.engine.begin() as conn:
            return self._apply_in(conn, target, events, advance_to=advance_to)

    def _refuse_unknown_topics(self, key: str, start: int, stop: int) -> None:
        """Raise ``ProjectionFailed`` naming the first notification of the stretch whose topic
        names no event class: the projection reads only its own topics, and such an event
        (written by a newer ecomcore, or tampered with) might be one it should handle."""
        unknown = self.store.first_unknown_topic(start, stop)
        if unknown is not None:
            try:
                self.store.event_class_of(unknown)
            except StoreCorrupted as error:
                raise ProjectionFailed(self._targets[key].projection.name, unknown.id, None, error) from error

    def _decode(self, key: str, notifications: Sequence[Notification]) -> list[tuple[int, DomainEvent]]:
        events = []
        for notification in notifications:
            try:
                event = cast(DomainEvent, self.store.mapper.to_domain_event(notification))
                events.append((notification.id, event))
            except Exception as error:
                raise ProjectionFailed(self._targets[key].projection.name, notification.id, None, error) from error
        return events

    def _apply_in(
        self, conn: Connection, target: _Target, events: list[tuple[int, DomainEvent]], *, advance_to: int | None
    ) -> int:
        projection = target.projection
        expected = type(projection).schema_version
        try:
            stored = self.read_models.lock(conn, target.key, expected)
            if stored.schema_version != expected:
                raise SchemaMismatch(target.key, stored.schema_version, expected)
            fresh = [(position, event) for position, event in events if position > stored.position]
            try:
                projection.apply_batch(conn, fresh)
            except DBAPIError as error:
                if is_transient(error):
                    raise
                failed = ProjectionFailed(projection.name, fresh[0][0], fresh[0][1], error)
                if len(fresh) == 1:
                    raise failed from error
                raise _WriteFailed(failed) from error
            new = max([stored.position, *(p for p, _ in fresh), advance_to or 0])
            if new != stored.position:
                self.read_models.set_position(conn, target.key, stored.position, new)
            return len(fresh)
        except BaseException:
            projection.forget()
            raise

    # ------------------------------------------------------------------ lag and status

    def lag(self) -> list[Lag]:
        head = self.store.recorder.max_notification_id() or 0
        return [self._lag(key, head) for key in self._targets]

    def status(self) -> list[Status]:
        """Each projection's position, lag and schema version; changes nothing (a read-model
        database that no worker has written yet shows every projection at position 0)."""
        head = self.store.recorder.max_notification_id() or 0
        started = inspect(self.read_models.engine).has_table(POSITIONS_TABLE)
        found = []
        for key, target in self._targets.items():
            lag = self._lag(key, head) if started else Lag(key, 0, head, head, 0.0)
            stored = self.read_models.stored(key) if started else None
            found.append(
                Status(
                    name=key,
                    position=lag.position,
                    head=head,
                    events_behind=lag.events_behind,
                    seconds_behind=lag.seconds_behind,
                    schema_version=None if stored is None else stored.schema_version,
                    expected_schema_version=type(target.projection).schema_version,
                )
            )
        return found

    def _lag(self, key: str, head: int) -> Lag:
        position = self.read_models.position(key)
        behind = max(0, head - position)
        seconds = 0.0
        if behind:
            newest = self._timestamp(head)
            oldest = self._timestamp(position) if position else None
            if newest and oldest:
                seconds = max(0.0, (newest - oldest).total_seconds())
            elif newest:
                seconds = max(0.0, (datetime.now(UTC) - newest).total_seconds())
        return Lag(name=key, position=position, head=head, events_behind=behind, seconds_behind=seconds)

    def _timestamp(self, notification_id: int) -> datetime | None:
        found = self.store.recorder.select_notifications(notification_id, 1)
        if not found:
            return None
        event = cast(DomainEvent, self.store.mapper.to_domain_event(found[0]))
        return event.timestamp

    def _positions_text(self) -> str:
        """The stored positions, or the last ones this projector saw while a database is down."""
        try:
            positions = {key: self.read_models.position(key) for key in self._targets}
        except Exception as error:
            if not is_transient(error):
                raise
            positions = dict(self._seen)
        return ", ".join(f"{key} {positions.get(key, '?')}" for key in self._targets)


class _WriteFailed(Exception):
    """The database refused a batch's rows; the batch is tried one event at a time to name the event."""

    def __init__(self, failed: ProjectionFailed) -> None:
        super().__init__(str(failed))
        self.failed = failed


class _Reporter:
    """Logs how a catch-up goes, at most once per ``interval`` seconds: events/s and lag."""

    def __init__(self, projector: Projector, interval: float) -> None:
        self.projector, self.interval = projector, interval
        self.started = self.last = time.monotonic()
        self.counts: dict[str, int] = {}
        self.since_last = 0

    def applied(self, key: str, count: int, head: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + count
        self.since_last += count
        now = time.monotonic()
        if now - self.last < self.interval or not self.since_last:
            return
        rate = self.since_last / (now - self.last)
        seen = self.projector._seen
        positions = ", ".join(
            f"{name} {seen.get(name, 0)} (behind {max(0, head - seen.get(name, 0))})" for name in self.counts
        )
        log.info("applied %d events (%.0f events/s); head %d; %s", self.since_last, rate, head, positions)
        self.last, self.since_last = now, 0


__all__ = [
    "POSITIONS_TABLE",
    "REGISTRY",
    "UNVERSIONED",
    "Lag",
    "PositionMoved",
    "Projector",
    "ReadModels",
    "ReadModelsUnavailable",
    "Status",
    "StoredPosition",
    "dump",
    "ordered_rows",
    "pk_first",
    "registered",
]
