"""Rebuild a projection from zero into shadow tables, and swap them in or compare them.

A rebuild fills shadow tables batch by batch (each batch its own transaction, so memory
stays flat and the live tables keep answering queries), then, in one transaction that
holds the live position still, applies the last stretch and replaces the live rows.
When the projection's schema version changed, the live tables are dropped and created
anew in that same transaction.  ``check`` builds the shadow up to the live position and
lets the database compare the two row by row (``EXCEPT`` both ways) instead.

``rebuild_as_of`` builds a projection as it stood at a moment (a time, or a position in
the log) into a labelled snapshot's own tables, ``rm_asof_<label>__<table>``, listed in
``rm_asof_snapshots``; the live tables and positions are not touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    delete,
    insert,
    inspect,
    select,
)

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import (
    Projection,
    ReadModelError,
    SchemaMismatch,
    UtcDateTime,
    shadow_name,
)
from ecomcore_projections.read_models import POSITIONS_TABLE, ReadModels, pk_first
from ecomcore_projections.runner import Projector


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
    expected = cls.schema_version
    read_models.refuse_if_kafka_fed(name, "a rebuild from the store")
    if check:
        stored = read_models.stored(name)
        if stored is not None and stored.schema_version != expected:
            raise SchemaMismatch(name, stored.schema_version, expected)
    shadow = ShadowTables(read_models, cls, f"{name}_shadow")
    projector = Projector.into(store, read_models, cls(shadow.tables, store), key=shadow.key, batch_size=batch_size)
    try:
        until = read_models.position(name) if check else None
        events = projector.catch_up(_labelled(progress, name), until=until)
        with read_models.engine.begin() as conn:
            live = read_models.lock(conn, name, expected)
            # Whatever arrived since the shadow was filled is applied in this same
            # transaction, while the live position is held still.
            events += projector.catch_up_in(conn, shadow.key, until=live.position if check else None)
            position = read_models.position(shadow.key, conn)
            if check:
                differences = tuple(differences_between(conn, read_models.tables[name], shadow.tables))
                conn.rollback()
                return RebuildReport(name=name, position=live.position, events=events, differences=differences)
            live_tables = read_models.tables[name]
            if live.schema_version != expected:
                _recreate(conn, live_tables)
            for logical, table in live_tables.items():
                conn.execute(delete(table))
                conn.execute(insert(table).from_select(list(table.c.keys()), select(*shadow.tables[logical].c)))
            read_models.set_position(conn, name, live.position, position, schema_version=expected)
        return RebuildReport(name=name, position=position, events=events)
    finally:
        shadow.drop()


class ShadowTables:
    """A projection's tables under other names, created empty, with a position row of their own."""

    def __init__(self, read_models: ReadModels, cls: type[Projection], key: str, table_name=shadow_name) -> None:
        self.read_models = read_models
        self.key = key
        self.metadata = MetaData()
        self.tables = cls.define_tables(self.metadata, table_name)
        self.metadata.drop_all(read_models.engine)
        self.metadata.create_all(read_models.engine)
        with read_models.engine.begin() as conn:
            read_models.forget_position(conn, key)

    def drop(self) -> None:
        self.metadata.drop_all(self.read_models.engine)
        with self.read_models.engine.begin() as conn:
            self.read_models.forget_position(conn, self.key)


def _recreate(conn: Connection, tables: Mapping[str, Table]) -> None:
    """Drop the live tables of an older schema and create them as this version defines them."""
    for table in tables.values():
        if table.name == POSITIONS_TABLE:
            continue
        table.drop(conn, checkfirst=True)
        table.create(conn)


def _labelled(
    progress: Callable[[str, int, int], None] | None, name: str
) -> Callable[[str, int, int], None] | None:
    if progress is None:
        return None
    return lambda _key, position, head: progress(name, position, head)


def differences_between(
    conn: Connection, live: Mapping[str, Table], rebuilt: Mapping[str, Table]
) -> Iterator[Difference]:
    """Rows that differ, found by the database (EXCEPT both ways), paired up by primary key.

    The database compares, so the result does not depend on how Python would order or
    compare its values; only the differing rows come back.
    """
    for logical, live_table in live.items():
        shadow_table = rebuilt[logical]
        width = len(live_table.primary_key.columns)
        ordered_live = pk_first(live_table)
        ordered_shadow = pk_first(shadow_table)
        live_rows = conn.execute(select(*ordered_live).except_(select(*ordered_shadow)))
        only_live = {tuple(row[:width]): tuple(row) for row in live_rows}
        rebuilt_rows = conn.execute(select(*ordered_shadow).except_(select(*ordered_live)))
        only_rebuilt = {tuple(row[:width]): tuple(row) for row in rebuilt_rows}
        for key in sorted({*only_live, *only_rebuilt}, key=repr):
            yield Difference(live_table.name, key, only_live.get(key), only_rebuilt.get(key))




# ---------------------------------------------------------------------- as-of read models

#: A snapshot's label: a simple lower-case identifier, short enough that every table and
#: index name built from it stays within PostgreSQL's 63 characters.
LABEL_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,19}")
AS_OF_PREFIX = "rm_asof_"
SNAPSHOTS_TABLE = "rm_asof_snapshots"


class InvalidLabel(ReadModelError):
    code = "invalid_label"


class SnapshotNotFound(ReadModelError):
    code = "snapshot_not_found"


def check_label(label: str) -> str:
    """``label`` if it can name a snapshot's tables; :class:`InvalidLabel` otherwise."""
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        raise InvalidLabel(
            f"label {label[:40]!r} is not a simple identifier: a lower-case letter, then up to 19 lower-case "
            "letters, digits or underscores (e.g. month_end_2024_01)",
            label=label[:40],
        )
    return label


def as_of_name(label: str) -> Callable[[str], str]:
    """How a snapshot names its tables: ``rm_asof_<label>__<logical>``."""
    check_label(label)
    return lambda logical: f"{AS_OF_PREFIX}{label}__{logical}"


@dataclass(frozen=True)
class Snapshot:
    """A read model built as of a moment into tables of its own (see :func:`rebuild_as_of`)."""

    label: str
    name: str
    #: Events with a timestamp at or before this moment (when built by time).
    as_of: datetime | None
    #: Events with a notification id at or below this (when built by position).
    until_position: int | None
    #: The last notification id read (the head when built by time).
    position: int
    events: int
    built_at: datetime


def _snapshots_table(metadata: MetaData) -> Table:
    return Table(
        SNAPSHOTS_TABLE,
        metadata,
        Column("label", String(40), primary_key=True),
        Column("name", String(100), primary_key=True),
        Column("as_of", UtcDateTime, nullable=True),
        Column("until_position", BigInteger, nullable=True),
        Column("position", BigInteger, nullable=False),
        Column("events", BigInteger, nullable=False),
        Column("built_at", UtcDateTime, nullable=False),
    )


def rebuild_as_of(
    store: EventStore,
    read_models: ReadModels,
    name: str,
    label: str,
    *,
    as_of: datetime | None = None,
    until_position: int | None = None,
    batch_size: int = 1000,
    progress: Callable[[str, int, int], None] | None = None,
) -> Snapshot:
    """Build projection ``name`` as it stood at a moment into the tables of snapshot ``label``.

    Exactly one of ``as_of`` (every notification of the whole log whose event timestamp is
    at or before it, in notification order) and ``until_position`` (every notification
    with an id at or below it) says which moment.  The live tables and their positions are
    not touched.  Building a label again replaces that label's tables for ``name``;
    while it is being built the snapshot is not listed (:func:`snapshot` refuses it).
    """
    if (as_of is None) == (until_position is None):
        raise ValueError("give exactly one of as_of and until_position")
    if as_of is not None and as_of.utcoffset() is None:
        raise ValueError(f"as_of must be a timezone-aware datetime, got {as_of!r}")
    cls = read_models.projection_class(name)
    table_name = as_of_name(label)
    key = f"asof:{label}:{name}"
    metadata = MetaData()
    snapshots = _snapshots_table(metadata)
    metadata.create_all(read_models.engine)
    read_models.positions.create(read_models.engine, checkfirst=True)
    with read_models.engine.begin() as conn:
        conn.execute(delete(snapshots).where(snapshots.c.label == label, snapshots.c.name == name))
    # The old tables of this label are dropped and built again (ShadowTables drops first).
    tables = ShadowTables(read_models, cls, key, table_name=table_name)
    try:
        projection_cls = cls if as_of is None else _until_moment(cls, as_of)
        projector = Projector.into(store, read_models, projection_cls(tables.tables, store), key=key,
                                   batch_size=batch_size)
        events = projector.catch_up(_labelled(progress, name), until=until_position)
        with read_models.engine.begin() as conn:
            position = read_models.position(key, conn)
            read_models.forget_position(conn, key)
            built = Snapshot(label=label, name=name, as_of=as_of, until_position=until_position,
                             position=position, events=events, built_at=datetime.now(UTC))
            conn.execute(insert(snapshots).values(**asdict(built)))
        return built
    except BaseException:
        tables.drop()
        raise


def snapshot(read_models: ReadModels, label: str, name: str) -> tuple[Snapshot, dict[str, Table]]:
    """Snapshot ``label`` of projection ``name`` and its tables, or :class:`SnapshotNotFound`."""
    check_label(label)
    cls = read_models.projection_class(name)
    metadata = MetaData()
    snapshots = _snapshots_table(metadata)
    found = None
    if inspect(read_models.engine).has_table(SNAPSHOTS_TABLE):
        with read_models.engine.connect() as conn:
            found = conn.execute(
                select(snapshots).where(snapshots.c.label == label, snapshots.c.name == name)
            ).one_or_none()
    if found is None:
        raise SnapshotNotFound(
            f"no {name} snapshot labelled {label!r}: build it with "
            f"`ecomcore rebuild {name} --as-of TIME --into {label}`",
            label=label,
            name=name,
        )
    return Snapshot(**found._asdict()), cls.define_tables(MetaData(), as_of_name(label))


def _until_moment(cls: type[Projection], as_of: datetime) -> type[Projection]:
    """``cls``, applying only the events whose timestamp is at or before ``as_of``.

    The events after it are still read (the whole log: a notification's id orders commits,
    not event times), so the position moves on past them, but they change nothing.
    """

    def apply_batch(self: Projection, conn: Connection, events: Sequence[tuple[int, DomainEvent]]) -> None:
        cls.apply_batch(self, conn, [(position, event) for position, event in events if event.timestamp <= as_of])

    return type(cls.__name__, (cls,), {"apply_batch": apply_batch, "__module__": cls.__module__})
