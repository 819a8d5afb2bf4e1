"""A small base for event-sourced aggregates whose events are frozen pydantic models.

A public command method checks the rules and does any work that must not be
repeated, then calls :meth:`Aggregate._record`, which builds the event and hands
it to the aggregate's ``@applies`` handler.  Handlers only change state, so replay
re-applies state changes and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, Self, TypeVar
from uuid import UUID

from pydantic import Field

from ecomcore.domain.values import Value

E = TypeVar("E", bound="DomainEvent")


class DomainEvent(Value):
    """An immutable fact about one aggregate, named in the past tense.

    ``class_version`` is stored with the event; when an event's shape changes,
    raise it and add ``upcast_vN_vN+1(state: dict) -> None`` to the class.
    """

    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int = Field(ge=1)
    timestamp: datetime


class Snapshot(DomainEvent):
    """The whole state of an aggregate at one version, so long streams load fast."""

    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Aggregate) -> Snapshot:
        from eventsourcing.utils import get_topic

        assert aggregate.modified_on is not None, "a snapshot is taken of an aggregate with history"
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=aggregate.modified_on,
            topic=get_topic(type(aggregate)),
            state=aggregate.snapshot_state(),
        )

    def restore(self) -> Aggregate:
        from eventsourcing.utils import resolve_topic

        cls: type[Aggregate] = resolve_topic(self.topic)
        aggregate = cls(self.originator_id)
        aggregate.restore_snapshot_state(self.state)
        aggregate.version = self.originator_version
        aggregate.modified_on = self.timestamp
        return aggregate


def applies(event_type: type[E]) -> Callable[[Callable[[Any, E], None]], Callable[[Any, E], None]]:
    """Mark an aggregate method as the state change for ``event_type``."""

    def mark(method: Callable[[Any, E], None]) -> Callable[[Any, E], None]:
        method._applies = event_type  # type: ignore[attr-defined]
        return method

    return mark


#: Which aggregate class each event class belongs to, for replay.
_OWNERS: dict[type[DomainEvent], type[Aggregate]] = {}


class Aggregate:
    """Base of every aggregate: identity, version, pending events, replay."""

    _handlers: ClassVar[dict[type[DomainEvent], Callable[[Any, Any], None]]] = {}
    #: Many commands change it at once (a SKU on sale, a campaign handing out coupons):
    #: its writers take turns rather than race (``ecomcore.infrastructure.locks``).
    contended: ClassVar[bool] = False

    def __init__(self, id: UUID) -> None:
        self.id = id
        self.version = 0
        self.created_on: datetime | None = None
        self.modified_on: datetime | None = None
        self._pending: list[DomainEvent] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = dict(cls._handlers)
        for value in vars(cls).values():
            event_type = getattr(value, "_applies", None)
            if event_type is not None:
                handlers[event_type] = value
                _OWNERS[event_type] = cls
        cls._handlers = handlers

    def _record(self, event_type: type[E], now: datetime, **facts: Any) -> E:
        event = event_type(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=now,
            **facts,
        )
        self._apply(event)
        self._pending.append(event)
        return event

    def _apply(self, event: DomainEvent) -> None:
        try:
            handler = self._handlers[type(event)]
        except KeyError:
            raise TypeError(f"{type(self).__name__} has no handler for {type(event).__name__}") from None
        handler(self, event)
        self.version = event.originator_version
        if self.created_on is None:
            self.created_on = event.timestamp
        self.modified_on = event.timestamp

    def collect_events(self) -> list[DomainEvent]:
        """Hand over the events recorded since the last save (eventsourcing protocol)."""
        events, self._pending = self._pending, []
        return events

    @property
    def has_pending_events(self) -> bool:
        return bool(self._pending)

    # Snapshots are opt-in: aggregates with long streams implement these two.
    def snapshot_state(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not take snapshots")

    def restore_snapshot_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not take snapshots")

    @classmethod
    def replay(cls, events: Iterable[DomainEvent], start: Self | None = None) -> Self | None:
        return project(start, events)  # type: ignore[return-value]


def project(aggregate: Aggregate | None, events: Iterable[DomainEvent]) -> Aggregate | None:
    """Fold events (optionally starting with a snapshot) into an aggregate."""
    for event in events:
        if isinstance(event, Snapshot):
            aggregate = event.restore()
            continue
        if aggregate is None:
            aggregate = _OWNERS[type(event)](event.originator_id)
        aggregate._apply(event)
    return aggregate
