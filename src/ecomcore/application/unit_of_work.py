"""One command's view of the store: aggregates it loaded or created, saved in one transaction."""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from ecomcore.domain.aggregate import Aggregate
from ecomcore.domain.errors import NotFound
from ecomcore.infrastructure.store import EventStore

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._aggregates: dict[UUID, Aggregate] = {}

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        if aggregate_id in self._aggregates:
            found = self._aggregates[aggregate_id]
        else:
            try:
                found = self._store.load(aggregate_id)
            except AggregateNotFoundError:
                return None
            self._aggregates[aggregate_id] = found
        if not isinstance(found, cls):
            raise NotFound(f"{aggregate_id} is a {type(found).__name__}, not a {cls.__name__}")
        return found

    def get(self, cls: type[A], aggregate_id: UUID, what: str | None = None) -> A:
        found = self.find(cls, aggregate_id)
        if found is None:
            raise NotFound(f"no {what or cls.__name__} with id {aggregate_id}")
        return found

    def add(self, aggregate: A) -> A:
        self._aggregates[aggregate.id] = aggregate
        return aggregate

    def commit(self) -> int:
        """Save every changed aggregate in one transaction; returns how many events."""
        changed = [a for a in self._aggregates.values() if a.has_pending_events]
        if not changed:
            return 0
        recordings = self._store.save(*changed)
        return len(recordings)
