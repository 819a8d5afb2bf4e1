"""The event store: the ``eventsourcing`` library's own recorders, chosen by one URL.

``sqlite:///path/to/file`` (embedded default), ``postgresql://user:pw@host:port/db``
(psycopg 3; ``?host=/socket/dir`` works too) or ``memory://`` (the library's
plain-Python recorder: nothing leaves the process, and each store opened on it starts
empty and is gone when it is closed — for tests and trials, not for data you keep).
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import DatabaseError, IntegrityError, StoredEvent
from eventsourcing.utils import Environment, get_topic

from ecomcore.domain.aggregate import Aggregate, DomainEvent, Snapshot, project
from ecomcore.domain.errors import EcomcoreError, NotFound, StoreCorrupted, StoreUnavailable
from ecomcore.infrastructure.failures import store_errors, typed_store_error
from ecomcore.infrastructure.key_check import check_cipher_key
from ecomcore.infrastructure.locks import AdvisoryLocks, Locks, NoLocks
from ecomcore.infrastructure.mapper import event_class
from ecomcore.infrastructure.settings import Settings

#: The in-memory store: one per ``EventStore`` (so per ``Shop``), never shared.
MEMORY_URL = "memory://"

# What the application needs of the event-sourcing library, named here so that only the
# infrastructure imports it. The library raises these classes itself, so they are the
# library's own (aliases), not wrappers that its raise sites would not know.

#: Saving failed because another writer recorded the same version of an aggregate first
#: (optimistic concurrency): nothing of the transaction was saved; run it again.
StoreConflict = IntegrityError
#: The library's "no aggregate with that id"; ``EventStore.load`` raises ``NotFound`` instead.
AggregateNotFound = AggregateNotFoundError

__all__ = [
    "MEMORY_URL",
    "AggregateCache",
    "AggregateNotFound",
    "EventStore",
    "StoreConflict",
    "StoreUrlError",
    "store_errors",
    "topic_of",
]


A = TypeVar("A", bound=Aggregate)


def topic_of(cls: type) -> str:
    """The topic the store records ``cls`` (an event or aggregate class) under."""
    return get_topic(cls)


class StoreUrlError(EcomcoreError):
    code = "invalid_store_url"


def recorder_env(url: str) -> dict[str, str]:
    """Translate a store URL into the ``eventsourcing`` persistence settings."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "memory":
        if url != MEMORY_URL:
            # A name or path would suggest that two stores opened on it share their
            # events; they never do, so only the bare URL is accepted.
            raise StoreUrlError(f"store URL {url!r} should be just {MEMORY_URL!r}: an in-memory store has no name")
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        path = unquote(url.split("://", 1)[1])
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise StoreUrlError(f"store URL {url!r} names no SQLite file (use sqlite:///path/to/file)")
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}
    if scheme in ("postgres", "postgresql"):
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "localhost"])[0]
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise StoreUrlError(f"store URL {url!r} names no database")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(parts.port or query.get("port", ["5432"])[0]),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
        }
    raise StoreUrlError(f"store URL {url!r} is none of sqlite:///…, postgresql://… or {MEMORY_URL}")


def is_memory(url: str) -> bool:
    return urlsplit(url).scheme == "memory"


def is_postgres(url: str) -> bool:
    return urlsplit(url).scheme.split("+")[0] in ("postgres", "postgresql")


_SCHEMA_ATTEMPTS = 5


def _crossed(version: int, saved: int, interval: int) -> bool:
    """Whether saving up to ``saved`` events that end at ``version`` passed a multiple of ``interval``."""
    return version // interval > max(0, version - saved) // interval


class AggregateCache:
    """Aggregates as this process last saved or loaded them, lent out one borrower at a time.

    ``take`` removes the aggregate, so two commands running at once in one process never
    share an object (the second loads its own from the store), and nothing is copied: the
    borrower hands it back after a save, or unchanged after a refusal, with ``put``. An
    aggregate a failed command changed is never handed back, so it cannot spoil the cache.
    Least recently used aggregates make room for new ones beyond ``maxsize``.
    """

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._aggregates: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, aggregate_id: UUID) -> Aggregate | None:
        with self._lock:
            return self._aggregates.pop(aggregate_id, None)

    def put(self, aggregate: Aggregate) -> None:
        if self._maxsize <= 0 or aggregate.has_pending_events:
            return
        with self._lock:
            self._aggregates[aggregate.id] = aggregate
            self._aggregates.move_to_end(aggregate.id)
            while len(self._aggregates) > self._maxsize:
                self._aggregates.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._aggregates.clear()

    def __len__(self) -> int:
        return len(self._aggregates)


class EventStore(Application[UUID]):
    """Records aggregates' events atomically and loads aggregates (snapshots + cache)."""

    name = "ecomcore"
    snapshot_class = Snapshot

    def __init__(self, settings: Settings, snapshotting: tuple[type[Aggregate], ...] = ()) -> None:
        self._settings = settings
        # The library declares these on the class; ours depend on each store's settings.
        self.snapshotting_intervals = {cls: settings.snapshot_interval for cls in snapshotting}  # type: ignore[misc]
        self.snapshotting_projectors = {cls: project for cls in snapshotting}  # type: ignore[misc]
        #: The library's own cache deep-copies every aggregate it hands out (a long
        #: StockItem costs more to copy than to save); ours lends them instead.
        self.cache = AggregateCache(settings.aggregate_cache_size)
        self._takes_locks = is_postgres(settings.store_url)
        #: Topics of the log already found to name an event class.
        self._known_topics: set[str] = set()
        with store_errors():
            self._open()

    def _open(self) -> None:
        for attempt in range(1, _SCHEMA_ATTEMPTS + 1):
            try:
                super().__init__()
                # Before anything is written: a wrong, missing or unexpected key is refused.
                if not is_memory(self._settings.store_url):
                    check_cipher_key(self.recorder, self.mapper.cipher, postgres=self._takes_locks)
                return
            except DatabaseError as error:
                self._close_factory()
                # Processes starting together each run CREATE TABLE IF NOT EXISTS;
                # PostgreSQL can refuse the losers ("tuple concurrently updated").
                # The tables exist once any of them succeeds, so try again. A store that
                # cannot be reached or read is reported at once, not retried.
                if attempt == _SCHEMA_ATTEMPTS or isinstance(
                    typed_store_error(error), StoreUnavailable | StoreCorrupted
                ):
                    raise
                time.sleep(random.uniform(0.01, 0.05 * attempt))
            except BaseException:
                self._close_factory()
                raise

    def _close_factory(self) -> None:
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.close()

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Only our own settings configure the store: a stray PERSISTENCE_MODULE or
        # POSTGRES_… variable in the process environment must not redirect it.
        s = self._settings
        values = recorder_env(s.store_url)
        values.update(
            MAPPER_TOPIC="ecomcore.infrastructure.mapper:PydanticMapper",
            CREATE_TABLE="y",
            IS_SNAPSHOTTING_ENABLED="y",
            SQLITE_LOCK_TIMEOUT=str(s.sqlite_lock_timeout_s),
            POSTGRES_POOL_SIZE=str(s.postgres_pool_size),
            POSTGRES_LOCK_TIMEOUT="30",
            POSTGRES_CONNECT_TIMEOUT=str(s.postgres_connect_timeout_s),
            # No pre-ping: it costs a round trip each time a connection leaves the pool
            # (five in a checkout). A connection a server restart broke fails its first
            # statement instead, and the recorder tries again on another.
        )
        if s.cipher_key is not None:
            values.update(
                CIPHER_TOPIC="eventsourcing.cryptography:AESCipher", CIPHER_KEY=s.cipher_key.get_secret_value()
            )
        return Environment(name, values)

    def locks(self) -> Locks:
        """Locks for one attempt at one command, so writers of a contended aggregate take turns."""
        if self._takes_locks:
            return AdvisoryLocks(self.recorder.datastore.pool)  # type: ignore[attr-defined]
        return NoLocks()

    def load(self, aggregate_id: UUID, version: int | None = None) -> Aggregate:
        """The aggregate rebuilt from the store (its latest snapshot, if any, and the events
        after it), as it is now or as it was at ``version``; a new object, the caller's own.

        ``NotFound`` when there is no such aggregate, or it never reached ``version``.
        """
        start: Aggregate | None = None
        if self.snapshots is not None:
            for snapshot in self.snapshots.get(aggregate_id, desc=True, limit=1, lte=version):
                start = _restored(cast(Snapshot, snapshot))
        events = self._events_after(aggregate_id, start.version if start else None, lte=version)
        found = project(start, _in_sequence(aggregate_id, start, events))
        if found is None:
            raise NotFound(f"no aggregate with id {aggregate_id}")
        if version is not None and found.version != version:
            raise NotFound(
                f"{type(found).__name__} {aggregate_id} has no version {version}: its latest is {found.version}"
            )
        return found

    def borrow(self, cls: type[A], aggregate_id: UUID) -> Aggregate | None:
        """The aggregate as it is now, for one command: ``None`` if it does not exist.

        From the cache when this process has it, brought up to date with the events other
        writers stored since (one query); else rebuilt from the store, asking for a snapshot
        only when ``cls`` takes snapshots. Hand it back with ``give_back``. The result may be
        of another class than ``cls`` when the id names another aggregate.

        The events must follow each other version by version from where the aggregate (or
        its snapshot) stands: a gap raises ``StoreCorrupted`` rather than load a wrong state.
        """
        aggregate = self.cache.take(aggregate_id)
        if aggregate is not None:
            return project(
                aggregate, _in_sequence(aggregate_id, aggregate, self._events_after(aggregate_id, aggregate.version))
            )
        gt: int | None = None
        start: Aggregate | None = None
        if cls in self.snapshotting_intervals and self.snapshots is not None:
            for snapshot in self.snapshots.get(aggregate_id, desc=True, limit=1):
                start = _restored(cast(Snapshot, snapshot))
                gt = start.version
        return project(start, _in_sequence(aggregate_id, start, self._events_after(aggregate_id, gt)))

    def _events_after(self, aggregate_id: UUID, version: int | None, lte: int | None = None) -> Iterator[DomainEvent]:
        return cast("Iterator[DomainEvent]", self.events.get(aggregate_id, gt=version, lte=lte))

    def first_unknown_topic(self, start: int, stop: int) -> Any | None:
        """The first notification from ``start`` to ``stop`` (inclusive) whose topic names no
        event class, or ``None``. One query for the distinct topics of the stretch, done by
        the database, so a projector reading only its own topics skips nothing unseen."""
        topics = self._topics_between(start, stop) - self._known_topics
        for topic in sorted(topics):
            try:
                event_class(topic, None)
            except StoreCorrupted:
                return self.recorder.select_notifications(start, 1, stop=stop, topics=[topic])[0]
            self._known_topics.add(topic)
        return None

    def _topics_between(self, start: int, stop: int) -> set[str]:
        recorder: Any = self.recorder
        table = getattr(recorder, "events_table_name", None)
        datastore = getattr(recorder, "datastore", None)
        if table is None or datastore is None:  # the in-memory recorder: read the stretch
            return {n.topic for n in recorder.select_notifications(start, stop - start + 1, stop=stop)}
        if is_postgres(self._settings.store_url):
            from psycopg import sql

            query = sql.SQL("SELECT DISTINCT topic FROM {} WHERE notification_id BETWEEN %s AND %s").format(
                sql.Identifier(datastore.schema, table)
            )
            with datastore.get_connection() as connection:
                return {row["topic"] for row in connection.execute(query, (start, stop)).fetchall()}
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT DISTINCT topic FROM {table} WHERE rowid BETWEEN ? AND ?", (start, stop))
            return {row[0] for row in cursor.fetchall()}

    def event_class_of(self, stored_event: StoredEvent) -> type[DomainEvent]:
        """The event class a stored event's topic names; ``StoreCorrupted`` naming the event
        (and its notification id) when the topic names none."""
        return event_class(stored_event.topic, stored_event)

    def give_back(self, aggregates: Iterable[Aggregate]) -> None:
        """Return borrowed aggregates to the cache: saved, or unchanged (no pending events)."""
        for aggregate in aggregates:
            self.cache.put(aggregate)

    def current_version(self, aggregate_id: UUID) -> int:
        """The version of the aggregate's latest stored event (0 if it has none), read now."""
        latest = self.recorder.select_events(aggregate_id, desc=True, limit=1)
        return latest[0].originator_version if latest else 0

    def save(self, *aggregates: Aggregate, **kwargs: Any) -> list[Any]:  # type: ignore[override]
        """Store the aggregates' pending events in one transaction (all or nothing).

        The library's ``save`` also checks each object against its protocols and, for a
        snapshot, loads the aggregate again from the store; the aggregates here are at hand.
        """
        pending = [(aggregate, aggregate.collect_events()) for aggregate in aggregates]
        recordings = self.events.put([event for _, events in pending for event in events])
        for aggregate, events in pending:
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval and _crossed(aggregate.version, len(events), interval):
                self._snapshot(aggregate)
        return recordings

    def _snapshot(self, aggregate: Aggregate) -> None:
        assert self.snapshots is not None
        try:
            self.snapshots.put([Snapshot.take(aggregate)])
        except IntegrityError:
            pass  # another process stored the same version's snapshot first: the same state

    def take_snapshot(self, aggregate_id: UUID, version: int | None = None, projector_func: Any = project) -> None:
        try:
            super().take_snapshot(aggregate_id, version, projector_func)
        except IntegrityError:
            # Another process snapshotted the same version first; the snapshot it
            # stored is the same state, and the events are already committed.
            pass


def _in_sequence(aggregate_id: UUID, start: Aggregate | None, events: Iterable[DomainEvent]) -> Iterator[DomainEvent]:
    """``events`` as they come, checked to carry the versions after ``start``'s one by one."""
    expected = (start.version if start is not None else 0) + 1
    for event in events:
        if event.originator_version != expected:
            raise StoreCorrupted(
                f"version {expected} is missing: the stored events go on at v{event.originator_version}",
                aggregate_id=aggregate_id,
                version=expected,
            )
        expected += 1
        yield event


def _restored(snapshot: Snapshot) -> Aggregate:
    try:
        return snapshot.restore()
    except Exception as error:  # an unknown aggregate topic, or state that no longer fits
        raise StoreCorrupted(
            f"cannot restore the snapshot of {snapshot.topic}: {type(error).__name__}: {error}",
            aggregate_id=snapshot.originator_id,
            version=snapshot.originator_version,
            topic=snapshot.topic,
        ) from error
