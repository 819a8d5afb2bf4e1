"""The read-model database: the projections' live tables, their positions and schema versions.

A position row is created if missing, then locked for the batch that moves it (compare and
set), so any number of workers may start together; each row also records the schema
version of the tables it belongs to.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from ecomcore.infrastructure.catalogue import sqlalchemy_url
from ecomcore_projections.base import (
    MixedSources,
    Projection,
    UnknownProjection,
    live_name,
)

#: The projections ``ecomcore project`` and ``ecomcore rebuild`` know, by name.
REGISTRY: dict[str, str] = {
    "order_status": "ecomcore_projections.order_status:OrderStatusProjection",
    "stock": "ecomcore_projections.stock:StockProjection",
    "reconciliation": "ecomcore_projections.reconciliation:ReconciliationProjection",
}

POSITIONS_TABLE = "rm_projection_positions"
#: Where Kafka-fed workers keep their positions (topic, partition, next offset) per projection.
KAFKA_POSITIONS_TABLE = "rm_kafka_positions"
#: The schema version a position row written before versions were recorded stands for.
UNVERSIONED = 1


def registered() -> dict[str, type[Projection]]:
    """Every registered projection class, by name."""
    found = {}
    for name, path in REGISTRY.items():
        module, _, attribute = path.partition(":")
        found[name] = getattr(importlib.import_module(module), attribute)
    return found

class PositionMoved(RuntimeError):
    """Another worker moved the projection's position during this batch: it is retried."""

@dataclass(frozen=True)
class StoredPosition:
    position: int
    schema_version: int


class ReadModels:
    """The read-model database: the live tables of every projection and their positions.

    ``source`` is a URL (the default is the store's own database, in its own tables,
    named ``rm_*``) or an existing SQLAlchemy :class:`~sqlalchemy.Engine`.  Tables are
    created when ``create_tables`` is true; by default, when given a URL (an Engine is
    the caller's: call :meth:`create_tables` when you want them).
    """

    def __init__(
        self,
        source: str | Engine,
        projections: Mapping[str, type[Projection]] | None = None,
        *,
        create_tables: bool | None = None,
    ) -> None:
        if isinstance(source, Engine):
            self.engine, self._owns_engine = source, False
        else:
            self.engine, self._owns_engine = create_engine(sqlalchemy_url(source), pool_pre_ping=True), True
        self.classes = dict(projections) if projections is not None else registered()
        self.metadata = MetaData()
        self.positions = _positions_table(self.metadata)
        self.tables = {name: cls.define_tables(self.metadata, live_name) for name, cls in self.classes.items()}
        if self._owns_engine if create_tables is None else create_tables:
            self.create_tables()

    def create_tables(self) -> None:
        """Create missing tables (workers starting together may race on it: the losers retry)."""
        _retry_ddl(lambda: self.metadata.create_all(self.engine))
        _retry_ddl(lambda: _add_schema_version_column(self.engine))

    def dispose(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def projection_class(self, name: str) -> type[Projection]:
        try:
            return self.classes[name]
        except KeyError:
            raise UnknownProjection(f"no projection named {name!r}; known: {', '.join(self.classes)}") from None

    def position(self, name: str, conn: Connection | None = None) -> int:
        stored = self.stored(name, conn)
        return 0 if stored is None else stored.position

    def stored(self, name: str, conn: Connection | None = None) -> StoredPosition | None:
        """The stored position and schema version of ``name``, or None before it first ran."""
        if conn is None:
            with self.engine.connect() as own:
                return self.stored(name, own)
        p = self.positions
        found = conn.execute(select(p.c.position, p.c.schema_version).where(p.c.name == name)).one_or_none()
        return None if found is None else StoredPosition(int(found[0]), int(found[1]))

    def lock(self, conn: Connection, name: str, schema_version: int) -> StoredPosition:
        """The position row of ``name``, created if missing (with ``schema_version``) and locked
        for this transaction (a row lock on PostgreSQL; on SQLite the database's write lock)."""
        p = self.positions
        insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(
            insert(p)
            .values(name=name, position=0, schema_version=schema_version, updated_at=_now())
            .on_conflict_do_nothing(index_elements=[p.c.name])
        )
        query = select(p.c.position, p.c.schema_version).where(p.c.name == name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        else:
            # Take SQLite's write lock now, so nobody moves the position under us.
            conn.execute(update(p).where(p.c.name == name).values(name=p.c.name))
        found = conn.execute(query).one()
        return StoredPosition(int(found[0]), int(found[1]))

    def kafka_fed(self, name: str, conn: Connection | None = None) -> bool:
        """Whether Kafka-fed workers applied records to ``name``'s tables here."""
        if conn is None:
            with self.engine.connect() as own:
                return self.kafka_fed(name, own)
        if not inspect(conn).has_table(KAFKA_POSITIONS_TABLE):
            return False
        query = text(f"SELECT 1 FROM {KAFKA_POSITIONS_TABLE} WHERE projection = :name LIMIT 1")
        return conn.execute(query, {"name": name}).first() is not None

    def refuse_if_kafka_fed(self, name: str, what: str) -> None:
        """Raise :class:`MixedSources` when ``name``'s tables here are fed from Kafka: ``what``
        (a store-fed worker, a rebuild) would apply the events again."""
        if self.kafka_fed(name):
            raise MixedSources(name, "Kafka", what)

    def set_position(
        self, conn: Connection, name: str, expected: int, new: int, *, schema_version: int | None = None
    ) -> None:
        """Move a locked position from ``expected`` to ``new`` (compare and set)."""
        p = self.positions
        values: dict[str, Any] = {"position": new, "updated_at": _now()}
        if schema_version is not None:
            values["schema_version"] = schema_version
        changed = conn.execute(update(p).where(p.c.name == name, p.c.position == expected).values(values)).rowcount
        if changed != 1:
            raise PositionMoved(f"projection {name} moved from {expected} during this batch")

    def forget_position(self, conn: Connection, name: str) -> None:
        conn.execute(self.positions.delete().where(self.positions.c.name == name))

    def rows(self, name: str, conn: Connection, tables: Mapping[str, Table] | None = None) -> dict[str, list[tuple]]:
        """Every row of a projection's tables, ordered by primary key (for comparisons)."""
        return {logical: list(ordered_rows(conn, table)) for logical, table in (tables or self.tables[name]).items()}

def _positions_table(metadata: MetaData) -> Table:
    return Table(
        POSITIONS_TABLE,
        metadata,
        Column("name", String(100), primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("schema_version", Integer, nullable=False, server_default=text(str(UNVERSIONED))),
        Column("updated_at", String(40), nullable=False),
    )


def _add_schema_version_column(engine: Engine) -> None:
    """Position tables written before schema versions were recorded get the column
    (their projections then count as version 1, and must be rebuilt)."""
    with engine.begin() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns(POSITIONS_TABLE)}
        if "schema_version" not in columns:
            conn.execute(
                text(
                    f"ALTER TABLE {POSITIONS_TABLE} ADD COLUMN schema_version INTEGER NOT NULL "
                    f"DEFAULT {UNVERSIONED}"
                )
            )


def _retry_ddl(create: Callable[[], None], attempts: int = 5) -> None:
    """Workers starting together on PostgreSQL may race on creating tables: retry the losers."""
    for attempt in range(1, attempts + 1):
        try:
            create()
            return
        except DBAPIError:
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def ordered_rows(conn: Connection, table: Table) -> Iterator[tuple]:
    """Rows with the primary key first, in primary-key order, streamed."""
    columns = pk_first(table)
    keys = columns[: len(table.primary_key.columns)]
    result = conn.execution_options(yield_per=1000).execute(select(*columns).order_by(*keys))
    for row in result:
        yield tuple(row)


def pk_first(table: Table) -> list[Any]:
    keys = list(table.primary_key.columns)
    return [*keys, *(c for c in table.columns if c not in keys)]


def dump(read_models: ReadModels, name: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a projection's live tables, ordered by primary key."""
    with read_models.engine.connect() as conn:
        return read_models.rows(name, conn)
