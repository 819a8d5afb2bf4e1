"""Kafka projector workers: apply the relay's records to the read models, as a consumer group.

Workers of one consumer group share the topic's partitions (kafka-python's
``KafkaConsumer``, ``enable_auto_commit=False``).  Each worker polls a batch of records
and, per projection, applies the batch's events and stores that projection's Kafka
positions, ``(topic, partition, next_offset)`` in ``rm_kafka_positions`` of the
read-model database, in ONE database transaction.  Kafka's committed offsets are never
read: when partitions are assigned, the worker seeks to the lowest stored position of its
projections, and records below a projection's stored position are skipped.  So a crash,
a rebalance or a second worker that briefly owns the same partition applies nothing twice
(the projection's position row is locked for the batch, as the store-fed workers do).

Second guard, by event identity: each partition row also keeps the highest notification
id applied from that partition.  A notification id stands for exactly one event
(aggregate id and version), and the relay publishes every key's events to one partition
in the order of the log, so a record whose notification id is not above it is a
republished duplicate (a relay that crashed between the broker's acknowledgement and
its position's write) and is skipped.

Records are decoded with the store's mapper (and its cipher, when the store encrypts its
events): the headers and value make the ``StoredEvent`` the store holds.  The worker opens
the store for that, and because ``order_status`` folds aggregates and loads one from the
store when its cache misses.

Interleaving: one order's records (its shipments' and checkout's included) and one stock
item's records arrive in order, but partitions interleave freely.  Every projection keeps
per-aggregate state only, so any interleaving that keeps each key's order gives the same
tables (see the README section on Kafka workers for the argument per projection).  Each
event is applied with its notification id as its position, as the store-fed workers do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from ecomcore import StoreCorrupted
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.renames import former_topics
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import (
    MixedSources,
    Projection,
    ProjectionFailed,
    SchemaMismatch,
    TopicRewound,
    describe_cause,
)
from ecomcore_projections.faults import Backoff, Faults, is_transient
from ecomcore_projections.kafka.relay import DEFAULT_TOPIC, KafkaUnavailable, fault_to_wait_out
from ecomcore_projections.read_models import KAFKA_POSITIONS_TABLE, ReadModels
from ecomcore_projections.runner import ReadModelsUnavailable

log = logging.getLogger("ecomcore.projections")

DEFAULT_GROUP = "ecomcore-projections"
#: The consumer's session timeout unless given (``ECOMCORE_KAFKA_SESSION_TIMEOUT_MS``).
DEFAULT_SESSION_TIMEOUT_MS = 10_000
#: How long the consumer waits for a first connection to the broker before the worker's
#: retry loop (logged, capped back-off, ``give_up_after``) takes over; the relay's default.
CONNECT_TIMEOUT_MS = 5000
#: How long a worker may go between polls before the group gives its partitions to others
#: (Kafka's ``max.poll.interval.ms``, also how long a rebalance waits for a live member);
#: a batch takes well under a second, so a minute only ever catches a stuck worker.
MAX_POLL_INTERVAL_MS = 60_000
#: How long a progress line waits for the broker's end offsets (not the worker's 30 s).
LAG_LOG_TIMEOUT_MS = 2000


def _positions_table(metadata: MetaData) -> Table:
    return Table(
        KAFKA_POSITIONS_TABLE,
        metadata,
        Column("projection", String(100), primary_key=True),
        Column("topic", String(249), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("next_offset", BigInteger, nullable=False),
        Column("last_notification_id", BigInteger, nullable=False),
    )


@dataclass(frozen=True)
class PartitionPosition:
    """A projection's stored position in one partition."""

    next_offset: int
    last_notification_id: int


@dataclass(frozen=True)
class PartitionLag:
    """What ``ecomcore status --source kafka`` shows per projection and partition."""

    projection: str
    topic: str
    partition: int
    position: int  # the stored next offset (0 before the projection applied anything from it)
    end_offset: int
    lag: int


@dataclass
class _Record:
    partition: int
    offset: int
    notification_id: int
    topic: str  # the event type
    event: DomainEvent | None  # None when no projection of this worker handles it


class KafkaProjector:
    """One worker of a consumer group: applies the topic's records to projections."""

    def __init__(
        self,
        store: EventStore,
        read_models: ReadModels,
        bootstrap: str,
        names: Iterable[str] | None = None,
        *,
        topic: str = DEFAULT_TOPIC,
        group: str = DEFAULT_GROUP,
        batch_size: int = 1000,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        log_interval: float = 10.0,
    ) -> None:
        self.store, self.read_models, self.bootstrap = store, read_models, bootstrap
        self.topic, self.group, self.batch_size = topic, group, batch_size
        self.session_timeout_ms, self.log_interval = session_timeout_ms, log_interval
        self.projections: dict[str, Projection] = {}
        self._topics: dict[str, set[str]] = {}
        for name in list(names) if names is not None else list(read_models.classes):
            cls = read_models.projection_class(name)
            self.projections[name] = cls(read_models.tables[name], store)
            self._topics[name] = {
                t for event_type in cls.handles for t in (get_topic(event_type), *former_topics(event_type))
            }
        self._handled = set().union(*self._topics.values()) if self._topics else set()
        self.metadata = MetaData()
        self.positions = _positions_table(self.metadata)
        self._consumer: Any = None
        self._assigned: set[int] = set()
        self._joined = False
        self._needs_seek = False
        self._rebalanced = False
        self._polled_nothing = False

    # ------------------------------------------------------------------ positions

    def create_tables(self) -> None:
        self.read_models.create_tables()
        self.metadata.create_all(self.read_models.engine)

    def stored_positions(self, name: str, conn: Connection | None = None) -> dict[int, PartitionPosition]:
        """``name``'s stored position in each partition of the topic it has applied records from."""
        if conn is None:
            with self.read_models.engine.connect() as own:
                return self.stored_positions(name, own)
        p = self.positions
        rows = conn.execute(
            select(p.c.partition, p.c.next_offset, p.c.last_notification_id).where(
                p.c.projection == name, p.c.topic == self.topic
            )
        )
        return {int(r[0]): PartitionPosition(int(r[1]), int(r[2])) for r in rows}

    def _store_positions(self, conn: Connection, name: str, moved: dict[int, PartitionPosition]) -> None:
        insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        p = self.positions
        for partition, position in moved.items():
            statement = insert(p).values(
                projection=name, topic=self.topic, partition=partition,
                next_offset=position.next_offset, last_notification_id=position.last_notification_id,
            )
            conn.execute(statement.on_conflict_do_update(
                index_elements=[p.c.projection, p.c.topic, p.c.partition],
                set_={"next_offset": position.next_offset, "last_notification_id": position.last_notification_id},
            ))

    # ------------------------------------------------------------------ consumer

    def _ensure_consumer(self) -> Any:
        if self._consumer is None:
            from kafka import ConsumerRebalanceListener, KafkaConsumer

            worker = self

            class Listener(ConsumerRebalanceListener):
                def on_partitions_revoked(self, revoked: Any) -> None:
                    worker._assigned -= {tp.partition for tp in revoked if tp.topic == worker.topic}

                def on_partitions_assigned(self, assigned: Any) -> None:
                    worker._assigned = {tp.partition for tp in assigned if tp.topic == worker.topic}
                    worker._joined = True
                    worker._rebalanced = True
                    log.info("assigned partition(s) %s of %s", sorted(worker._assigned) or "none", worker.topic)
                    # Here, before the poll looks for positions: the consumer has no offset
                    # reset policy (a stored position past a partition's end must not quietly
                    # become its start), so every assigned partition needs one now.
                    try:
                        worker._seek_to_stored()
                    except Exception as error:  # the read models unreachable: after the poll, again
                        log.warning("reading the stored positions: %s", describe_cause(error))
                        worker._needs_seek = True

            config: dict[str, Any] = {
                "bootstrap_servers": self.bootstrap,
                "group_id": self.group,
                "enable_auto_commit": False,
                "auto_offset_reset": "none",
                # Only the relay creates the topic (with its partitions and retention): a worker
                # started first waits for it rather than have the broker create a default one.
                "allow_auto_create_topics": False,
                "session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": max(100, self.session_timeout_ms // 3),
                "max_poll_records": self.batch_size,
                "max_poll_interval_ms": max(MAX_POLL_INTERVAL_MS, self.session_timeout_ms),
                "request_timeout_ms": max(30_000, self.session_timeout_ms + 5000),
                "reconnect_backoff_max_ms": 5000,
            }
            # The client's own bootstrap wait (30 s by default) would hide an unreachable broker
            # from the retry loop and its --give-up-after: wait as long as the relay does.
            if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG:
                config["bootstrap_timeout_ms"] = CONNECT_TIMEOUT_MS
            consumer = KafkaConsumer(**config)
            consumer.subscribe(topics=[self.topic], listener=Listener())
            self._consumer = consumer
        return self._consumer

    def _seek_to_stored(self) -> None:
        """Seek every assigned partition to the lowest stored position of this worker's projections
        (one record before it)."""
        from kafka import TopicPartition

        consumer = self._consumer
        stored = {name: self.stored_positions(name) for name in self.projections}
        for partition in sorted(self._assigned):
            offsets = [stored[name].get(partition, PartitionPosition(0, 0)).next_offset for name in self.projections]
            start = min(offsets, default=0)
            tp = TopicPartition(self.topic, partition)
            if start == 0:
                consumer.seek_to_beginning(tp)
            else:
                # From the last record applied, read again as a check: in a topic deleted and
                # filled again, the record there is not one applied (see ``apply``).
                consumer.seek(tp, start - 1)
        self._needs_seek = False

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._assigned, self._joined = set(), False
        if consumer is not None:
            try:
                consumer.close()  # leaves the group: the others take its partitions at once
            except Exception as error:  # pragma: no cover - best effort
                log.warning("closing the Kafka consumer: %s", error)

    # ------------------------------------------------------------------ records

    def decode(self, record: Any) -> _Record:
        """A record as the stored event it carries, decoded with the store's mapper."""
        headers = {name: value.decode() for name, value in record.headers or ()}
        try:
            notification_id = int(headers["notification_id"])
            stored = StoredEvent(
                originator_id=UUID(headers["originator_id"]),
                originator_version=int(headers["originator_version"]),
                topic=headers["topic"],
                state=record.value,
            )
        except Exception as error:
            raise ProjectionFailed(
                ",".join(self.projections), -1, None,
                StoreCorrupted(f"record {record.partition}/{record.offset} of {self.topic} is not a stored event "
                               f"({describe_cause(error)})"),
            ) from error
        event: DomainEvent | None = None
        try:
            if stored.topic in self._handled:
                event = cast(DomainEvent, self.store.mapper.to_domain_event(stored))
            else:
                self.store.event_class_of(stored)  # an event no code knows might be one we should handle
        except Exception as error:
            raise ProjectionFailed(",".join(self.projections), notification_id, None, error) from error
        return _Record(record.partition, record.offset, notification_id, stored.topic, event)

    def apply(self, name: str, records: Sequence[_Record]) -> int:
        """Apply the records new to projection ``name`` and its new positions, in one transaction."""
        projection = self.projections[name]
        expected = type(projection).schema_version
        topics = self._topics[name]
        try:
            with self.read_models.engine.begin() as conn:
                stored = self.read_models.lock(conn, name, expected)
                if stored.schema_version != expected:
                    raise SchemaMismatch(name, stored.schema_version, expected)
                if stored.position > 0:  # a store-fed worker's (or a rebuild's) position
                    raise MixedSources(name, "the store's log", "a Kafka-fed worker")
                positions = self.stored_positions(name, conn)
                moved: dict[int, PartitionPosition] = {}
                fresh: list[tuple[int, DomainEvent]] = []
                for record in records:
                    current = moved.get(record.partition) or positions.get(record.partition, PartitionPosition(0, 0))
                    if record.offset < current.next_offset:
                        if record.notification_id > current.last_notification_id:
                            raise TopicRewound(
                                self.topic, record.partition,
                                f"holds event #{record.notification_id} at offset {record.offset}, below projection "
                                f"{name}'s stored position {current.next_offset} (which had applied up to event "
                                f"#{current.last_notification_id})",
                            )
                        continue  # applied before (a rebalance, a second worker, a restart)
                    duplicate = record.notification_id <= current.last_notification_id
                    moved[record.partition] = PartitionPosition(
                        record.offset + 1, max(current.last_notification_id, record.notification_id)
                    )
                    if duplicate:
                        log.debug("skipping notification %d: already applied", record.notification_id)
                        continue
                    if record.topic in topics and record.event is not None:
                        fresh.append((record.notification_id, record.event))
                fresh.sort(key=lambda pair: pair[0])
                try:
                    projection.apply_batch(conn, fresh)
                except DBAPIError as error:
                    if is_transient(error) or not fresh:
                        raise
                    raise ProjectionFailed(projection.name, fresh[0][0], fresh[0][1], error) from error
                self._store_positions(conn, name, moved)
                return len(fresh)
        except BaseException:
            projection.forget()
            raise

    # ------------------------------------------------------------------ running

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Poll one batch and apply it to every projection; returns how many events were applied."""
        from kafka.errors import OffsetOutOfRangeError

        consumer = self._ensure_consumer()
        if self._needs_seek:
            self._seek_to_stored()
        self._rebalanced = False
        try:
            polled = consumer.poll(timeout_ms=timeout_ms, max_records=self.batch_size)
        except OffsetOutOfRangeError as error:
            out_of_range = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
            tp, offset = next(iter(out_of_range.items()), (None, -1))
            raise TopicRewound(self.topic, -1 if tp is None else tp.partition,
                               f"ends before the stored position {offset}") from None
        self._polled_nothing = not polled
        if self._rebalanced or self._needs_seek:  # a rebalance during the poll: what it returned may be stale
            self._seek_to_stored()
            return 0
        if not polled:
            self._check_not_rewound()
        records = [self.decode(r) for batch in polled.values() for r in batch]
        if not records:
            return 0
        records.sort(key=lambda r: (r.partition, r.offset))
        try:
            return sum(self.apply(name, records) for name in self.projections)
        except BaseException:
            self._needs_seek = True  # read the batch again from the stored positions
            raise

    def _check_not_rewound(self) -> None:
        """A fetch that answered a partition's end (high watermark) below the position this
        worker stands at, sought to from its stored positions: the partition lost records.
        (Kafka answers such a fetch with OFFSET_OUT_OF_RANGE, raised by the poll; tansu
        answers it with no records.)"""
        from kafka import TopicPartition

        consumer = self._consumer
        for partition in sorted(self._assigned):
            tp = TopicPartition(self.topic, partition)
            highwater = consumer.highwater(tp)
            if highwater is not None and consumer.position(tp) > highwater:
                raise TopicRewound(self.topic, partition,
                                   f"ends at offset {highwater}, before the stored position {consumer.position(tp)}")

    def caught_up(self) -> bool:
        """Every assigned partition read to its end offset (and the group joined).

        Also only after a poll that brought no records: some brokers (tansu) answer the
        end offset of a partition with the last batch's base offset + 1, short of its end.
        And only once a fetch from each partition answered (its high watermark known): a
        stored position past a partition's end is found out by fetching from it."""
        from kafka import TopicPartition

        if not self._joined or self._needs_seek or not self._polled_nothing:
            return False
        if not self._assigned:
            return True
        consumer = self._consumer
        partitions = [TopicPartition(self.topic, p) for p in sorted(self._assigned)]
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            position, highwater = consumer.position(tp), consumer.highwater(tp)
            if highwater is None or position < highwater or position < ends[tp]:
                return False
        return True

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        follow: bool = False,
        give_up_after: float | None = 60.0,
        backoff: Backoff | None = None,
        create_tables: bool = True,
    ) -> int:
        """Apply records until every assigned partition is at its end (with ``follow``: until
        ``stop`` is set); faults of the broker and the databases are retried with capped
        back-off.  Stops between batches once ``stop`` is set, leaving the group."""
        stop = stop or threading.Event()
        faults = Faults(log, stop, follow=follow, give_up_after=give_up_after, backoff=backoff)
        waiting_since: float | None = None  # for the group to assign partitions
        applied = since_log = 0
        last_log = time.monotonic()
        tables_ready = not create_tables
        log.info("projecting %s from Kafka topic %s (group %s)", ", ".join(self.projections), self.topic, self.group)
        try:
            while not stop.is_set():
                try:
                    if not tables_ready:
                        self.create_tables()
                        tables_ready = True
                    done = self.poll_once()
                    finished = not follow and not done and self.caught_up()
                except Exception as error:
                    kafka, what = fault_to_wait_out(error, self.bootstrap)
                    if kafka:
                        self.close()
                    faults.wait_out(error, what, KafkaUnavailable if kafka else ReadModelsUnavailable)
                    continue
                faults.recovered()
                applied += done
                since_log += done
                now = time.monotonic()
                if self._joined:
                    waiting_since = None
                elif waiting_since is None:
                    waiting_since = now
                elif now - last_log >= self.log_interval:
                    log.info("waiting for group %s to assign partitions of %s (%.0f s)", self.group, self.topic,
                             now - waiting_since)
                    last_log = now
                if since_log and now - last_log >= self.log_interval:
                    log.info("applied %d events (%.0f events/s); %s", since_log, since_log / (now - last_log),
                             self._lag_text())
                    last_log, since_log = now, 0
                if finished:
                    break
            if stop.is_set() or not follow:
                log.info("%s: applied %d events", "stopped" if stop.is_set() else "caught up", applied)
        finally:
            self.close()
        return applied

    def _lag_text(self) -> str:
        try:
            return "; ".join(
                f"{lag.projection} p{lag.partition} at {lag.position} (end {lag.end_offset}, lag {lag.lag})"
                for lag in self.lag(self._assigned, timeout_ms=LAG_LOG_TIMEOUT_MS)
            )
        except Exception as error:  # the log line must not stop the worker
            return f"lag unknown: {error}"

    # ------------------------------------------------------------------ lag and status

    def lag(self, partitions: Iterable[int] | None = None, *, timeout_ms: int | None = None) -> list[PartitionLag]:
        """Per projection and partition: stored next offset, end offset and lag (asking the
        broker for end offsets for at most ``timeout_ms``, default its request timeout)."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = self._consumer
        own = consumer is None
        if own:
            config: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "enable_auto_commit": False,
                                      "request_timeout_ms": max(30_000, self.session_timeout_ms + 5000)}
            if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG:  # not 30 s for a broker that is down
                config["bootstrap_timeout_ms"] = CONNECT_TIMEOUT_MS
            consumer = KafkaConsumer(**config)
        try:
            if partitions is None:
                partitions = sorted(consumer.partitions_for_topic(self.topic) or ())
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            ends = consumer.end_offsets(tps, timeout_ms=timeout_ms) if tps else {}
        finally:
            if own:
                consumer.close()
        found = []
        for name in self.projections:
            stored = self.stored_positions(name) if self._has_table() else {}
            for tp in tps:
                position = stored.get(tp.partition, PartitionPosition(0, 0)).next_offset
                end = int(ends[tp])
                found.append(PartitionLag(name, self.topic, tp.partition, position, end, max(0, end - position)))
        return found

    def _has_table(self) -> bool:
        from sqlalchemy import inspect

        return inspect(self.read_models.engine).has_table(KAFKA_POSITIONS_TABLE)


__all__ = [
    "DEFAULT_GROUP",
    "KAFKA_POSITIONS_TABLE",
    "KafkaProjector",
    "PartitionLag",
    "PartitionPosition",
]
