"""Kafka projector workers under faults: any interleaving of the partitions (that keeps each
key's order) gives the store-fed tables; a worker killed with SIGKILL is replaced by another
of its group with nothing lost and nothing applied twice; a broker that cannot be reached is
retried, then given up with one error line."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka_broker import SESSION_TIMEOUT_MS
from kafka_helpers import assert_same_tables, run, tables

from ecomcore import Settings
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.kafka.consumer import KafkaProjector
from ecomcore_projections.kafka.relay import Relay
from ecomcore_projections.read_models import REGISTRY, ReadModels


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECOMCORE_KAFKA_SESSION_TIMEOUT_MS", str(SESSION_TIMEOUT_MS))


def demo_and_reference(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path, orders: int,
                       seed: int) -> str:
    code, _, err = run(capsys, "demo", "--store", store_url, "--orders", str(orders), "--seed", str(seed),
                       "--no-projections")
    assert code == 0, err
    reference = f"sqlite:///{tmp_path}/reference.sqlite"
    code, _, err = run(capsys, "project", "--store", store_url, "--read-models", reference, "--until-caught-up")
    assert code == 0, err
    return reference


# ---------------------------------------------------------------------- interleavings


@pytest.fixture
def history(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A small demo store, its notifications as records (one partition per key, offsets in
    log order) and the store-fed tables."""
    store_url = f"sqlite:///{tmp_path}/store.sqlite"
    reference = demo_and_reference(capsys, store_url, tmp_path, orders=6, seed=5)
    store = EventStore(Settings(store_url=store_url))
    try:
        relay = Relay(store, "127.0.0.1:1", store_url=store_url, topic="interleave")
        head = store.recorder.max_notification_id() or 0
        notifications = list(store.recorder.select_notifications(1, head + 1, stop=head))
        partition_of: dict[bytes, int] = {}
        partitions: dict[int, list[Any]] = {}
        for n in notifications:
            partition = partition_of.setdefault(relay.key_of(n), len(partition_of))
            records = partitions.setdefault(partition, [])
            records.append(SimpleNamespace(partition=partition, offset=len(records), headers=relay.headers_of(n),
                                           value=n.state))
        assert len(partitions) > 5
        yield {"store": store, "partitions": partitions, "reference": tables(reference), "count": len(notifications)}
    finally:
        store.close()


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.generate], database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rnd=st.randoms(use_true_random=False))
def test_any_interleaving_of_the_partitions_gives_the_store_fed_tables(
    history: dict[str, Any], tmp_path: Path, rnd: Any
) -> None:
    # A random merge of the partitions keeping each one's order, cut into random batches.
    pending = {p: list(records) for p, records in history["partitions"].items()}
    stream: list[Any] = []
    while pending:
        partition = rnd.choice(sorted(pending))
        take = rnd.randint(1, 3)
        stream.extend(pending[partition][:take])
        del pending[partition][:take]
        if not pending[partition]:
            del pending[partition]
    assert len(stream) == history["count"]

    url = f"sqlite:///{tmp_path}/kafka-{uuid.uuid4().hex[:8]}.sqlite"
    read_models = ReadModels(url, create_tables=False)
    try:
        projector = KafkaProjector(history["store"], read_models, "127.0.0.1:1", topic="interleave")
        projector.create_tables()
        applied = 0
        at = 0
        while at < len(stream):
            size = rnd.randint(1, 4)
            batch = [projector.decode(r) for r in stream[at:at + size]]
            at += size
            batch.sort(key=lambda r: (r.partition, r.offset))  # as poll_once does
            applied += sum(projector.apply(name, batch) for name in projector.projections)
        # The same records again (a rebalance, a restart): nothing is applied twice.
        again = [projector.decode(r) for r in stream]
        again.sort(key=lambda r: (r.partition, r.offset))
        assert sum(projector.apply(name, again) for name in projector.projections) == 0
    finally:
        read_models.dispose()
    assert applied > 0
    assert_same_tables(url, history["reference"], all_filled=False)  # a small demo ships nothing


# ---------------------------------------------------------------------- SIGKILL


def _worker(store_url: str, kafka: str, topic: str, read_models: str, log: Path) -> subprocess.Popen[bytes]:
    # The group is named after the topic: each test has its own (the broker outlives the test).
    return subprocess.Popen(
        [sys.executable, "-m", "ecomcore", "project", "--source", "kafka", "--store", store_url, "--kafka", kafka,
         "--topic", topic, "--group", f"g-{topic}", "--read-models", read_models, "--batch-size", "3",
         "--log-interval", "0.5", "--follow"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "1", "ECOMCORE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)},
    )


def _applied_positions(path: Path) -> int:
    """How many records the workers have moved past, over all projections and partitions."""
    try:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT COALESCE(SUM(next_offset), 0) FROM rm_kafka_positions").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet, or locked by the worker
        return 0


def _wait_for(what: str, check: Any, processes: list[subprocess.Popen[bytes]], logs: list[Path],
              timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for process, log in zip(processes, logs, strict=True):
            assert process.poll() is None, f"{what}: a worker exited\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{what}: timed out\n" + "\n---\n".join(p.read_text() for p in logs)
        time.sleep(0.05)


@pytest.mark.stores("sqlite")
def test_a_worker_killed_mid_stream_is_replaced_nothing_lost_nothing_twice(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    reference = tables(demo_and_reference(capsys, store_url, tmp_path, orders=25, seed=13))
    topic = f"k-{uuid.uuid4().hex[:8]}"
    code, out, err = run(capsys, "relay", "--store", store_url, "--kafka", kafka_bootstrap, "--topic", topic,
                       "--partitions", "4", "--until-caught-up", "--json")
    assert code == 0, err
    every = json.loads(out)["published"] * len(REGISTRY)  # the positions' sum once all is applied
    db = tmp_path / "kafka.sqlite"
    read_models = f"sqlite:///{db}"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    first = _worker(store_url, kafka_bootstrap, topic, read_models, logs[0])
    second: subprocess.Popen[bytes] | None = None
    try:
        # Killed once it has applied something, mid-stream.
        _wait_for("the first worker applies records", lambda: _applied_positions(db) > 0, [first], logs[:1])
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert _applied_positions(db) < every, "killed after it had applied everything: not mid-stream"

        second = _worker(store_url, kafka_bootstrap, topic, read_models, logs[1])
        # The group gives it every partition once the killed one's session has timed out.
        _wait_for("the second worker takes over every partition",
                  lambda: "assigned partition(s) [0, 1, 2, 3]" in logs[1].read_text(), [second], logs[1:])
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, logs[1].read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    # A worker of the group that runs until caught up finishes whatever is left, exactly once.
    code, out, err = run(capsys, "project", "--source", "kafka", "--store", store_url, "--kafka", kafka_bootstrap,
                         "--topic", topic, "--group", f"g-{topic}", "--read-models", read_models, "--until-caught-up",
                         "--json")
    assert code == 0, err
    assert_same_tables(read_models, reference)
    assert _applied_positions(db) == every
    code, out, err = run(capsys, "project", "--source", "kafka", "--store", store_url, "--kafka", kafka_bootstrap,
                         "--topic", topic, "--group", f"g-{topic}", "--read-models", read_models, "--until-caught-up",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["applied"] == 0


# ---------------------------------------------------------------------- unreachable broker


@pytest.mark.stores("sqlite")
def test_an_unreachable_broker_is_retried_then_given_up(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "demo", "--store", store_url, "--orders", "1", "--no-projections")
    assert code == 0, err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    started = time.monotonic()
    code, _, err = run(capsys, "project", "--source", "kafka", "--store", store_url, "--kafka", f"127.0.0.1:{port}",
                       "--topic", "t-none", "--read-models", f"sqlite:///{tmp_path}/kafka.sqlite",
                       "--until-caught-up", "--give-up-after", "2")
    elapsed = time.monotonic() - started
    assert code != 0, err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error ["), err
    assert "retrying in" in err, err  # logged and retried, not a crash
    assert elapsed < 20, err


# ---------------------------------------------------------------------- PostgreSQL


@pytest.mark.stores("postgres")
def test_one_worker_on_postgresql_equals_the_store_fed_tables(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    reference = tables(demo_and_reference(capsys, store_url, tmp_path, orders=15, seed=11))
    topic = f"pg-{uuid.uuid4().hex[:8]}"
    code, _, err = run(capsys, "relay", "--store", store_url, "--kafka", kafka_bootstrap, "--topic", topic,
                       "--partitions", "4", "--batch-size", "40", "--until-caught-up")
    assert code == 0, err
    # The read models in the store's own PostgreSQL database (the default).
    worker = ("project", "--source", "kafka", "--store", store_url, "--kafka", kafka_bootstrap, "--topic", topic,
              "--batch-size", "25", "--until-caught-up", "--json")
    code, out, err = run(capsys, *worker)
    assert code == 0, err
    assert json.loads(out)["applied"] > 0
    assert_same_tables(store_url, reference)
    code, out, err = run(capsys, *worker)
    assert code == 0, err
    assert json.loads(out)["applied"] == 0
