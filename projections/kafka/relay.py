"""The relay: publish the store's notification log, in order, to one Kafka topic.

Records.  One record per stored event:

- key: the order id for Order and Shipment events and for Checkout events (a checkout
  with several merchant orders is keyed by its *first* order id), the StockItem id for
  stock events, the campaign id for CouponCampaign and Coupon events (a coupon's
  campaign is named by its ``Issued`` event).  So one order's whole story, its shipments
  included, lands in one partition, in the order of the log.
- value: the stored event exactly as the store holds it (``notification.state``: JSON,
  or ciphertext when the store encrypts its events);
- headers (UTF-8): ``notification_id``, ``originator_id``, ``originator_version``,
  ``topic`` (the event type) and ``class_version`` (the class's, read from the class the
  topic names: an encrypted payload cannot be read).

Delivery: at least once.  The producer waits for every in-sync replica (``acks=all``) and
is idempotent (no duplicates from the producer's own retries); the relay records its
position, in ``ecomcore_relay_position`` in the store's database, only after the broker
acknowledged every record of the batch.  A relay killed between the acknowledgement and
the position's write publishes that batch again when it restarts: consumers deduplicate
by (``originator_id``, ``originator_version``).

One relay per store and topic: a PostgreSQL session advisory lock held on a connection
of its own, or on SQLite an exclusive ``flock`` on a file next to the store file.  The
position only moves from the value the relay read (compare and set), as a second guard.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.persistence import Notification

from ecomcore import EcomcoreError, StoreCorrupted, StoreUnavailable
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import describe_cause
from ecomcore_projections.faults import Backoff, Faults, is_transient

log = logging.getLogger("ecomcore.relay")

DEFAULT_TOPIC = "ecomcore.events"
DEFAULT_PARTITIONS = 6
POSITION_TABLE = "ecomcore_relay_position"
#: Aggregate ids whose key needs a look-up (shipments, checkouts, coupons), kept this many.
KEY_CACHE_SIZE = 100_000
#: How long one batch may wait for the broker's acknowledgements.
ACK_TIMEOUT_S = 30.0


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.split("+")[0]


class RelayRunning(EcomcoreError):
    """Another relay holds the lock of this store and topic."""

    code = "store_relay_running"


class KafkaUnavailable(EcomcoreError):
    """The broker stayed unreachable for longer than the relay waits."""

    code = "kafka_unavailable"


class PositionMoved(EcomcoreError):
    """The stored position is not the one this relay last wrote: another relay ran."""

    code = "store_relay_running"


def fault_to_wait_out(error: Exception, bootstrap: str) -> tuple[bool, str]:
    """Whether ``error`` is the broker's fault (else a database's that waiting out can cure),
    and a line for the log; any other error is raised again."""
    kafka = is_kafka_fault(error)
    if not kafka and not is_transient(error):
        raise error
    return kafka, f"Kafka {bootstrap}: {error}" if kafka else describe_cause(error)


@dataclass(frozen=True)
class Published:
    events: int
    position: int
    head: int


def is_kafka_fault(error: BaseException) -> bool:
    """A fault of the broker or the network to it (checked along the chain of causes); our
    own verdicts are not, whatever they were raised from."""
    from kafka.errors import KafkaError

    if isinstance(error, EcomcoreError):
        return False

    current: BaseException | None = error
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KafkaError):
            return True
        current = current.__cause__ or current.__context__
    return False


class Relay:
    """Reads the notification log after its stored position and publishes it to ``topic``."""

    def __init__(
        self,
        store: EventStore,
        bootstrap: str,
        *,
        store_url: str,
        topic: str = DEFAULT_TOPIC,
        partitions: int = DEFAULT_PARTITIONS,
        replication_factor: int = 1,
        batch_size: int = 1000,
        log_interval: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if _scheme(store_url) == "memory":
            raise RelayError("an in-memory store has no log another process could relay: give --store")
        self.store, self.bootstrap, self.store_url = store, bootstrap, store_url
        self.topic, self.partitions, self.replication_factor = topic, partitions, replication_factor
        self.batch_size, self.log_interval, self.connect_timeout = batch_size, log_interval, connect_timeout
        self._producer: Any = None
        self._topic_ready = False
        self._table_ready = False
        self._keys: OrderedDict[UUID | str, bytes] = OrderedDict()
        self.position: int | None = None  # as last read or written
        self.head = 0

    # ------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this store's and topic's relay lock; ``RelayRunning`` if another relay holds it."""
        if _scheme(self.store_url) in ("postgres", "postgresql"):
            with self._postgres_lock():
                yield
        else:
            with self._file_lock():
                yield

    @contextlib.contextmanager
    def _postgres_lock(self) -> Iterator[None]:
        import psycopg

        key = int.from_bytes(hashlib.sha256(f"ecomcore relay {self.topic}".encode()).digest()[:8], "big", signed=True)
        conninfo = "postgresql://" + self.store_url.split("://", 1)[1]
        connection = psycopg.connect(conninfo, autocommit=True, connect_timeout=max(int(self.connect_timeout), 1))
        try:
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (row and row[0]):
                raise RelayRunning(f"another relay is publishing this store to topic {self.topic!r} "
                                   "(it holds the PostgreSQL advisory lock); stop it first")
            yield
        finally:
            connection.close()  # ends the session, and with it the lock

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        path = unquote(self.store_url.split("://", 1)[1]).split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.topic)
        lock_path = Path(f"{path}.relay-{safe}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RelayRunning(f"another relay is publishing this store to topic {self.topic!r} "
                                   f"(it holds {lock_path}); stop it first") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    # ------------------------------------------------------------------ position

    def _sql(self, statement: str, params: Sequence[Any] = (), *, commit: bool = False) -> list[Any]:
        """Run one statement on the store's own database; its rows."""
        datastore: Any = getattr(self.store.recorder, "datastore", None)
        if _scheme(self.store_url) in ("postgres", "postgresql"):
            from psycopg import sql

            schema = getattr(datastore, "schema", "") or ""
            table = sql.Identifier(schema, POSITION_TABLE) if schema else sql.Identifier(POSITION_TABLE)
            query = sql.SQL(statement.replace("?", "%s")).format(table=table)
            with datastore.transaction(commit=commit) as cursor:
                cursor.execute(query, tuple(params))
                return [tuple(row.values()) for row in cursor.fetchall()] if cursor.description else []
        with datastore.transaction(commit=commit) as cursor:
            cursor.execute(statement.format(table=POSITION_TABLE), tuple(params))
            return list(cursor.fetchall())

    def _ensure_table(self) -> None:
        if not self._table_ready:
            self._sql("CREATE TABLE IF NOT EXISTS {table} (topic TEXT PRIMARY KEY, position BIGINT NOT NULL)",
                      commit=True)
            self._table_ready = True

    def stored_position(self) -> int:
        self._ensure_table()
        rows = self._sql("SELECT position FROM {table} WHERE topic = ?", (self.topic,))
        return int(rows[0][0]) if rows else 0

    def _store_position(self, old: int, new: int) -> None:
        if old == 0:
            self._sql("INSERT INTO {table} (topic, position) VALUES (?, 0) ON CONFLICT (topic) DO NOTHING",
                      (self.topic,), commit=True)
        moved = self._sql("UPDATE {table} SET position = ? WHERE topic = ? AND position = ? RETURNING position",
                          (new, self.topic, old), commit=True)
        if len(moved) != 1:
            raise PositionMoved(f"the relay position of topic {self.topic!r} moved away from {old}: "
                                "another relay is publishing this store")

    # ------------------------------------------------------------------ kafka

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            timeout_ms = int(self.connect_timeout * 1000)
            config: dict[str, Any] = {
                "bootstrap_servers": self.bootstrap,
                "acks": "all",
                "linger_ms": 5,
                "compression_type": None,
                "max_block_ms": timeout_ms,
                "request_timeout_ms": max(timeout_ms, 10_000),
                "reconnect_backoff_max_ms": 5000,
            }
            if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:
                config["bootstrap_timeout_ms"] = timeout_ms
            if "enable_idempotence" in KafkaProducer.DEFAULT_CONFIG:
                config["enable_idempotence"] = True
            self._producer = KafkaProducer(**config)
        if not self._topic_ready:
            if self._create_topic():
                self._publish_again_if_lost()
            self._topic_ready = True
        return self._producer

    def _publish_again_if_lost(self) -> None:
        """The topic had to be created although events were published to it: it was deleted,
        or the broker lost its data. Everything is published again from the first event
        (at least once still holds; consumers see the log again from its start)."""
        published = self.stored_position()
        if published:
            log.warning("topic %s was missing although %d events had been published to it (deleted, or a broker "
                        "that lost its data): publishing the whole log again", self.topic, published)
            self._store_position(published, 0)
            self.position = None  # read again

    def _create_topic(self) -> bool:
        """Create the topic if it is missing; whether it was."""
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.connect_timeout * 1000))
        try:
            if self.topic in set(admin.list_topics()):
                return False
            try:
                # Kept for ever (the broker's default deletes after 7 days): a new Kafka-fed
                # read-model database replays the topic from its first record.
                admin.create_topics([NewTopic(self.topic, self.partitions, self.replication_factor,
                                              topic_configs={"retention.ms": "-1"})])
                log.info("created topic %s with %d partition(s), kept for ever (retention.ms=-1)",
                         self.topic, self.partitions)
                return True
            except TopicAlreadyExistsError:
                return False  # another client created it just now
        finally:
            admin.close()

    def _drop_producer(self) -> None:
        """After a fault: a new producer next time, and the topic looked at again (a broker
        that lost its data, a topic deleted meanwhile)."""
        producer, self._producer = self._producer, None
        self._topic_ready = False
        if producer is not None:
            _abandon(producer)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=5)

    # ------------------------------------------------------------------ records

    def key_of(self, notification: Notification) -> bytes:
        """The record's key (see the module's docstring)."""
        cls = self.store.event_class_of(notification)
        aggregate = cls.__qualname__.split(".")[0]
        originator = notification.originator_id
        if aggregate not in ("Shipment", "Checkout", "Coupon"):
            return str(originator).encode()  # Order, StockItem, CouponCampaign: their own id
        cached = self._keys.get(originator)
        if cached is not None:
            self._keys.move_to_end(originator)
            return cached
        first: Any = notification
        if notification.originator_version != 1:
            found = self.store.recorder.select_events(originator, limit=1)
            first = found[0] if found else notification
        event = cast(DomainEvent, self.store.mapper.to_domain_event(first))
        if aggregate == "Shipment":
            key_id = getattr(event, "order_id", originator)
        elif aggregate == "Checkout":
            order_ids = getattr(event, "order_ids", ())
            key_id = order_ids[0] if order_ids else originator
        else:
            key_id = getattr(event, "campaign_id", originator)
        key = str(key_id).encode()
        self._keys[originator] = key
        if len(self._keys) > KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return key

    def headers_of(self, notification: Notification) -> list[tuple[str, bytes]]:
        cls = self.store.event_class_of(notification)
        return [
            ("notification_id", str(notification.id).encode()),
            ("originator_id", str(notification.originator_id).encode()),
            ("originator_version", str(notification.originator_version).encode()),
            ("topic", notification.topic.encode()),
            ("class_version", str(cls.class_version).encode()),
        ]

    # ------------------------------------------------------------------ running

    def publish_batch(self) -> int:
        """Publish the next batch after the stored position; returns how many were published."""
        producer = self._ensure_producer()
        if self.position is None:
            self.position = self.stored_position()
        recorder = self.store.recorder
        self.head = recorder.max_notification_id() or 0
        if self.position >= self.head:
            return 0
        batch = recorder.select_notifications(self.position + 1, self.batch_size, stop=self.head)
        if not batch:
            return 0
        futures = []
        for notification in batch:
            try:
                key, headers = self.key_of(notification), self.headers_of(notification)
            except StoreCorrupted:
                raise
            except Exception as error:
                raise StoreCorrupted(f"cannot relay notification {notification.id}: {error}",
                                     notification_id=notification.id) from error
            futures.append(producer.send(self.topic, key=key, value=notification.state, headers=headers))
        producer.flush(timeout=ACK_TIMEOUT_S)
        for future in futures:
            future.get(timeout=ACK_TIMEOUT_S)  # raises the broker's refusal, or a time-out
        self._store_position(self.position, batch[-1].id)
        self.position = batch[-1].id
        return len(batch)

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        follow: bool = False,
        poll_interval: float = 0.5,
        give_up_after: float | None = 60.0,
        backoff: Backoff | None = None,
    ) -> Published:
        """Publish up to the head (with ``follow``: until ``stop`` is set), retrying faults of
        the broker and the store with capped back-off; only a run that does not follow gives
        up, after ``give_up_after`` seconds of faults in a row."""
        stop = stop or threading.Event()
        faults = Faults(log, stop, follow=follow, give_up_after=give_up_after, backoff=backoff)
        published = 0
        started = last_log = time.monotonic()
        since_log = 0
        log.info("relaying to topic %s on %s", self.topic, self.bootstrap)
        while not stop.is_set():
            try:
                done = self.publish_batch()
            except Exception as error:
                kafka, what = fault_to_wait_out(error, self.bootstrap)
                self._drop_producer()
                self.position = None  # read it again: records may have to be published again
                faults.wait_out(error, what, KafkaUnavailable if kafka else StoreUnavailable)
                continue
            faults.recovered()
            published += done
            since_log += done
            now = time.monotonic()
            if since_log and now - last_log >= self.log_interval:
                log.info("published %d events (%.0f events/s); position %s; head %d",
                         since_log, since_log / (now - last_log), self.position, self.head)
                last_log, since_log = now, 0
            if not follow and done < self.batch_size:
                break  # the head as it was when the batch was read
            if not done:
                stop.wait(poll_interval)
        elapsed = time.monotonic() - started
        log.info("%s at position %s (head %d): %d events in %.1f s",
                 "stopped" if stop.is_set() else "caught up", self.position, self.head, published, elapsed)
        return Published(published, self.position or 0, self.head)


def _abandon(producer: Any) -> None:
    """Close a producer without waiting for what it could not deliver.

    kafka-python's ``close(timeout=0)`` flushes first, and with the broker gone that flush
    raises before the sender thread is stopped (kafka-python 3.0): the thread would linger
    and ``__del__`` print a traceback. The sender is then force-closed, which fails what is
    pending (those events are published again from the stored position)."""
    try:
        producer.close(timeout=0)
    except Exception as error:
        log.debug("closing the Kafka producer: %s; forcing it", error)
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True  # its __del__ would try to close it again


class RelayError(EcomcoreError):
    code = "invalid_store_url"


__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_TOPIC",
    "POSITION_TABLE",
    "KafkaUnavailable",
    "PositionMoved",
    "Published",
    "Relay",
    "RelayRunning",
    "is_kafka_fault",
]
