"""One command's view of the store, and the transaction every command runs in.

A handler is a function ``handler(uow, …)``: it loads aggregates through the unit of
work, calls the domain, and adds what it creates; :func:`transact` then saves every
changed aggregate in one transaction. A handler that lost an optimistic-concurrency
race is run again from the start, on a fresh unit of work, a bounded number of times.

So is a handler the domain refused on what it read, when another writer has changed
any of it since (or created what it found missing): aggregates are loaded one by one,
so a refusal can rest on a torn view, such as a checkout read before a concurrent run of
the very same request saved it and its stock read after. Run again on fresh state, a
command with an idempotency key first asks whether its request was done meanwhile and
answers that first outcome (the same checkout, payment or refund receipt); a refund
whose units another refund id took is refused as ``RefundRefused``. A refusal on state
that nobody changed since it was read is final and raised at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Concatenate, ParamSpec, TypeVar
from uuid import UUID

from ecomcore.domain.aggregate import Aggregate
from ecomcore.domain.catalogue import CatalogueReader
from ecomcore.domain.errors import ConcurrencyConflict, DomainError, NotFound
from ecomcore.infrastructure.locks import Locks
from ecomcore.infrastructure.settings import Settings
from ecomcore.infrastructure.store import EventStore, StoreConflict, store_errors

A = TypeVar("A", bound=Aggregate)
P = ParamSpec("P")
R = TypeVar("R")


def _no_pause() -> None:
    return None


#: Called once per unit of work, right after its first read from the store. A no-op;
#: tests replace it (``time.sleep``) to hold an attempt open between its first read and
#: the rest, so that races with concurrent writers happen on every run.
after_first_read: Callable[[], None] = _no_pause


class UnitOfWork:
    """The aggregates one attempt at one command loaded or created, saved together.

    It also carries what a handler works with: the moment the attempt started (``now``),
    the catalogue, and the shop's settings.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        now: datetime,
        catalogue: CatalogueReader,
        settings: Settings,
        locks: Locks | None = None,
    ) -> None:
        self._store = store
        #: A command's: it locks a contended aggregate before it reads it. (None: a query.)
        self._locks = locks
        self._aggregates: dict[UUID, Aggregate] = {}
        #: The version of every aggregate this attempt read from the store (0: not found).
        self._read_versions: dict[UUID, int] = {}
        self.now = now
        self.catalogue = catalogue
        self.settings = settings
        self._read_once = False
        self._committed = False
        self._unsaved: set[UUID] = set()

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        if aggregate_id in self._aggregates:
            found = self._aggregates[aggregate_id]
        elif aggregate_id in self._read_versions:
            return None  # read before and not found
        else:
            if cls.contended and self._locks is not None:
                self._locks.lock(aggregate_id)
            borrowed = self._store.borrow(cls, aggregate_id)
            self._first_read_done()
            if borrowed is None:
                self._read_versions[aggregate_id] = 0
                return None
            found = borrowed
            self._read_versions[aggregate_id] = found.version
            self._aggregates[aggregate_id] = found
        if not isinstance(found, cls):
            raise NotFound(f"{aggregate_id} is a {type(found).__name__}, not a {cls.__name__}")
        return found

    def get(self, cls: type[A], aggregate_id: UUID, what: str | None = None) -> A:
        found = self.find(cls, aggregate_id)
        if found is None:
            raise NotFound(f"no {what or cls.__name__} with id {aggregate_id}")
        return found

    def _first_read_done(self) -> None:
        if not self._read_once:
            self._read_once = True
            after_first_read()

    def add(self, aggregate: A) -> A:
        self._aggregates[aggregate.id] = aggregate
        return aggregate

    def read_has_changed(self) -> bool:
        """Whether another writer changed (or created) any aggregate this attempt read."""
        current = self._store.current_version
        return any(current(aggregate_id) != version for aggregate_id, version in self._read_versions.items())

    def commit(self) -> int:
        """Save every changed aggregate in one transaction; returns how many events."""
        changed = [a for a in self._aggregates.values() if a.has_pending_events]
        if not changed:
            self._committed = True
            return 0
        # Saving takes the pending events off the aggregates before it writes them: if it
        # fails, these hold changes the store never got.
        self._unsaved = {a.id for a in changed}
        recordings = self._store.save(*changed)
        self._committed = True
        return len(recordings)

    def end(self, *, keep_unchanged: bool = True) -> None:
        """Hand what this attempt borrowed back to the store's cache: everything after a
        commit; after a failure only what the attempt left unchanged, or (after an error
        that may have struck in the middle of a change) nothing."""
        aggregates, self._aggregates = self._aggregates, {}
        try:
            if not self._committed and not keep_unchanged:
                return
            if not self._committed:
                aggregates = {
                    i: a for i, a in aggregates.items() if i not in self._unsaved and not a.has_pending_events
                }
            self._store.give_back(aggregates.values())
        finally:
            if self._locks is not None:
                self._locks.release()


def transact(
    begin: Callable[[], UnitOfWork],
    max_attempts: int,
    handler: Callable[Concatenate[UnitOfWork, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Run ``handler`` on a unit of work from ``begin`` and save what it changed atomically.

    On a storage conflict nothing was saved: wait a little (longer each time) and run it
    again; after ``max_attempts`` raise ``ConcurrencyConflict``. A ``DomainError`` is
    raised as it is, unless another writer changed what the attempt read: then the
    refusal may rest on a torn or outdated view (of a concurrent run of this very
    request, say), and the handler runs again on fresh state, where it answers the
    request's first outcome if it was done meanwhile; on the last attempt the refusal
    is raised.

    Any other failure of the store is raised as its typed error (``StoreUnavailable``,
    ``StoreCorrupted``, …; see ``ecomcore.infrastructure.failures``).
    """
    with store_errors():
        return _attempts(begin, max_attempts, handler, *args, **kwargs)


def _attempts(
    begin: Callable[[], UnitOfWork],
    max_attempts: int,
    handler: Callable[Concatenate[UnitOfWork, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    for attempt in range(1, max_attempts + 1):
        uow = begin()
        try:
            result = handler(uow, *args, **kwargs)
            uow.commit()
        except StoreConflict as conflict:
            uow.end()
            if attempt == max_attempts:
                raise ConcurrencyConflict(
                    f"gave up after {max_attempts} attempts: other writers kept changing the same records"
                ) from conflict
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
            continue
        except DomainError:
            # Asked while the attempt still holds its locks: what it locked cannot have moved.
            final = attempt == max_attempts or not uow.read_has_changed()
            uow.end()
            if final:
                raise
            continue  # what it read has moved on and settled: look again at once
        except BaseException:
            uow.end(keep_unchanged=False)
            raise
        uow.end()
        return result
    raise AssertionError("unreachable")
