"""What every projection is: the events it handles, its tables, and how a batch changes them.

A projection is written one way::

    class ParcelCount(Projection):
        name = "parcel_count"
        schema_version = 1

        @classmethod
        def define_tables(cls, metadata, table_name):
            return {"counts": Table(table_name("parcel_counts"), metadata, ...)}

        def prepare(self, batch, events):           # optional: load the rows the batch needs
            batch.rows("counts").load(key_of(e) for _, e in events)

        @handles(Shipment.Planned)
        def _planned(self, batch, event, position):
            ...                                     # change batch.rows(...) in memory

The ``@handles`` marks give the projection its ``handles`` (the event classes the
runner selects for it) and its dispatch; a handler changes rows held in memory by the
:class:`~ecomcore_projections.rows.Batch`, which writes each changed row once when the
batch ends.  A projection never commits: the runner writes a batch and the
projection's new position in one database transaction (exactly once, also across
crashes).  The same class builds the live tables and, for a rebuild, a shadow copy:
table names come from ``table_name``, never written out by the projection itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import Connection, DateTime, Engine, MetaData, Table, TypeDecorator
from sqlalchemy.types import UserDefinedType

from ecomcore import EcomcoreError
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.infrastructure.store import EventStore

if TYPE_CHECKING:
    from ecomcore_projections.rows import Batch

#: Live tables are ``rm_<name>``; a rebuild writes ``rm_<name>_shadow`` and swaps them in.
LIVE_PREFIX = "rm_"
SHADOW_SUFFIX = "_shadow"


def live_name(logical: str) -> str:
    return f"{LIVE_PREFIX}{logical}"


def shadow_name(logical: str) -> str:
    return f"{LIVE_PREFIX}{logical}{SHADOW_SUFFIX}"


class _SqliteDateTimeText(UserDefinedType[str]):
    """SQLite's ``DATETIME`` column holding the text :class:`UtcDateTime` formats itself."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "DATETIME"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant, stored as a naive UTC timestamp.

    SQLite keeps no zone and PostgreSQL's ``timestamptz`` comes back in the session's
    zone; naive UTC in, aware UTC out round-trips identically on both, and compares
    correctly in SQL (bound values are converted the same way).  Naive datetimes are
    refused: read models store only instants whose zone is known.

    On SQLite the text is ``YYYY-MM-DD HH:MM:SS.ffffff``, the format SQLAlchemy's own
    ``DateTime`` writes there, made and read with the C-implemented ``isoformat`` and
    ``fromisoformat`` (a projector converts a hundred thousand of these per batch run).
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SqliteDateTimeText())
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime {value!r} has no zone: read models store only aware instants")
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.isoformat(" ", "microseconds") if getattr(dialect, "name", None) == "sqlite" else naive

    def process_result_value(self, value: datetime | str | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


# ---------------------------------------------------------------------- errors


class ReadModelError(EcomcoreError):
    """Base of the read side's errors."""

    code = "read_model_error"


class ProjectionInconsistency(ReadModelError):
    """An event that does not fit what the read model holds: a gap, a repeat, a stranger.

    Raised by projections; the runner reports it as :class:`ProjectionFailed` naming the event.
    """

    code = "projection_inconsistent"


class ProjectionFailed(ReadModelError):
    """An event a projection could not apply; nothing from it on is applied, nothing is skipped."""

    code = "projection_failed"

    def __init__(self, projection: str, position: int, event: DomainEvent | None, cause: BaseException) -> None:
        self.projection, self.position, self.event, self.cause = projection, position, event, cause
        what = (
            f"{type(event).__qualname__} of aggregate {event.originator_id} v{event.originator_version}"
            if event is not None
            else "an event that could not be read"
        )
        super().__init__(
            f"projection {projection} cannot apply event #{position} ({what}): {describe_cause(cause)}",
            projection=projection,
            position=position,
        )


class SchemaMismatch(ReadModelError):
    """The read-model tables were made for another version of the projection."""

    code = "schema_mismatch"

    def __init__(self, projection: str, found: int, expected: int) -> None:
        self.projection, self.found, self.expected = projection, found, expected
        super().__init__(
            f"the {projection} tables have schema version {found}, this version of ecomcore needs {expected}: "
            f"run `ecomcore rebuild {projection}` to rebuild them",
            projection=projection,
            found=found,
            expected=expected,
        )


class UnknownProjection(ReadModelError):
    code = "unknown_projection"


class TopicRewound(ReadModelError):
    """A Kafka partition no longer holds what a projection's stored position says it read:
    the topic was deleted and created again, or the broker lost records."""

    code = "kafka_topic_rewound"

    def __init__(self, topic: str, partition: int, detail: str) -> None:
        super().__init__(
            f"partition {partition} of topic {topic} {detail}: the topic was deleted and created again, or the "
            "broker lost records. Nothing was applied from it: start Kafka-fed workers on a new read-model "
            "database (--read-models), or use store-fed ones",
            topic=topic, partition=partition,
        )


class MixedSources(ReadModelError):
    """A projection's tables fed from the store's log and from Kafka: each would apply the
    events the other applied (their positions count differently), so the second is refused."""

    code = "mixed_sources"

    def __init__(self, projection: str, fed_from: str, refused: str) -> None:
        self.projection, self.fed_from, self.refused = projection, fed_from, refused
        super().__init__(
            f"the {projection} tables of this read-model database are fed from {fed_from}; {refused} would apply "
            f"their events a second time: give it a read-model database of its own (--read-models)",
            projection=projection,
            fed_from=fed_from,
        )


def describe_cause(cause: BaseException) -> str:
    """One line for a person: the error's type and first line, without SQL or parameters."""
    original = getattr(cause, "orig", None)  # SQLAlchemy wraps the driver's error
    shown = original if isinstance(original, BaseException) else cause
    text = (shown.message if isinstance(shown, EcomcoreError) else str(shown)).strip().splitlines()
    return f"{type(shown).__name__}: {text[0]}" if text else type(shown).__name__


# ---------------------------------------------------------------------- projections

E = TypeVar("E", bound=DomainEvent)
Handler = Callable[[Any, "Batch", Any, int], None]


def handles(*event_types: type[DomainEvent]) -> Callable[[Handler], Handler]:
    """Mark a projection method as the handler of ``event_types``: ``(self, batch, event, position)``."""

    def mark(method: Handler) -> Handler:
        method._handles = event_types  # type: ignore[attr-defined]
        return method

    return mark


class Projection:
    """A read model kept up to date from the event store's notification log.

    Subclasses set ``name`` (unique, snake_case) and ``schema_version`` (raise it
    whenever the tables change: workers then refuse old tables until they are
    rebuilt), define their tables in :meth:`define_tables`, may load what a batch
    needs in :meth:`prepare`, and handle events in ``@handles`` methods.
    """

    name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    #: The event classes this projection handles (derived from its ``@handles`` methods).
    handles: ClassVar[tuple[type[DomainEvent], ...]] = ()
    _handlers: ClassVar[dict[type[DomainEvent], Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = dict(cls._handlers)
        for value in vars(cls).values():
            for event_type in getattr(value, "_handles", ()):
                if event_type in handlers and handlers[event_type] is not value:
                    raise TypeError(f"{cls.__name__} handles {event_type.__qualname__} twice")
                handlers[event_type] = value
        cls._handlers = handlers
        cls.handles = tuple(handlers)

    def __init__(self, tables: Mapping[str, Table], store: EventStore) -> None:
        from ecomcore_projections.rows import statements_for

        self.tables = dict(tables)
        #: For projections that fold aggregates with the domain's own handlers: load an
        #: aggregate as it was at a version (history never changes, so this is exact).
        self.store = store
        self._statements = statements_for(self.tables)

    def apply_batch(self, conn: Connection, events: Sequence[tuple[int, DomainEvent]]) -> None:
        """Apply ``(position, event)`` pairs inside the caller's transaction: load what they
        need, change the rows in memory, write each changed row once.

        An event that cannot be applied raises :class:`ProjectionFailed` naming it; a fault
        of the database (transient, or rows it refuses) is raised as it came.
        """
        from ecomcore_projections.faults import is_transient
        from ecomcore_projections.rows import Batch

        if not events:
            return
        batch = Batch(conn, self.tables, self._statements)
        position, event = events[0]
        try:
            self.prepare(batch, events)
            for position, event in events:
                self.apply(batch, event, position)
        except Exception as error:
            if is_transient(error):
                raise
            raise ProjectionFailed(self.name, position, event, error) from error
        batch.flush()

    @classmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        """Add this projection's tables to ``metadata``, named by ``table_name(logical)``;
        return them by logical name.  Every table needs a primary key (rows are kept and
        compared by it)."""
        raise NotImplementedError

    def prepare(self, batch: Batch, events: Sequence[tuple[int, DomainEvent]]) -> None:
        """Load, in a few queries, the rows the batch's handlers will read."""

    def apply(self, batch: Batch, event: DomainEvent, position: int) -> None:
        """Apply one event to the batch's rows (in memory).

        Must be deterministic: the same events in the same order give the same rows,
        whatever the batch boundaries.  Raise on anything unexpected; never skip.
        """
        handler = self._handlers.get(type(event))
        if handler is None:
            raise ProjectionInconsistency(f"{self.name} does not handle {type(event).__qualname__}")
        handler(self, batch, event, position)

    def forget(self) -> None:
        """Drop in-memory caches: called when a batch's transaction rolled back."""


# ---------------------------------------------------------------------- queries


class Queries:
    """Base of the read models' query classes.

    ``tables`` are the projection's tables by logical name (``ReadModels.tables[name]``).
    Given an Engine each query opens its own connection; given a Connection it reads in it.
    """

    projection: ClassVar[type[Projection]]

    def __init__(self, bind: Engine | Connection, tables: Mapping[str, Table]) -> None:
        self.bind = bind
        self.tables = dict(tables)

    @classmethod
    def live(cls, engine: Engine) -> Any:
        """Queries over the live tables."""
        return cls(engine, cls.projection.define_tables(MetaData(), live_name))

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        if isinstance(self.bind, Connection):
            yield self.bind
        else:
            with self.bind.connect() as conn:
                yield conn

    def read(self, query: Any) -> list[Any]:
        with self.connection() as conn:
            return list(conn.execute(query))


def require_aware(now: datetime) -> datetime:
    """Queries that depend on the moment asked refuse a naive one."""
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {now!r}")
    return now
