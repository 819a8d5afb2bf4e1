"""One command's view of the store, and the transaction every command runs in.

A handler is a function ``handler(uow, …)``: it loads aggregates through the unit of
work, calls the domain, and adds what it creates; :func:`transact` then saves every
changed aggregate in one transaction. A handler that lost an optimistic-concurrency
race is run again from the start, on a fresh unit of work, a bounded number of times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Concatenate, ParamSpec, TypeVar
from uuid import UUID

from ecomcore.domain.aggregate import Aggregate
from ecomcore.domain.catalogue import Catalogue
from ecomcore.domain.errors import ConcurrencyConflict, NotFound
from ecomcore.infrastructure.settings import Settings
from ecomcore.infrastructure.store import AggregateNotFound, EventStore, StoreConflict

A = TypeVar("A", bound=Aggregate)
P = ParamSpec("P")
R = TypeVar("R")


class UnitOfWork:
    """The aggregates one attempt at one command loaded or created, saved together.

    It also carries what a handler works with: the moment the attempt started (``now``),
    the catalogue, and the shop's settings.
    """

    def __init__(self, store: EventStore, *, now: datetime, catalogue: Catalogue, settings: Settings) -> None:
        self._store = store
        self._aggregates: dict[UUID, Aggregate] = {}
        self.now = now
        self.catalogue = catalogue
        self.settings = settings

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        if aggregate_id in self._aggregates:
            found = self._aggregates[aggregate_id]
        else:
            try:
                found = self._store.load(aggregate_id)
            except AggregateNotFound:
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


def transact(
    begin: Callable[[], UnitOfWork],
    max_attempts: int,
    handler: Callable[Concatenate[UnitOfWork, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Run ``handler`` on a unit of work from ``begin`` and save what it changed atomically.

    On a storage conflict nothing was saved: wait a little (longer each time) and run it
    again; after ``max_attempts`` raise ``ConcurrencyConflict``.
    """
    for attempt in range(1, max_attempts + 1):
        uow = begin()
        result = handler(uow, *args, **kwargs)
        try:
            uow.commit()
        except StoreConflict as conflict:
            if attempt == max_attempts:
                raise ConcurrencyConflict(
                    f"gave up after {max_attempts} attempts: other writers kept changing the same records"
                ) from conflict
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
            continue
        return result
    raise AssertionError("unreachable")
