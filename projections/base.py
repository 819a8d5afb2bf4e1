"""What every projection is: the events it handles, its tables, and how one event changes them.

A projection never commits: the runner applies a batch of events and the projection's
new position in one database transaction (exactly once, also across crashes).  The
same class builds the live tables and, for a rebuild, a shadow copy of them: table
names come from ``table_name``, never written out by the projection itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, DateTime, MetaData, Table, TypeDecorator

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.infrastructure.store import EventStore

#: Live tables are ``rm_<name>``; a rebuild writes ``rm_<name>_shadow`` and swaps them in.
LIVE_PREFIX = "rm_"
SHADOW_SUFFIX = "_shadow"


def live_name(logical: str) -> str:
    return f"{LIVE_PREFIX}{logical}"


def shadow_name(logical: str) -> str:
    return f"{LIVE_PREFIX}{logical}{SHADOW_SUFFIX}"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant, stored as a naive UTC timestamp.

    SQLite keeps no zone and PostgreSQL's ``timestamptz`` comes back in the session's
    zone; naive UTC in, aware UTC out round-trips identically on both, and compares
    correctly in SQL (bound values are converted the same way).  Naive datetimes are
    refused: read models store only instants whose zone is known.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime {value!r} has no zone: read models store only aware instants")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class ProjectionError(Exception):
    """An event the projection could not apply; it names the event, and nothing after it is applied."""

    def __init__(self, projection: str, position: int, event: DomainEvent, cause: BaseException) -> None:
        self.projection, self.position, self.event = projection, position, event
        super().__init__(
            f"projection {projection} cannot apply event #{position} "
            f"({type(event).__qualname__} of aggregate {event.originator_id} v{event.originator_version}): "
            f"{type(cause).__name__}: {cause}"
        )


class Projection(ABC):
    """A read model kept up to date from the event store's notification log.

    Subclasses set ``name`` (unique, snake_case) and ``handles`` (the event classes
    whose notifications the runner selects for it), define their tables in
    ``define_tables`` and change them in ``apply``.
    """

    name: ClassVar[str]
    handles: ClassVar[tuple[type[DomainEvent], ...]]

    def __init__(self, tables: dict[str, Table], store: EventStore) -> None:
        self.tables = tables
        #: For projections that fold aggregates with the domain's own handlers: load an
        #: aggregate as it was at a version (history never changes, so this is exact).
        self.store = store

    @classmethod
    @abstractmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        """Add this projection's tables to ``metadata``, named by ``table_name(logical)``;
        return them by logical name.  Every table needs a primary key (rebuild --check
        compares rows by it)."""

    @abstractmethod
    def apply(self, conn: Connection, event: DomainEvent, position: int) -> None:
        """Change the tables for one event, inside the runner's transaction.

        Must be deterministic: the same events in the same order give the same rows,
        whatever the batch boundaries.  Raise on anything unexpected; never skip.
        """

    def forget(self) -> None:
        """Drop in-memory caches: called when a batch's transaction rolled back."""
