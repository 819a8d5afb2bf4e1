"""Catalogue registries: an in-memory one (the catalogue of a ``memory://`` store, and
for tests) and an SQL one (SQLite or PostgreSQL).

Catalogue data is reference data, not history: adding a value with an id that is
already known replaces it.  Each value is stored as the columns we look it up or
filter by plus its pydantic JSON in ``data``, so new fields need no migration.

Commands read the catalogue through ``current()``: one query for the catalogue's version
(a counter every change raises in its own transaction), then answers from this process's
memory for whatever was looked up before at that version; a change by any process
empties that memory at the next command.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from ecomcore.domain.catalogue import Catalogue, CatalogueReader, Merchant, Promotion, Sku, Warehouse
from ecomcore.infrastructure.store import StoreUrlError, is_memory

__all__ = ["InMemoryCatalogue", "SqlCatalogue", "open_catalogue", "sqlalchemy_url"]

M = TypeVar("M", bound=BaseModel)


# Both implementations sort in Python rather than in SQL: string collation differs
# between SQLite (binary) and PostgreSQL (locale), and datetimes with different UTC
# offsets only compare correctly as datetimes.  Reference data is small.
def _by_priority(warehouses: Iterable[Warehouse]) -> list[Warehouse]:
    return sorted(warehouses, key=lambda w: (w.priority, w.warehouse_id))


def _by_start(promotions: Iterable[Promotion]) -> list[Promotion]:
    return sorted(promotions, key=lambda p: (p.starts_at, p.promotion_id))


class InMemoryCatalogue:
    """A catalogue held in dicts; values are frozen, so sharing them is safe."""

    def __init__(self) -> None:
        self._skus: dict[str, Sku] = {}
        self._warehouses: dict[str, Warehouse] = {}
        self._merchants: dict[str, Merchant] = {}
        self._promotions: dict[str, Promotion] = {}

    def add_sku(self, sku: Sku) -> None:
        self._skus[sku.sku_id] = sku

    def add_warehouse(self, warehouse: Warehouse) -> None:
        self._warehouses[warehouse.warehouse_id] = warehouse

    def add_merchant(self, merchant: Merchant) -> None:
        self._merchants[merchant.merchant_id] = merchant

    def add_promotion(self, promotion: Promotion) -> None:
        self._promotions[promotion.promotion_id] = promotion

    def sku(self, sku_id: str) -> Sku | None:
        return self._skus.get(sku_id)

    def warehouse(self, warehouse_id: str) -> Warehouse | None:
        return self._warehouses.get(warehouse_id)

    def warehouses(self) -> list[Warehouse]:
        return _by_priority(self._warehouses.values())

    def merchant(self, merchant_id: str) -> Merchant | None:
        return self._merchants.get(merchant_id)

    def promotions(self, merchant_id: str) -> list[Promotion]:
        return _by_start(p for p in self._promotions.values() if p.terms.merchant_id == merchant_id)

    def current(self) -> CatalogueReader:
        return self  # nothing to read: it is all in memory


_metadata = MetaData()
_skus = Table(
    "catalogue_skus", _metadata,
    Column("sku_id", String(64), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("data", Text, nullable=False),
)
_warehouses = Table(
    "catalogue_warehouses", _metadata,
    Column("warehouse_id", String(64), primary_key=True),
    Column("priority", Integer, nullable=False),
    Column("data", Text, nullable=False),
)
_merchants = Table(
    "catalogue_merchants", _metadata,
    Column("merchant_id", String(64), primary_key=True),
    Column("data", Text, nullable=False),
)
_promotions = Table(
    "catalogue_promotions", _metadata,
    Column("promotion_id", String(64), primary_key=True),
    Column("merchant_id", String(64), nullable=False, index=True),
    Column("data", Text, nullable=False),
)


#: One row (id 1): raised by every change to the catalogue, in the change's transaction.
_version = Table(
    "catalogue_version", _metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL for an ecomcore store URL: PostgreSQL goes through psycopg 3.

    The query string is kept, so ``?host=/socket/dir`` reaches psycopg as is.
    """
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    if scheme == "sqlite":
        return url
    if scheme.split("+")[0] in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    if is_memory(url):
        raise StoreUrlError(f"{url!r} is an in-memory event store, not a database: give an SQLite or PostgreSQL URL")
    raise StoreUrlError(f"catalogue URL {url!r} is neither sqlite:///… nor postgresql://…")


class SqlCatalogue:
    """A catalogue in SQL tables, created on first use; connects only when first used."""

    def __init__(self, url: str) -> None:
        sa_url = sqlalchemy_url(url)
        is_sqlite = urlsplit(sa_url).scheme == "sqlite"
        # create_engine does not connect; it only prepares the pool.
        self._engine: Engine = create_engine(
            sa_url, connect_args={"timeout": 30} if is_sqlite else {}
        )
        self._insert = sqlite.insert if is_sqlite else postgresql.insert
        self._tables_ready = False
        self._lock = threading.Lock()
        self._remembered = _Remembered(self, version=-1)
        self._is_sqlite = is_sqlite
        #: Each thread's own connection for reading the version (one statement a command).
        self._version_readers = threading.local()
        self._reader_connections: list[Any] = []

    def dispose(self) -> None:
        with self._lock:
            readers, self._reader_connections = self._reader_connections, []
        for connection in readers:
            connection.close()
        self._engine.dispose()

    def add_sku(self, sku: Sku) -> None:
        self._upsert(_skus, sku, sku_id=sku.sku_id, merchant_id=sku.merchant_id)

    def add_warehouse(self, warehouse: Warehouse) -> None:
        self._upsert(
            _warehouses, warehouse, warehouse_id=warehouse.warehouse_id, priority=warehouse.priority
        )

    def add_merchant(self, merchant: Merchant) -> None:
        self._upsert(_merchants, merchant, merchant_id=merchant.merchant_id)

    def add_promotion(self, promotion: Promotion) -> None:
        self._upsert(
            _promotions, promotion,
            promotion_id=promotion.promotion_id, merchant_id=promotion.terms.merchant_id,
        )

    def sku(self, sku_id: str) -> Sku | None:
        return self._one(Sku, _skus, _skus.c.sku_id == sku_id)

    def warehouse(self, warehouse_id: str) -> Warehouse | None:
        return self._one(Warehouse, _warehouses, _warehouses.c.warehouse_id == warehouse_id)

    def warehouses(self) -> list[Warehouse]:
        return _by_priority(self._all(Warehouse, _warehouses))

    def merchant(self, merchant_id: str) -> Merchant | None:
        return self._one(Merchant, _merchants, _merchants.c.merchant_id == merchant_id)

    def promotions(self, merchant_id: str) -> list[Promotion]:
        return _by_start(self._all(Promotion, _promotions, _promotions.c.merchant_id == merchant_id))

    def current(self) -> CatalogueReader:
        self._ensure_tables()
        version = self._version()
        with self._lock:
            if self._remembered.version != version:
                self._remembered = _Remembered(self, version)
            return self._remembered

    # ------------------------------------------------------------------ plumbing

    def _version(self) -> int:
        """The catalogue's version now: one statement, outside any transaction, on a
        connection this thread keeps (SQLAlchemy's own checkout and reset cost more
        than the query; this runs once per command)."""
        for attempt in (1, 2):
            reader = getattr(self._version_readers, "connection", None)
            if reader is None:
                reader = self._engine.raw_connection()
                if not self._is_sqlite:
                    reader.driver_connection.autocommit = True  # type: ignore[union-attr]
                self._version_readers.connection = reader
                with self._lock:
                    self._reader_connections.append(reader)
            cursor = reader.cursor()
            try:
                cursor.execute("SELECT version FROM catalogue_version WHERE id = 1")
                row = cursor.fetchone()
                return int(row[0]) if row else 0
            except self._engine.dialect.loaded_dbapi.Error:
                # A connection a server restart broke: drop it, once try a new one.
                self._version_readers.connection = None
                with self._lock:
                    if reader in self._reader_connections:
                        self._reader_connections.remove(reader)
                reader.invalidate()
                if attempt == 2:
                    raise
            finally:
                cursor.close()
        raise AssertionError("unreachable")

    def _ensure_tables(self) -> None:
        if self._tables_ready:
            return
        with self._lock:
            if self._tables_ready:
                return
            try:
                _metadata.create_all(self._engine)
            except DBAPIError:
                # Another process created the tables between our check and our CREATE
                # (PostgreSQL reports a duplicate type); the second check sees them.
                _metadata.create_all(self._engine)
            self._tables_ready = True

    def _upsert(self, table: Table, value: BaseModel, **keys: Any) -> None:
        self._ensure_tables()
        row = {**keys, "data": value.model_dump_json()}
        primary_key = [column.name for column in table.primary_key]
        statement = self._insert(table).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=primary_key,
            set_={name: statement.excluded[name] for name in row if name not in primary_key},
        )
        with self._engine.begin() as connection:
            connection.execute(statement)
            _raise_version(connection, self._insert)

    def _one(self, model: type[M], table: Table, where: Any) -> M | None:
        self._ensure_tables()
        with self._engine.connect() as connection:
            data = connection.execute(select(table.c.data).where(where)).scalar_one_or_none()
        return None if data is None else model.model_validate_json(data)

    def _all(self, model: type[M], table: Table, *where: Any) -> list[M]:
        self._ensure_tables()
        with self._engine.connect() as connection:
            rows = connection.execute(select(table.c.data).where(*where)).scalars().all()
        return [model.model_validate_json(data) for data in rows]


def _raise_version(connection: Connection, insert: Any) -> None:
    raised = connection.execute(update(_version).where(_version.c.id == 1).values(version=_version.c.version + 1))
    if not raised.rowcount:
        # The first change (or the first since an older release made the tables).
        connection.execute(insert(_version).values(id=1, version=1).on_conflict_do_update(
            index_elements=["id"], set_={"version": _version.c.version + 1}))


_MISSING: Any = object()


class _Remembered:
    """What was looked up at one version of an SQL catalogue, kept while it is current.

    Values are frozen, so one process's commands share them; a lookup that misses asks
    the database once and remembers the answer, a missing id too.
    """

    def __init__(self, catalogue: SqlCatalogue, version: int) -> None:
        self.version = version
        self._catalogue = catalogue
        self._skus: dict[str, Sku | None] = {}
        self._warehouse_list: list[Warehouse] | None = None
        self._merchants: dict[str, Merchant | None] = {}
        self._promotions: dict[str, list[Promotion]] = {}

    def sku(self, sku_id: str) -> Sku | None:
        found = self._skus.get(sku_id, _MISSING)
        if found is _MISSING:
            found = self._skus[sku_id] = self._catalogue.sku(sku_id)
        return found

    def warehouses(self) -> list[Warehouse]:
        if self._warehouse_list is None:
            self._warehouse_list = self._catalogue.warehouses()
        return list(self._warehouse_list)

    def warehouse(self, warehouse_id: str) -> Warehouse | None:
        return next((w for w in self.warehouses() if w.warehouse_id == warehouse_id), None)

    def merchant(self, merchant_id: str) -> Merchant | None:
        found = self._merchants.get(merchant_id, _MISSING)
        if found is _MISSING:
            found = self._merchants[merchant_id] = self._catalogue.merchant(merchant_id)
        return found

    def promotions(self, merchant_id: str) -> list[Promotion]:
        found = self._promotions.get(merchant_id)
        if found is None:
            found = self._promotions[merchant_id] = self._catalogue.promotions(merchant_id)
        return list(found)


def open_catalogue(url: str | None) -> Catalogue:
    """``None``, ``"memory"`` or a ``memory://`` store URL gives an in-memory catalogue
    (so a shop on an in-memory store keeps nothing outside the process); an SQL store URL
    gives an SQL catalogue in the same database."""
    if url is None or url == "memory" or is_memory(url):
        return InMemoryCatalogue()
    return SqlCatalogue(url)
