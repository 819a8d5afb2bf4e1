"""The event store: the ``eventsourcing`` library's own recorders, chosen by one URL.

``sqlite:///path/to/file`` (embedded default), ``postgresql://user:pw@host:port/db``
(psycopg 3; ``?host=/socket/dir`` works too) or ``memory://`` (the library's
plain-Python recorder: nothing leaves the process, and each store opened on it starts
empty and is gone when it is closed — for tests and trials, not for data you keep).
"""

from __future__ import annotations

import random
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import DatabaseError, IntegrityError
from eventsourcing.utils import Environment, get_topic

from ecomcore.domain.aggregate import Aggregate, Snapshot, project
from ecomcore.domain.errors import EcomcoreError
from ecomcore.infrastructure.settings import Settings

#: The in-memory store: one per ``EventStore`` (so per ``Shop``), never shared.
MEMORY_URL = "memory://"

# What the application needs of the event-sourcing library, named here so that only the
# infrastructure imports it. The library raises these classes itself, so they are the
# library's own (aliases), not wrappers that its raise sites would not know.

#: Saving failed because another writer recorded the same version of an aggregate first
#: (optimistic concurrency): nothing of the transaction was saved; run it again.
StoreConflict = IntegrityError
#: ``EventStore.load`` found no aggregate with that id (at that version).
AggregateNotFound = AggregateNotFoundError


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


class EventStore(Application[UUID]):
    """Records aggregates' events atomically and loads aggregates (snapshots + cache)."""

    name = "ecomcore"
    snapshot_class = Snapshot

    def __init__(self, settings: Settings, snapshotting: tuple[type[Aggregate], ...] = ()) -> None:
        self._settings = settings
        # The library declares these on the class; ours depend on each store's settings.
        self.snapshotting_intervals = {cls: settings.snapshot_interval for cls in snapshotting}  # type: ignore[misc]
        self.snapshotting_projectors = {cls: project for cls in snapshotting}  # type: ignore[misc]
        for attempt in range(1, _SCHEMA_ATTEMPTS + 1):
            try:
                super().__init__()
                return
            except DatabaseError:
                # Processes starting together each run CREATE TABLE IF NOT EXISTS;
                # PostgreSQL can refuse the losers ("tuple concurrently updated").
                # The tables exist once any of them succeeds, so try again.
                factory = getattr(self, "factory", None)
                if factory is not None:
                    factory.close()
                if attempt == _SCHEMA_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.01, 0.05 * attempt))

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Only our own settings configure the store: a stray PERSISTENCE_MODULE or
        # POSTGRES_… variable in the process environment must not redirect it.
        s = self._settings
        values = recorder_env(s.store_url)
        values.update(
            MAPPER_TOPIC="ecomcore.infrastructure.mapper:PydanticMapper",
            CREATE_TABLE="y",
            IS_SNAPSHOTTING_ENABLED="y",
            AGGREGATE_CACHE_MAXSIZE=str(s.aggregate_cache_size) if s.aggregate_cache_size else "",
            SQLITE_LOCK_TIMEOUT=str(s.sqlite_lock_timeout_s),
            POSTGRES_POOL_SIZE=str(s.postgres_pool_size),
            POSTGRES_LOCK_TIMEOUT="30",
            POSTGRES_CONNECT_TIMEOUT=str(s.postgres_connect_timeout_s),
            # A pooled connection that a server restart broke is dropped, not handed out.
            POSTGRES_PRE_PING="y",
        )
        if s.cipher_key:
            values.update(CIPHER_TOPIC="eventsourcing.cryptography:AESCipher", CIPHER_KEY=s.cipher_key)
        if not s.aggregate_cache_size:
            del values["AGGREGATE_CACHE_MAXSIZE"]
        return Environment(name, values)

    def load(self, aggregate_id: UUID, version: int | None = None) -> Aggregate:
        return self.repository.get(aggregate_id, version=version, projector_func=project)

    def current_version(self, aggregate_id: UUID) -> int:
        """The version of the aggregate's latest stored event (0 if it has none), read now."""
        latest = self.recorder.select_events(aggregate_id, desc=True, limit=1)
        return latest[0].originator_version if latest else 0

    def take_snapshot(self, aggregate_id: UUID, version: int | None = None, projector_func: Any = project) -> None:
        try:
            super().take_snapshot(aggregate_id, version, projector_func)
        except IntegrityError:
            # Another process snapshotted the same version first; the snapshot it
            # stored is the same state, and the events are already committed.
            pass
