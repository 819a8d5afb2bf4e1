"""The rows one batch of events changes: loaded in a few queries, changed in memory, written once.

A projection's handlers never talk to the database.  Before a batch, the projection's
``prepare`` loads the rows its events will touch (one query per table, by primary key
or by the first column of the key); handlers then read and change plain dicts; when the
batch ends every changed row is written once, with one prepared statement per table and
kind of change run over the whole parameter list (``executemany``).

Rows are dicts of column name → value.  A row's key is the tuple of its primary-key
values, in the table's primary-key order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from ecomcore_projections.base import ProjectionInconsistency

Key = tuple[Any, ...]
Row = dict[str, Any]

#: Keys per ``IN (...)`` query: far below SQLite's and PostgreSQL's parameter limits.
LOAD_CHUNK = 500

_ABSENT: Any = None  # a key known not to be in the table


class TableRows:
    """One table's rows as a batch sees them."""

    def __init__(self, table: Table, statements: _Statements) -> None:
        self.table = table
        self._s = statements
        self.key_columns = statements.key_columns
        #: What the database held when loaded (None: known absent).
        self._stored: dict[Key, Row | None] = {}
        #: What the batch has made of them (None: deleted or still absent).
        self._current: dict[Key, Row | None] = {}
        #: Rows added without loading (append-only tables): always inserted.
        self._appended: list[Row] = []
        #: Values of the key's first column whose rows are all loaded, and the keys under each.
        self._complete: set[Any] = set()
        self._under: dict[Any, set[Key]] = {}

    # -------------------------------------------------------------- loading

    def load(self, conn: Connection, keys: Iterable[Key]) -> None:
        """Load these rows by primary key; keys not found are known to be absent."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._stored]
        for chunk in _chunks(wanted):
            for row in _dicts(conn.execute(self._s.select_keys, self._s.key_values(chunk))):
                if self._key(row) not in self._stored:
                    self._remember(row)
            for key in chunk:
                if key not in self._stored:
                    self._stored[key] = _ABSENT
                    self._set(key, _ABSENT)

    def load_all(self, conn: Connection, firsts: Iterable[Any]) -> None:
        """Load every row whose first key column is one of ``firsts`` (e.g. all lines of some orders)."""
        wanted = [f for f in dict.fromkeys(firsts) if f not in self._complete]
        for chunk in _chunks(wanted):
            for first in chunk:
                self._under.setdefault(first, set())
            for values in _dicts(conn.execute(self._s.select_firsts, {"firsts": chunk})):
                if self._key(values) not in self._stored:
                    self._remember(values)
            self._complete.update(chunk)

    def _remember(self, row: Row) -> None:
        key = self._key(row)
        self._stored[key] = row
        self._set(key, dict(row))

    def _set(self, key: Key, row: Row | None) -> None:
        self._current[key] = row
        under = self._under.get(key[0])
        if under is not None:
            under.add(key)

    # -------------------------------------------------------------- reading

    def get(self, key: Key) -> Row | None:
        """The row as the batch has it, or None if there is none; the key must have been loaded."""
        try:
            return self._current[key]
        except KeyError:
            if key[:1] and key[0] in self._complete:
                return None
            raise LookupError(f"{self.table.name}: row {key} was not loaded for this batch") from None

    def children(self, first: Any) -> list[Row]:
        """Every current row whose first key column is ``first`` (loaded with :meth:`load_all`), in key order."""
        if first not in self._complete:
            raise LookupError(f"{self.table.name}: rows of {first!r} were not loaded for this batch")
        found = [row for key in sorted(self._under[first]) if (row := self._current[key]) is not None]
        return found

    # -------------------------------------------------------------- changing

    def insert(self, row: Row) -> None:
        """A new row; its key must be known to be absent."""
        key = self._key(row)
        if self.get(key) is not None:
            raise ProjectionInconsistency(f"{self.table.name}: row {key} already exists")
        self._set(key, dict(row))

    def insert_new(self, row: Row) -> None:
        """A row whose key cannot exist yet (it holds the event's own version or position), so
        nothing was loaded for it; later events of the batch may change it.  Should the key
        exist after all, the database refuses the batch."""
        key = self._key(row)
        if self._current.get(key) is not None:
            raise ProjectionInconsistency(f"{self.table.name}: row {key} already exists")
        self._stored.setdefault(key, _ABSENT)
        self._set(key, dict(row))

    def put(self, row: Row) -> None:
        """Insert or replace the whole row (its key must have been loaded)."""
        key = self._key(row)
        self.get(key)
        self._set(key, dict(row))

    def update(self, key: Key, **changes: Any) -> Row:
        """Change some columns of an existing row; returns the row as changed."""
        row = self.get(key)
        if row is None:
            raise ProjectionInconsistency(f"{self.table.name}: no row {key} to update")
        row.update(changes)
        return row

    def delete(self, key: Key) -> None:
        if self.get(key) is None:
            raise ProjectionInconsistency(f"{self.table.name}: no row {key} to delete")
        self._set(key, None)

    def replace_children(self, first: Any, rows: Iterable[Row]) -> None:
        """Make ``rows`` the only rows under ``first`` (loaded with :meth:`load_all`)."""
        for row in self.children(first):
            self._set(self._key(row), None)
        for row in rows:
            if row[self.key_columns[0]] != first:
                raise ValueError(f"{self.table.name}: row {self._key(row)} is not under {first!r}")
            self._set(self._key(row), dict(row))

    def append(self, row: Row) -> None:
        """Add a row to an append-only table without loading anything (its key must be new)."""
        self._appended.append(dict(row))

    # -------------------------------------------------------------- writing

    def flush(self, conn: Connection) -> None:
        inserts: list[Row] = list(self._appended)
        updates: dict[tuple[str, ...], list[Row]] = {}
        deletes: list[Row] = []
        key_columns = self.key_columns
        for key, row in self._current.items():
            stored = self._stored.get(key)
            if row is None:
                if stored is not None:
                    deletes.append(self._s.key_params(key))
            elif stored is None:
                inserts.append(row)
            else:
                # Only the columns that changed: most events touch a few of a row's columns.
                changed = {name: value for name, value in row.items() if stored[name] != value}
                for name in key_columns:
                    changed.pop(name, None)
                if changed:
                    columns = tuple(sorted(changed))
                    changed.update(self._s.key_params(key))
                    updates.setdefault(columns, []).append(changed)
        if deletes:
            self._s.run(conn, "delete", deletes)
        for columns, rows in updates.items():
            self._s.run(conn, "update", rows, columns=list(columns))
        if inserts:
            self._s.run(conn, "insert", inserts)

    def _key(self, row: Mapping[str, Any]) -> Key:
        return tuple(row[c] for c in self.key_columns)


class _Compiled:
    """One statement compiled for one dialect, run by the driver over a list of rows.

    Compiling once and handing the driver plain parameter lists skips SQLAlchemy's
    per-row parameter processing; the columns' own bind processors still convert each
    value (timestamps to naive UTC, and so on), exactly as SQLAlchemy would.
    """

    def __init__(self, statement: Any, dialect: Any, names: list[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=names)
        self.sql = compiled.string
        self.order: list[str] | None = list(compiled.positiontup) if compiled.positional else None
        binds = compiled.binds
        self.processors = {
            name: processor
            for name, bind in binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }

    def run(self, conn: Connection, rows: list[Row]) -> None:
        processors = self.processors
        if processors:
            rows = [
                {name: (processors[name](value) if name in processors else value) for name, value in row.items()}
                for row in rows
            ]
        if self.order is not None:
            order = self.order
            conn.exec_driver_sql(self.sql, [tuple(row[name] for name in order) for row in rows])
        else:
            conn.exec_driver_sql(self.sql, rows)


class _Statements:
    """The prepared statements of one table, built once and reused for every batch."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._compiled: dict[tuple[str, ...], _Compiled] = {}
        self.key_columns = [c.name for c in table.primary_key.columns]
        if not self.key_columns:
            raise TypeError(f"table {table.name} has no primary key")
        key_cols = [table.c[name] for name in self.key_columns]
        self._key_names = [f"k_{name}" for name in self.key_columns]
        matches = and_(*(col == bindparam(name) for col, name in zip(key_cols, self._key_names, strict=True)))
        self.insert = insert(table)
        # Without .values(), an executemany UPDATE sets the columns its parameters name.
        self.update = update(table).where(matches)
        self.delete = delete(table).where(matches)
        # Each key column IN its values: an index on the key serves it (a row-value IN list
        # is a full scan on SQLite); the few extra rows it may bring are real rows, kept too.
        self.select_keys = select(table).where(
            and_(*(col.in_(bindparam(f"in_{col.name}", expanding=True)) for col in key_cols))
        )
        self.select_firsts = select(table).where(key_cols[0].in_(bindparam("firsts", expanding=True)))

    def run(self, conn: Connection, kind: str, rows: list[Row], *, columns: list[str] | None = None) -> None:
        """Run the table's insert, update (of ``columns``) or delete over ``rows`` (one executemany)."""
        dialect = conn.dialect
        names = columns if columns is not None else [c.name for c in self.table.columns]
        cache_key = (dialect.name, kind, *names)
        compiled = self._compiled.get(cache_key)
        if compiled is None:
            statement = {"insert": self.insert, "update": self.update, "delete": self.delete}[kind]
            compiled = self._compiled[cache_key] = _Compiled(statement, dialect, names)
        compiled.run(conn, rows)

    def key_params(self, key: Key) -> Row:
        return dict(zip(self._key_names, key, strict=True))


    def key_values(self, keys: list[Key]) -> Row:
        """The parameters of ``select_keys`` for these keys: each key column's distinct values."""
        return {f"in_{name}": list(dict.fromkeys(k[i] for k in keys)) for i, name in enumerate(self.key_columns)}


class Batch:
    """The rows of a projection's tables that one batch of events changes.

    ``rows(logical_name)`` gives a table's :class:`TableRows`; :meth:`flush` writes
    them all (children after parents: the tables' own order).
    """

    def __init__(self, conn: Connection, tables: Mapping[str, Table], statements: Mapping[str, _Statements]) -> None:
        self.conn = conn
        self._rows = {name: TableRows(table, statements[name]) for name, table in tables.items()}

    def rows(self, name: str) -> TableRows:
        return self._rows[name]

    def load(self, name: str, keys: Iterable[Key]) -> None:
        self._rows[name].load(self.conn, keys)

    def load_all(self, name: str, firsts: Iterable[Any]) -> None:
        self._rows[name].load_all(self.conn, firsts)

    def max_by(self, name: str, column: str, group: str, values: Iterable[Any]) -> dict[Any, Any]:
        """``max(column)`` per value of ``group`` among ``values`` (e.g. the last seq of each order), in
        one query per chunk; values with no rows are left out."""
        table = self._rows[name].table
        found: dict[Any, Any] = {}
        for chunk in _chunks(list(dict.fromkeys(values))):
            query = (
                select(table.c[group], func.max(table.c[column]))
                .where(table.c[group].in_(chunk))
                .group_by(table.c[group])
            )
            found.update((key, value) for key, value in self.conn.execute(query))
        return found

    def flush(self) -> None:
        for rows in self._rows.values():
            rows.flush(self.conn)


def statements_for(tables: Mapping[str, Table]) -> dict[str, _Statements]:
    return {name: _Statements(table) for name, table in tables.items()}


def _dicts(result: Any) -> Iterator[Row]:
    keys = list(result.keys())
    for row in result:
        yield dict(zip(keys, row, strict=True))


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), LOAD_CHUNK):
        yield items[start : start + LOAD_CHUNK]
