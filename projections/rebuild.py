"""Rebuild a projection from zero into shadow tables, and swap them in or compare them.

A rebuild fills shadow tables batch by batch (each batch its own transaction, so memory
stays flat and the live tables keep answering queries), then, in one transaction that
holds the live position still, applies the last stretch and replaces the live rows.
When the projection's schema version changed, the live tables are dropped and created
anew in that same transaction.  ``check`` builds the shadow up to the live position and
lets the database compare the two row by row (``EXCEPT`` both ways) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, MetaData, Table, delete, insert, select

from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import Projection, SchemaMismatch, shadow_name
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


