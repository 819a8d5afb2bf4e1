"""``ecomcore relay`` against a real broker (tansu): every event once, in order per key, keyed
by its order, stock item or campaign; the position kept; one relay per store; a broker
that cannot be reached."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka_broker import SESSION_TIMEOUT_MS

from ecomcore import Settings
from ecomcore.infrastructure.mapper import event_class
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.cli import main

HEADERS = {"notification_id", "originator_id", "originator_version", "topic", "class_version"}


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``demo`` on PostgreSQL writes its provider statement into the current directory."""
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def relay(capsys: pytest.CaptureFixture[str], store_url: str, kafka: str, topic: str, *more: str) -> tuple[int, str, str]:
    return run(capsys, "relay", "--store", store_url, "--kafka", kafka, "--topic", topic, "--partitions", "3",
               "--batch-size", "50", *more)


def demo(capsys: pytest.CaptureFixture[str], store_url: str, orders: int, seed: int = 7) -> None:
    code, _, err = run(capsys, "demo", "--store", store_url, "--orders", str(orders), "--seed", str(seed),
                       "--no-projections")
    assert code == 0, err


def stored(store_url: str) -> list[Any]:
    store = EventStore(Settings(store_url=store_url))
    try:
        head = store.recorder.max_notification_id() or 0
        return list(store.recorder.select_notifications(1, head + 1, stop=head)) if head else []
    finally:
        store.close()


def expected_keys(store_url: str, notifications: list[Any]) -> dict[int, bytes]:
    """Each notification's key, worked out from whole aggregates (not the relay's way)."""
    store = EventStore(Settings(store_url=store_url))
    try:
        first: dict[Any, Any] = {}
        for n in notifications:
            if n.originator_version == 1:
                first[n.originator_id] = store.mapper.to_domain_event(n)
        keys = {}
        for n in notifications:
            aggregate = event_class(n.topic).__qualname__.split(".")[0]
            head = first[n.originator_id]
            key = {
                "Order": n.originator_id,
                "StockItem": n.originator_id,
                "CouponCampaign": n.originator_id,
                "Shipment": getattr(head, "order_id", None),
                "Checkout": head.order_ids[0] if aggregate == "Checkout" else None,
                "Coupon": getattr(head, "campaign_id", None),
            }[aggregate]
            assert key is not None, (aggregate, n)
            keys[n.id] = str(key).encode()
        return keys
    finally:
        store.close()


def consume(kafka: str, topic: str, count: int, *, timeout: float = 30.0) -> list[Any]:
    """Every record of the topic from the beginning, all partitions assigned (waits for ``count``)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False,
                             session_timeout_ms=SESSION_TIMEOUT_MS, consumer_timeout_ms=1000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        assert partitions, f"no topic {topic}"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if len(records) >= count:
                # a little longer: a duplicate would show up now
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
                break
        return records
    finally:
        consumer.close()


def check_records(store_url: str, records: list[Any], notifications: list[Any]) -> None:
    by_id = {n.id: n for n in notifications}
    keys = expected_keys(store_url, notifications)
    seen = [int(dict(r.headers)["notification_id"]) for r in records]
    assert sorted(seen) == sorted(by_id), "every event exactly once"
    partition_of_key: dict[bytes, int] = {}
    last_in_partition: dict[int, int] = defaultdict(int)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        headers = {name: value.decode() for name, value in record.headers}
        assert set(headers) >= HEADERS
        n = by_id[int(headers["notification_id"])]
        assert record.value == n.state  # byte-equal to the stored event
        assert headers["originator_id"] == str(n.originator_id)
        assert headers["originator_version"] == str(n.originator_version)
        assert headers["topic"] == n.topic
        assert headers["class_version"] == str(event_class(n.topic).class_version)
        assert record.key == keys[n.id]
        assert partition_of_key.setdefault(record.key, record.partition) == record.partition
        assert n.id > last_in_partition[record.partition], "notification order within a partition"
        last_in_partition[record.partition] = n.id


def test_relay_publishes_every_event_once_keyed_and_in_order(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str
) -> None:
    demo(capsys, store_url, 10)
    topic = f"t-{uuid.uuid4().hex[:8]}"
    code, out, err = relay(capsys, store_url, kafka_bootstrap, topic, "--until-caught-up", "--json")
    assert code == 0, err
    notifications = stored(store_url)
    assert f'"published": {len(notifications)}' in out
    aggregates = {event_class(n.topic).__qualname__.split(".")[0] for n in notifications}
    assert {"Order", "Checkout", "Shipment", "StockItem", "Coupon", "CouponCampaign"} <= aggregates
    check_records(store_url, consume(kafka_bootstrap, topic, len(notifications)), notifications)

    # Again: the position is kept, nothing is published twice.
    code, out, err = relay(capsys, store_url, kafka_bootstrap, topic, "--until-caught-up", "--json")
    assert code == 0, err
    assert '"published": 0' in out

    # More trading: only the new events.
    demo(capsys, store_url, 4, seed=8)
    more = stored(store_url)
    code, out, err = relay(capsys, store_url, kafka_bootstrap, topic, "--until-caught-up", "--json")
    assert code == 0, err
    assert f'"published": {len(more) - len(notifications)}' in out
    check_records(store_url, consume(kafka_bootstrap, topic, len(more)), more)


def test_a_second_relay_is_refused(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, tmp_path: Any
) -> None:
    demo(capsys, store_url, 2)
    topic = f"t-{uuid.uuid4().hex[:8]}"
    log = (tmp_path / "first.log").open("w+")
    first = subprocess.Popen(
        [sys.executable, "-m", "ecomcore_projections.cli", "relay", "--store", store_url, "--kafka", kafka_bootstrap,
         "--topic", topic, "--follow", "--poll", "0.2"],
        stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while "relaying to topic" not in (tmp_path / "first.log").read_text():
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the first relay did not start"
            time.sleep(0.1)
        started = time.monotonic()
        code, _, err = relay(capsys, store_url, kafka_bootstrap, topic, "--until-caught-up")
        assert time.monotonic() - started < 10
        lines = [line for line in err.splitlines() if line.startswith("error")]
        assert code == 3, err
        assert len(lines) == 1 and lines[0].startswith("error [store_relay_running]: another relay"), err
    finally:
        first.send_signal(signal.SIGTERM)
        status = first.wait(timeout=30)
    assert status == 0, (tmp_path / "first.log").read_text()
    # The first one published everything, and the lock is free again.
    code, out, err = relay(capsys, store_url, kafka_bootstrap, topic, "--until-caught-up", "--json")
    assert code == 0, err
    assert '"published": 0' in out


def test_an_unreachable_broker_is_retried_then_given_up(
    capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    demo(capsys, store_url, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    started = time.monotonic()
    code, out, err = relay(capsys, store_url, f"127.0.0.1:{port}", "t-none", "--until-caught-up",
                           "--give-up-after", "2")
    elapsed = time.monotonic() - started
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error [kafka_unavailable]: gave up after"), err
    assert "retrying in" in err  # logged and retried, not a crash
    assert elapsed < 20


def test_the_topic_it_creates_keeps_its_records_for_ever(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, store_url: str, kafka_bootstrap: str
) -> None:
    # A Kafka-fed read-model database started later replays the topic from its first record,
    # so the relay does not leave retention at the broker's default (7 days on Kafka). tansu
    # does not report topic configs back: this reads the CreateTopics request as sent.
    demo(capsys, store_url, 2)
    topic = f"r-{uuid.uuid4().hex[:8]}"
    with caplog.at_level("DEBUG", logger="kafka"):
        code, _, err = relay(capsys, store_url, kafka_bootstrap, topic, "--until-caught-up")
    assert code == 0, err
    sent = [r.getMessage() for r in caplog.records if "CreateTopicsRequest" in r.getMessage()]
    assert sent and all(topic in line and "retention.ms" in line and "'-1'" in line for line in sent), sent
