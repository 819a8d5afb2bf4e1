"""Tamper evidence: a hash chain over the stored events, sealed by a step that follows the log.

Each link is ``SHA-256(previous link ‖ the event as stored)``: its notification id,
originator id, version, topic and state bytes (so an encrypted or compressed event is
covered exactly as it lies in the database). The first link's previous link is 32 zero
bytes.

The links are not written in the events' own transaction: the ``eventsourcing`` recorders
own that transaction. ``seal`` follows the log instead and appends the links of the events
after the last sealed one to a table of its own, ``ecomcore_chain`` (created if missing,
beside the events), one batch per transaction. Events written but not sealed yet can be
altered undetected until they are sealed; once sealed, any change to them is caught. An
attacker who can rewrite the chain table as well is caught only by ``verify`` against a
head (position and hash) the auditor kept outside the system.

``verify`` walks the events and the links side by side in notification order, in batches
(memory stays flat), and names the first event altered, removed, inserted or reordered
(by notification id, aggregate id and version), or the link of the chain table that was
edited. Each aggregate's versions are checked to run from 1 without a gap by the database
(one grouped query), and, when the read models exist, they are compared with a rebuild from
zero and the reconciliation checks are run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import inspect

from ecomcore import EcomcoreError
from ecomcore.infrastructure.store import EventStore

__all__ = [
    "CHAIN_TABLE",
    "GENESIS",
    "ChainProblem",
    "Head",
    "SealReport",
    "TamperEvidenceUnavailable",
    "VerifyReport",
    "link_of",
    "seal",
    "verify",
]

#: The table the links are kept in, beside the events.
CHAIN_TABLE = "ecomcore_chain"
#: The link before the first event.
GENESIS = bytes(32)
#: Below every notification id (SQLite's rowid and PostgreSQL's bigserial are signed 64-bit).
_BEFORE_ALL = -(2**63)

Progress = Callable[[str, int, int], None]


class TamperEvidenceUnavailable(EcomcoreError):
    """The store keeps nothing to seal (the in-memory store), or a head given is not one."""

    code = "invalid_command"


class StoredEventRow(NamedTuple):
    """An event exactly as the store holds it."""

    notification_id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


class Link(NamedTuple):
    notification_id: int
    originator_id: str
    originator_version: int
    link: bytes


@dataclass(frozen=True)
class Head:
    """The last link of the chain: an auditor keeps ``POSITION:HASH`` outside the system."""

    position: int
    link: bytes

    @property
    def hash(self) -> str:
        return self.link.hex()

    def __str__(self) -> str:
        return f"{self.position}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Head:
        found = re.fullmatch(r"\s*(-?\d+):([0-9a-fA-F]{64})\s*", text)
        if found is None:
            raise TamperEvidenceUnavailable(
                f"{text!r} is not a head: give POSITION:HASH as `ecomcore audit seal` printed it "
                "(a notification id, a colon, 64 hex digits)"
            )
        return cls(int(found.group(1)), bytes.fromhex(found.group(2)))

    def as_json(self) -> dict[str, Any]:
        return {"position": self.position, "hash": self.hash, "head": str(self)}


def link_of(previous: bytes, event: StoredEventRow) -> bytes:
    """The link after ``previous`` for ``event``: every field length-prefixed, so that no two
    different events give the same bytes."""
    digest = hashlib.sha256(previous)
    for part in (
        str(event.notification_id).encode(),
        str(event.originator_id).encode(),
        str(event.originator_version).encode(),
        event.topic.encode(),
        bytes(event.state),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class ChainProblem:
    """One thing found wrong; ``kind`` is one of ``altered``, ``removed``, ``inserted``,
    ``reordered``, ``chain_edited``, ``version_gap``, ``head_mismatch``, ``read_model``,
    ``reconciliation``."""

    kind: str
    message: str
    notification_id: int | None = None
    aggregate_id: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "notification_id": self.notification_id,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "message": self.message,
        }


@dataclass(frozen=True)
class SealReport:
    sealed: int
    head: Head | None


@dataclass
class VerifyReport:
    events: int = 0
    sealed_head: Head | None = None
    #: Events after the last link (and after ``--against``): not a failure.
    unsealed: int = 0
    against: Head | None = None
    read_models_checked: list[str] = field(default_factory=list)
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None


# --------------------------------------------------------------------------- the tables


class _Tables:
    """Raw SQL on the store's own events table and the chain table, on either database."""

    def __init__(self, store: EventStore) -> None:
        recorder: Any = store.recorder
        if getattr(recorder, "datastore", None) is None or getattr(recorder, "events_table_name", None) is None:
            raise TamperEvidenceUnavailable(
                "the in-memory store keeps nothing to seal or verify: use an SQLite or PostgreSQL store"
            )
        self.datastore = recorder.datastore
        self.postgres = type(recorder).__module__.endswith("postgres")
        if self.postgres:
            schema = self.datastore.schema
            self.events = f'"{schema}"."{recorder.events_table_name}"'
            self.chain = f'"{schema}"."{CHAIN_TABLE}"'
            self.nid, self.mark = "notification_id", "%s"
        else:
            self.events, self.chain = recorder.events_table_name, CHAIN_TABLE
            self.nid, self.mark = "rowid", "?"

    def sql(self, text: str) -> str:
        return text.format(events=self.events, chain=self.chain, nid=self.nid).replace("?", self.mark)

    @contextmanager
    def cursor(self, *, write: bool = False) -> Iterator[Any]:
        """A cursor in a transaction (committed when ``write``) whose rows are tuples."""
        if self.postgres:
            from psycopg.rows import tuple_row

            with self.datastore.get_connection() as connection, connection.transaction(force_rollback=not write):
                yield connection.cursor(row_factory=tuple_row)
        else:
            with self.datastore.transaction(commit=write) as cursor:
                yield cursor

    def rows(self, query: str, params: Sequence[Any] = (), cursor: Any = None) -> list[tuple]:
        if cursor is None:
            with self.cursor() as own:
                return self.rows(query, params, own)
        cursor.execute(self.sql(query), tuple(params))
        return [tuple(row) for row in cursor.fetchall()]

    def create(self) -> None:
        blob = "bytea" if self.postgres else "BLOB"
        with self.cursor(write=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.chain} (notification_id BIGINT PRIMARY KEY, "
                f"originator_id TEXT NOT NULL, originator_version BIGINT NOT NULL, link {blob} NOT NULL)"
            )

    def exists(self) -> bool:
        if self.postgres:
            found = self.rows("SELECT to_regclass(?)", (self.chain,))
            return found[0][0] is not None
        return bool(self.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHAIN_TABLE,)))

    def head(self) -> int:
        return int(self.rows("SELECT MAX({nid}) FROM {events}")[0][0] or 0)

    def last_link(self, cursor: Any = None) -> Link | None:
        found = self.rows(
            "SELECT notification_id, originator_id, originator_version, link FROM {chain} "
            "ORDER BY notification_id DESC LIMIT 1",
            cursor=cursor,
        )
        return _link(found[0]) if found else None

    def events_after(
        self, after: int, limit: int, stop: int | None = None, cursor: Any = None
    ) -> list[StoredEventRow]:
        until = "" if stop is None else " AND {nid} <= ?"
        params = (after,) if stop is None else (after, stop)
        rows = self.rows(
            "SELECT {nid}, originator_id, originator_version, topic, state FROM {events} "
            f"WHERE {{nid}} > ?{until} ORDER BY {{nid}} LIMIT {int(limit)}",
            params,
            cursor,
        )
        return [StoredEventRow(int(r[0]), str(r[1]), int(r[2]), _text(r[3]), _bytes(r[4])) for r in rows]

    def links_after(self, after: int, limit: int) -> list[Link]:
        rows = self.rows(
            "SELECT notification_id, originator_id, originator_version, link FROM {chain} "
            f"WHERE notification_id > ? ORDER BY notification_id LIMIT {int(limit)}",
            (after,),
        )
        return [_link(row) for row in rows]

    def sealed_at(self, aggregate_id: str, version: int) -> int | None:
        found = self.rows(
            "SELECT notification_id FROM {chain} WHERE originator_id = ? AND originator_version = ?",
            (aggregate_id, version),
        )
        return int(found[0][0]) if found else None

    def stored_at(self, aggregate_id: str, version: int) -> int | None:
        found = self.rows(
            "SELECT {nid} FROM {events} WHERE originator_id = ? AND originator_version = ?",
            (aggregate_id, version),
        )
        return int(found[0][0]) if found else None

    def first_version_gap(self) -> ChainProblem | None:
        """The aggregate whose versions do not run 1, 2, … without a gap, first in the log:
        found by the database, one grouped query; only that aggregate comes back."""
        found = self.rows(
            "SELECT originator_id, MIN(originator_version), MAX(originator_version), COUNT(*) FROM {events} "
            "GROUP BY originator_id HAVING MIN(originator_version) <> 1 OR MAX(originator_version) <> COUNT(*) "
            "ORDER BY MIN({nid}) LIMIT 1"
        )
        if not found:
            return None
        stored_id, lowest = str(found[0][0]), int(found[0][1])
        aggregate_id = _aggregate(stored_id)
        if lowest != 1:
            missing = 1
        else:
            missing = int(self.rows(
                "SELECT MIN(a.originator_version) + 1 FROM {events} a WHERE a.originator_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM {events} b WHERE b.originator_id = a.originator_id "
                "AND b.originator_version = a.originator_version + 1)",
                (stored_id,),
            )[0][0])
        after = self.rows(
            "SELECT {nid}, originator_version FROM {events} WHERE originator_id = ? AND originator_version > ? "
            "ORDER BY originator_version LIMIT 1",
            (stored_id, missing),
        )
        goes_on = f": the stored events go on at v{after[0][1]} (notification {after[0][0]})" if after else ""
        return ChainProblem(
            "version_gap",
            f"aggregate {aggregate_id} has no version {missing}{goes_on}",
            notification_id=int(after[0][0]) if after else None,
            aggregate_id=aggregate_id,
            version=missing,
        )


def _bytes(value: Any) -> bytes:
    """Stored bytes; SQLite keeps whatever type was written (an edit by hand may leave text)."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float):
        return str(value).encode()
    return bytes(value)


def _text(value: Any) -> str:
    return bytes(value).decode(errors="replace") if isinstance(value, bytes | memoryview) else str(value)


def _link(row: Sequence[Any]) -> Link:
    return Link(int(row[0]), str(row[1]), int(row[2]), _bytes(row[3]))


def _aggregate(originator_id: str) -> str:
    """An aggregate id as ecomcore prints it (SQLite stores it as 32 hex digits)."""
    try:
        return str(UUID(originator_id))
    except ValueError:
        return originator_id


def _describe(event: StoredEventRow | Link) -> str:
    return (
        f"notification {event.notification_id} (aggregate {_aggregate(event.originator_id)} "
        f"v{event.originator_version})"
    )


def _problem(kind: str, event: StoredEventRow | Link, message: str) -> ChainProblem:
    return ChainProblem(
        kind, message, event.notification_id, _aggregate(event.originator_id), event.originator_version
    )


# --------------------------------------------------------------------------- seal


def seal(store: EventStore, *, batch_size: int = 1000, progress: Progress | None = None) -> SealReport:
    """Append the links of every event after the last sealed one, up to the head as it is
    now, one batch per transaction; returns how many were sealed and the new head."""
    tables = _Tables(store)
    tables.create()
    head = tables.head()
    sealed = 0
    while True:
        with tables.cursor(write=True) as cursor:
            # One sealer at a time: take the write lock before reading the last link.
            if tables.postgres:
                cursor.execute(f"LOCK TABLE {tables.chain} IN EXCLUSIVE MODE")
            else:
                cursor.execute(f"DELETE FROM {tables.chain} WHERE 0 = 1")
            last = tables.last_link(cursor)
            previous, after = (last.link, last.notification_id) if last else (GENESIS, _BEFORE_ALL)
            batch = tables.events_after(after, batch_size, stop=head, cursor=cursor)
            links = []
            for event in batch:
                previous = link_of(previous, event)
                links.append((event.notification_id, event.originator_id, event.originator_version, previous))
            cursor.executemany(
                tables.sql("INSERT INTO {chain} (notification_id, originator_id, originator_version, link) "
                           "VALUES (?, ?, ?, ?)"),
                links,
            )
        sealed += len(batch)
        if progress is not None:
            progress("seal", batch[-1].notification_id if batch else head, head)
        if len(batch) < batch_size:
            break
    last = tables.last_link()
    return SealReport(sealed, Head(last.notification_id, last.link) if last else None)


# --------------------------------------------------------------------------- verify


class _Ahead:
    """An iterator one can look two items into."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._buffer: list[Any] = []

    def peek(self, depth: int = 0) -> Any:
        while len(self._buffer) <= depth:
            item = next(self._items, None)
            if item is None:
                return None
            self._buffer.append(item)
        return self._buffer[depth]

    def take(self) -> Any:
        item = self.peek()
        if self._buffer:
            self._buffer.pop(0)
        return item


def _batched(fetch: Callable[[int, int], Sequence[Any]], batch_size: int) -> Iterator[Any]:
    after = _BEFORE_ALL
    while True:
        batch = fetch(after, batch_size)
        yield from batch
        if len(batch) < batch_size:
            return
        after = batch[-1].notification_id


class _Walk:
    """The events and the links side by side; stops classifying at the first problem, but
    goes on recomputing the chain from the events alone (for ``against``)."""

    def __init__(self, tables: _Tables, report: VerifyReport, batch_size: int, progress: Progress | None) -> None:
        self.tables = tables
        self.report = report
        self.events = _Ahead(_batched(tables.events_after, batch_size))
        self.links = _Ahead(_batched(tables.links_after, batch_size))
        self.progress = progress
        self.every = batch_size
        self.total = tables.head()
        self.problem: ChainProblem | None = None
        #: The chain recomputed from the events alone, from the first one.
        self.recomputed = GENESIS
        #: The stored link of the last sealed notification passed.
        self.previous = GENESIS
        self.against_link: bytes | None = None
        self.last_sealed = report.sealed_head.position if report.sealed_head else None

    def run(self) -> None:
        while self.problem is None:
            event, link = self.events.peek(), self.links.peek()
            if event is None and link is None:
                break
            if link is not None and (event is None or link.notification_id < event.notification_id):
                self.problem = self._missing(link)
            elif link is not None and link.notification_id == event.notification_id:
                self._sealed(event, link)
            elif self.last_sealed is None or event.notification_id > self.last_sealed:
                break  # the rest is not sealed yet
            else:
                self.problem = self._unsealed_in_sealed_range(event)
        while self.events.peek() is not None:
            self._pass(self.events.take())
        if self.progress is not None:
            self.progress("verify", self.total, self.total)

    def _pass(self, event: StoredEventRow) -> bytes:
        """Count ``event`` and advance the recomputed chain over it."""
        self.recomputed = link_of(self.recomputed, event)
        self.report.events += 1
        against = self.report.against
        if against is not None and event.notification_id == against.position:
            self.against_link = self.recomputed
        if self.last_sealed is None or event.notification_id > max(
            self.last_sealed, against.position if against else self.last_sealed
        ):
            self.report.unsealed += 1
        if self.progress is not None and self.report.events % self.every == 0:
            self.total = max(self.total, event.notification_id)
            self.progress("verify", event.notification_id, self.total)
        return self.recomputed

    def _sealed(self, event: StoredEventRow, link: Link) -> None:
        linked = link_of(self.previous, event)
        if linked == link.link:
            self.previous = link.link
            self._pass(self.events.take())
            self.links.take()
            return
        if (event.originator_id, event.originator_version) != (link.originator_id, link.originator_version):
            self.problem = self._foreign(event, link)
            return
        self._pass(self.events.take())
        self.links.take()
        following, next_link = self.events.peek(), self.links.peek()
        if next_link is None:
            self.problem = _problem(
                "altered", event,
                f"{_describe(event)} does not match its seal (the last link): the event or that link was altered",
            )
        elif (
            following is not None
            and following.notification_id == next_link.notification_id
            and link_of(linked, following) == next_link.link
        ):
            self.problem = _problem(
                "chain_edited", link,
                f"the chain table's link for {_describe(link)} was edited: the event matches the links around it",
            )
        else:
            self.problem = _problem(
                "altered", event, f"{_describe(event)} was altered: its stored bytes do not match its seal"
            )

    def _foreign(self, event: StoredEventRow, link: Link) -> ChainProblem:
        """An event at a sealed position, but not the one sealed there."""
        sealed = self.tables.sealed_at(event.originator_id, event.originator_version)
        if sealed is not None:
            return _problem(
                "reordered", event,
                f"{_describe(event)} was reordered: it was sealed at notification {sealed}, "
                f"and notification {link.notification_id} was sealed as aggregate {_aggregate(link.originator_id)} "
                f"v{link.originator_version}",
            )
        return _problem(
            "inserted", event,
            f"{_describe(event)} was inserted: it was never sealed, and notification {link.notification_id} "
            f"was sealed as aggregate {_aggregate(link.originator_id)} v{link.originator_version}",
        )

    def _missing(self, link: Link) -> ChainProblem:
        """A sealed notification with no event at its position."""
        now_at = self.tables.stored_at(link.originator_id, link.originator_version)
        if now_at is not None:
            return _problem(
                "reordered", link,
                f"{_describe(link)} was reordered: it was sealed there and is now at notification {now_at}",
            )
        return _problem("removed", link, f"{_describe(link)} was removed: it was sealed and is no longer stored")

    def _unsealed_in_sealed_range(self, event: StoredEventRow) -> ChainProblem:
        """An event among the sealed ones that has no link of its own."""
        sealed = self.tables.sealed_at(event.originator_id, event.originator_version)
        if sealed is not None:
            return _problem(
                "reordered", event,
                f"{_describe(event)} was reordered: it was sealed at notification {sealed}",
            )
        linked = link_of(self.previous, event)
        self._pass(self.events.take())
        following, next_link = self.events.peek(), self.links.peek()
        if (
            following is not None
            and next_link is not None
            and following.notification_id == next_link.notification_id
            and link_of(linked, following) == next_link.link
        ):
            return _problem(
                "chain_edited", event, f"the chain table's link for {_describe(event)} was deleted"
            )
        return _problem(
            "inserted", event, f"{_describe(event)} was inserted: it lies among the sealed events and was never sealed"
        )


def verify(
    store: EventStore,
    read_models: Any = None,
    *,
    against: Head | None = None,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> VerifyReport:
    """Recompute the chain from the stored events and compare it with the stored links (and
    with ``against``, a head kept earlier), check each aggregate's versions are gapless, and,
    given ``read_models`` whose tables exist, compare them with a rebuild from zero and run
    the reconciliation checks. The report's ``first`` problem names the first event found
    wrong; an untouched store gives none."""
    tables = _Tables(store)
    report = VerifyReport(against=against)
    sealed = tables.last_link() if tables.exists() else None
    report.sealed_head = Head(sealed.notification_id, sealed.link) if sealed else None
    walk = _Walk(tables, report, batch_size, progress) if sealed else _Walk(_NoLinks(tables), report, batch_size,
                                                                           progress)
    walk.run()
    if walk.problem is not None:
        report.problems.append(walk.problem)
    if against is not None:
        if walk.against_link is None:
            report.problems.append(ChainProblem(
                "head_mismatch",
                f"the head kept earlier ({against}) names notification {against.position}, which is no longer "
                "stored: the history was cut short or renumbered",
                notification_id=against.position,
            ))
        elif walk.against_link != against.link:
            report.problems.append(ChainProblem(
                "head_mismatch",
                f"the history up to notification {against.position} no longer matches the head kept earlier: "
                f"kept {against.hash}, recomputed {walk.against_link.hex()} (events before it were rewritten, "
                "and the chain table re-sealed to match)" if walk.problem is None else
                f"the history up to notification {against.position} no longer matches the head kept earlier: "
                f"kept {against.hash}, recomputed {walk.against_link.hex()}",
                notification_id=against.position,
            ))
    gap = tables.first_version_gap()
    if gap is not None:
        report.problems.append(gap)
    if read_models is not None:
        _check_read_models(store, read_models, report, batch_size, progress)
    return report


class _NoLinks(_Tables):
    """The tables of a store never sealed: no links (every event is unsealed)."""

    def __init__(self, tables: _Tables) -> None:
        self.__dict__.update(tables.__dict__)

    def links_after(self, after: int, limit: int) -> list[Link]:
        return []


def _check_read_models(
    store: EventStore, read_models: Any, report: VerifyReport, batch_size: int, progress: Progress | None
) -> None:
    """``rebuild --check`` of every projection that has run, and the reconciliation checks."""
    from ecomcore_projections.base import describe_cause
    from ecomcore_projections.read_models import POSITIONS_TABLE
    from ecomcore_projections.rebuild import rebuild
    from ecomcore_projections.reconciliation.reports import ReconciliationQueries

    if not inspect(read_models.engine).has_table(POSITIONS_TABLE):
        return
    for name in read_models.classes:
        if read_models.stored(name) is None:
            continue
        try:
            checked = rebuild(store, read_models, name, check=True, batch_size=batch_size, progress=progress)
        except Exception as error:
            report.problems.append(ChainProblem("read_model", f"{name}: cannot rebuild: {describe_cause(error)}"))
            continue
        report.read_models_checked.append(name)
        for difference in checked.differences[:20]:
            report.problems.append(ChainProblem("read_model", f"{name}: {difference}"))
    if "reconciliation" in report.read_models_checked:
        ledger = ReconciliationQueries(read_models.engine, read_models.tables["reconciliation"])
        for discrepancy in ledger.discrepancies()[:20]:
            report.problems.append(ChainProblem("reconciliation", f"{discrepancy.subject}: {discrepancy.message}"))
