"""Projector workers: follow the notification log and keep read models exactly up to date.

Exactly once: each batch of events and the projection's new position are written in
one database transaction, and the position moves only from the value the batch was
read after (compare and set).  A crash loses at most an uncommitted batch, which the
next run reads again; two workers on one projection cannot both apply a batch.

The runner polls the log in large batches.  It does not rely on LISTEN/NOTIFY: the
``eventsourcing`` recorders do not send it unless database functions are enabled,
which loses tracking rows in 9.5.6.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ecomcore_projections.base import Projection, ProjectionError, live_name, shadow_name
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from ecomcore.infrastructure.catalogue import sqlalchemy_url
from ecomcore.infrastructure.store import EventStore

#: The projections ``ecomcore project`` and ``ecomcore rebuild`` know, by name.
REGISTRY: dict[str, str] = {
    "order_status": "ecomcore_projections.order_status:OrderStatusProjection",
    "stock": "ecomcore_projections.stock:StockProjection",
    "reconciliation": "ecomcore_projections.reconciliation:ReconciliationProjection",
}

POSITIONS_TABLE = "rm_projection_positions"


def registered() -> dict[str, type[Projection]]:
    """Every registered projection class, by name."""
    found = {}
    for name, path in REGISTRY.items():
        module, _, attribute = path.partition(":")
        found[name] = getattr(importlib.import_module(module), attribute)
    return found


class UnknownProjection(ValueError):
    pass


@dataclass(frozen=True)
class Lag:
    """How far a projection is behind the store head."""

    name: str
    position: int
    head: int
    events_behind: int
    seconds_behind: float


class ReadModels:
    """The read-model database: the live tables of every projection and their positions.

    Default URL: the store's own database (its own tables, named ``rm_*``).
    """

    def __init__(self, url: str, projections: Mapping[str, type[Projection]] | None = None) -> None:
        self.url = url
        self.engine: Engine = create_engine(sqlalchemy_url(url))
        self.classes = dict(projections) if projections is not None else registered()
        self.metadata = MetaData()
        self.positions = _positions_table(self.metadata)
        self.tables = {name: cls.define_tables(self.metadata, live_name) for name, cls in self.classes.items()}
        _create_all(self.engine, self.metadata)

    def dispose(self) -> None:
        self.engine.dispose()

    def projection_class(self, name: str) -> type[Projection]:
        try:
            return self.classes[name]
        except KeyError:
            raise UnknownProjection(f"no projection named {name!r}; known: {', '.join(self.classes)}") from None

    def position(self, name: str, conn: Connection | None = None) -> int:
        if conn is None:
            with self.engine.connect() as own:
                return self.position(name, own)
        found = conn.execute(select(self.positions.c.position).where(self.positions.c.name == name)).scalar()
        return int(found or 0)

    def rows(self, name: str, conn: Connection, tables: Mapping[str, Table] | None = None) -> dict[str, list[tuple]]:
        """Every row of a projection's tables, ordered by primary key (for comparisons)."""
        return {logical: list(_ordered_rows(conn, table)) for logical, table in (tables or self.tables[name]).items()}


class Projector:
    """Applies the store's events to projections, batch by batch, exactly once."""

    def __init__(
        self,
        store: EventStore,
        read_models: ReadModels,
        names: Iterable[str] | None = None,
        *,
        batch_size: int = 1000,
    ) -> None:
        self.store = store
        self.read_models = read_models
        names = list(names) if names is not None else list(read_models.classes)
        self.projections: dict[str, Projection] = {
            name: read_models.projection_class(name)(read_models.tables[name], store) for name in names
        }
        self.batch_size = batch_size

    def catch_up(self, progress: Callable[[str, int, int], None] | None = None) -> int:
        """Apply everything up to the head (as it was when each projection started); returns how many."""
        return sum(self._catch_up(name, progress) for name in self.projections)

    def follow(
        self,
        stop: threading.Event,
        *,
        poll_interval: float = 0.5,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Catch up, then keep following the log until ``stop`` is set."""
        while not stop.is_set():
            applied = self.catch_up()
            if on_batch and applied:
                on_batch(applied)
            if not applied:
                stop.wait(poll_interval)

    def lag(self) -> list[Lag]:
        head = self.store.recorder.max_notification_id() or 0
        return [self._lag(name, head) for name in self.projections]

    # ------------------------------------------------------------------ one projection

    def _catch_up(
        self,
        name: str,
        progress: Callable[[str, int, int], None] | None,
        *,
        until: int | None = None,
        label: str | None = None,
    ) -> int:
        """Apply batches, each in its own transaction (memory stays flat), up to the head or ``until``."""
        projection = self.projections[name]
        recorder = self.store.recorder
        topics = _topics(projection)
        applied = 0
        while True:
            # Every id up to a head read before selecting is committed and visible (the
            # recorders write under a table lock), so the position can jump to it when
            # the select comes back short: lag then counts only events really not seen.
            head = recorder.max_notification_id() or 0
            stop = head if until is None else min(until, head)
            start = self.read_models.position(name) + 1
            batch = recorder.select_notifications(start, self.batch_size, stop=stop, topics=topics) if start <= stop else []
            done = len(batch) < self.batch_size
            try:
                applied += self.apply(name, batch, advance_to=stop if done else None)
            except PositionMoved:
                continue  # another worker applied this stretch first: read on from its position
            if progress:
                progress(label or name, self.read_models.position(name), stop)
            if done:
                return applied

    def apply(self, name: str, notifications: list[Notification], *, advance_to: int | None = None) -> int:
        """Apply one batch and the new position in one transaction; events at or below the
        stored position are skipped, so a batch applied twice changes nothing."""
        projection = self.projections[name]
        events = [(n.id, self.store.mapper.to_domain_event(n)) for n in notifications]
        try:
            with self.read_models.engine.begin() as conn:
                current = _lock_position(conn, self.read_models.positions, name)
                fresh = [(position, event) for position, event in events if position > current]
                for position, event in fresh:
                    try:
                        projection.apply(conn, event, position)
                    except Exception as error:
                        raise ProjectionError(name, position, event, error) from error
                new = max([current, *(p for p, _ in fresh), advance_to or 0])
                if new != current:
                    _set_position(conn, self.read_models.positions, name, current, new)
                return len(fresh)
        except BaseException:
            projection.forget()
            raise

    def _lag(self, name: str, head: int) -> Lag:
        position = self.read_models.position(name)
        behind = max(0, head - position)
        seconds = 0.0
        if behind:
            newest = self._timestamp(head)
            oldest = self._timestamp(position) if position else None
            if newest and oldest:
                seconds = max(0.0, (newest - oldest).total_seconds())
            elif newest:
                seconds = max(0.0, (datetime.now(UTC) - newest).total_seconds())
        return Lag(name=name, position=position, head=head, events_behind=behind, seconds_behind=seconds)

    def _timestamp(self, notification_id: int) -> datetime | None:
        found = self.store.recorder.select_notifications(notification_id, 1)
        if not found:
            return None
        return self.store.mapper.to_domain_event(found[0]).timestamp


# ---------------------------------------------------------------------- rebuild and check


@dataclass(frozen=True)
class Difference:
    table: str
    key: tuple
    live: tuple | None
    rebuilt: tuple | None

    def __str__(self) -> str:
        if self.live is None:
            return f"{self.table} {self.key}: missing in the live table, rebuilt has {self.rebuilt}"
        if self.rebuilt is None:
            return f"{self.table} {self.key}: only in the live table: {self.live}"
        return f"{self.table} {self.key}: live {self.live} != rebuilt {self.rebuilt}"


@dataclass(frozen=True)
class RebuildReport:
    name: str
    position: int
    events: int
    differences: tuple[Difference, ...] = ()


def rebuild(
    store: EventStore,
    read_models: ReadModels,
    name: str,
    *,
    check: bool = False,
    batch_size: int = 1000,
    progress: Callable[[str, int, int], None] | None = None,
) -> RebuildReport:
    """Rebuild a projection from zero into shadow tables.

    Without ``check`` the shadow rows replace the live ones in one transaction (the
    live tables answer queries until then).  With ``check`` the shadow is built to the
    live position and compared with the live tables row by row; nothing is replaced.
    """
    cls = read_models.projection_class(name)
    shadow = _Shadow(read_models, cls, name)
    projector = Projector(store, read_models, names=[], batch_size=batch_size)
    projection = cls(shadow.tables, store)
    projector.projections = {shadow.key: projection}
    try:
        events = 0
        target = read_models.position(name) if check else None
        events += projector._catch_up(shadow.key, progress, until=target, label=name)
        with read_models.engine.begin() as conn:
            live_position = _lock_position(conn, read_models.positions, name)
            # Whatever arrived since the shadow was filled is applied in this same
            # transaction, while the live position is held still.
            events += _fill_in(conn, projector, shadow.key, live_position if check else None)
            position = read_models.position(shadow.key, conn)
            if check:
                differences = tuple(_differences(conn, read_models.tables[name], shadow.tables))
                conn.rollback()
                return RebuildReport(name=name, position=live_position, events=events, differences=differences)
            for logical, live in read_models.tables[name].items():
                conn.execute(delete(live))
                conn.execute(insert(live).from_select(list(live.c.keys()), select(*shadow.tables[logical].c)))
            _set_position(conn, read_models.positions, name, live_position, position, upsert=True)
        return RebuildReport(name=name, position=position, events=events)
    finally:
        shadow.drop()


class _Shadow:
    def __init__(self, read_models: ReadModels, cls: type[Projection], name: str) -> None:
        self.read_models = read_models
        self.key = f"{name}_shadow"
        self.metadata = MetaData()
        _positions_table(self.metadata)
        self.tables = cls.define_tables(self.metadata, shadow_name)
        shadow_only = [t for t in self.metadata.sorted_tables if t.name != POSITIONS_TABLE]
        self.metadata.drop_all(read_models.engine, tables=shadow_only)
        self.metadata.create_all(read_models.engine, tables=shadow_only)
        with read_models.engine.begin() as conn:
            conn.execute(delete(read_models.positions).where(read_models.positions.c.name == self.key))

    def drop(self) -> None:
        shadow_only = [t for t in self.metadata.sorted_tables if t.name != POSITIONS_TABLE]
        self.metadata.drop_all(self.read_models.engine, tables=shadow_only)
        with self.read_models.engine.begin() as conn:
            conn.execute(delete(self.read_models.positions).where(self.read_models.positions.c.name == self.key))


def _fill_in(conn: Connection, projector: Projector, key: str, until: int | None) -> int:
    """The last stretch, inside the caller's transaction."""
    recorder = projector.store.recorder
    projection = projector.projections[key]
    positions = projector.read_models.positions
    head = recorder.max_notification_id() or 0
    stop = head if until is None else until
    current = projector.read_models.position(key, conn)
    applied = 0
    while current < stop:
        batch = recorder.select_notifications(current + 1, projector.batch_size, stop=stop, topics=_topics(projection))
        for notification in batch:
            event = projector.store.mapper.to_domain_event(notification)
            try:
                projection.apply(conn, event, notification.id)
            except Exception as error:
                raise ProjectionError(key, notification.id, event, error) from error
            applied += 1
        new = stop if len(batch) < projector.batch_size else batch[-1].id
        _set_position(conn, positions, key, current, new, upsert=True)
        current = new
    return applied


def _differences(conn: Connection, live: Mapping[str, Table], rebuilt: Mapping[str, Table]) -> Iterator[Difference]:
    """Rows that differ, found by the database (EXCEPT both ways), paired up by primary key.

    The database compares, so the result does not depend on how Python would order or
    compare its values; only the differing rows come back.
    """
    for logical, live_table in live.items():
        shadow_table = rebuilt[logical]
        width = len(live_table.primary_key.columns)
        ordered_live = _pk_first(live_table)
        ordered_shadow = _pk_first(shadow_table)
        only_live = {
            tuple(row[:width]): tuple(row)
            for row in conn.execute(select(*ordered_live).except_(select(*ordered_shadow)))
        }
        only_rebuilt = {
            tuple(row[:width]): tuple(row)
            for row in conn.execute(select(*ordered_shadow).except_(select(*ordered_live)))
        }
        for key in sorted({*only_live, *only_rebuilt}, key=repr):
            yield Difference(live_table.name, key, only_live.get(key), only_rebuilt.get(key))


def _pk_first(table: Table) -> list[Any]:
    keys = list(table.primary_key.columns)
    return [*keys, *(c for c in table.columns if c not in keys)]


def _ordered_rows(conn: Connection, table: Table) -> Iterator[tuple]:
    """Rows with the primary key first, in primary-key order, streamed."""
    columns = _pk_first(table)
    keys = columns[: len(table.primary_key.columns)]
    result = conn.execution_options(yield_per=1000).execute(select(*columns).order_by(*keys))
    for row in result:
        yield tuple(row)


# ---------------------------------------------------------------------- positions


def _positions_table(metadata: MetaData) -> Table:
    return Table(
        POSITIONS_TABLE,
        metadata,
        Column("name", String(100), primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("updated_at", String(40), nullable=False),
    )


def _lock_position(conn: Connection, positions: Table, name: str) -> int:
    """The stored position, locked for this transaction (row lock on PostgreSQL; on
    SQLite the first write takes the database's write lock)."""
    query = select(positions.c.position).where(positions.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    else:
        # Take SQLite's write lock now, so nobody moves the position under us.
        conn.execute(update(positions).where(positions.c.name == name).values(name=positions.c.name))
    found = conn.execute(query).scalar()
    return int(found or 0)


class PositionMoved(RuntimeError):
    """Another worker moved the projection's position during this batch: it is retried."""


def _set_position(
    conn: Connection, positions: Table, name: str, expected: int, new: int, *, upsert: bool = True
) -> None:
    now = datetime.now(UTC).isoformat()
    changed = conn.execute(
        update(positions)
        .where(positions.c.name == name, positions.c.position == expected)
        .values(position=new, updated_at=now)
    ).rowcount
    if changed == 1:
        return
    exists = conn.execute(select(positions.c.position).where(positions.c.name == name)).scalar()
    if exists is None and expected == 0 and upsert:
        conn.execute(insert(positions).values(name=name, position=new, updated_at=now))
        return
    raise PositionMoved(f"projection {name} moved from {expected} to {exists} during this batch")


def _topics(projection: Projection) -> list[str]:
    return [get_topic(event_type) for event_type in type(projection).handles]


def _create_all(engine: Engine, metadata: MetaData, attempts: int = 5) -> None:
    """Create missing tables; workers starting together on PostgreSQL may race on it."""
    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError:
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)


def dump(read_models: ReadModels, name: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a projection's live tables, ordered by primary key."""
    with read_models.engine.connect() as conn:
        return read_models.rows(name, conn)
