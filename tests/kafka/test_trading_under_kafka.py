"""Kafka relay and projector workers while the shop keeps trading: orders keep arriving in the
store while a relay and Kafka workers follow it; workers join and leave the group (rebalance)
or are SIGKILLed at random moments together with the relay, and are restarted. In the end a
worker of the group that runs until caught up gives the store-fed tables: nothing lost,
nothing applied twice."""

from __future__ import annotations

import json
import os
import random
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
from kafka_broker import SESSION_TIMEOUT_MS
from kafka_helpers import run, tables

from ecomcore_projections.read_models import REGISTRY

pytestmark = pytest.mark.stores("sqlite")

PARTITIONS = 4


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECOMCORE_KAFKA_SESSION_TIMEOUT_MS", str(SESSION_TIMEOUT_MS))


def assert_same_tables(got_url: str, reference_url: str) -> None:
    got, expected = tables(got_url), tables(reference_url)
    for name in REGISTRY:
        for logical, rows in expected[name].items():
            assert got[name][logical] == rows, f"{name}.{logical} differs"
    assert all(any(rows for rows in expected[name].values()) for name in REGISTRY), "the demo should fill them"


def _scalar(path: Path, sql: str, *params: Any) -> int:
    """One integer from a SQLite database; -1 while the table is missing or the file locked."""
    try:
        with sqlite3.connect(path, timeout=0.5) as db:
            row = db.execute(sql, params).fetchone()
            return -1 if row is None or row[0] is None else int(row[0])
    except sqlite3.OperationalError:
        return -1


class Cluster:
    """A store, a topic, and the relay and worker subprocesses that follow them."""

    def __init__(self, tmp_path: Path, kafka: str) -> None:
        self.tmp_path = tmp_path
        self.store_db = tmp_path / "store.sqlite"
        self.store_url = f"sqlite:///{self.store_db}"
        self.kafka = kafka
        self.topic = f"t-{uuid.uuid4().hex[:8]}"
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        self.kafka_db = tmp_path / "kafka.sqlite"
        self.read_models = f"sqlite:///{self.kafka_db}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.started = 0

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        self.started += 1
        log = self.tmp_path / f"{name}-{self.started}.log"
        self.logs[name] = log
        process = subprocess.Popen(
            [sys.executable, "-m", "ecomcore", *argv], stdout=subprocess.DEVNULL, stderr=log.open("wb"),
            env={**os.environ, "PYTHONUNBUFFERED": "1", "ECOMCORE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)},
        )
        self.processes[name] = process
        return process

    def relay(self) -> subprocess.Popen[bytes]:
        return self._spawn("relay", ["relay", "--store", self.store_url, "--kafka", self.kafka, "--topic", self.topic,
                                     "--partitions", str(PARTITIONS), "--batch-size", "20", "--poll", "0.1",
                                     "--log-interval", "0.5", "--follow"])

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, ["project", "--source", "kafka", "--store", self.store_url, "--kafka", self.kafka,
                                  "--topic", self.topic, "--group", self.group, "--read-models", self.read_models,
                                  "--batch-size", "7", "--log-interval", "0.5", "--follow"])

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def all_logs(self) -> str:
        return "\n---\n".join(f"[{n}]\n{p.read_text(errors='replace')}" for n, p in self.logs.items())

    def head(self) -> int:
        return _scalar(self.store_db, "SELECT MAX(rowid) FROM stored_events")  # the notification id

    def relay_position(self) -> int:
        return _scalar(self.store_db, "SELECT position FROM ecomcore_relay_position WHERE topic = ?", self.topic)

    def applied_positions(self) -> int:
        return _scalar(self.kafka_db, "SELECT COALESCE(SUM(next_offset), 0) FROM rm_kafka_positions")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for name, process in self.processes.items():
                assert process.poll() is None, f"{what}: {name} exited\n{self.all_logs()}"
            assert time.monotonic() < deadline, f"{what}: timed out\n{self.all_logs()}"
            time.sleep(0.05)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        process = self.processes.pop(name)
        process.send_signal(sig)
        return process.wait(timeout=30)

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.processes.clear()


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, kafka_bootstrap)
    try:
        yield c
    finally:
        c.kill_all()


def trade(capsys: pytest.CaptureFixture[str], cluster: Cluster, orders: int, seed: int) -> None:
    """More orders in the same store: the demo continues the day."""
    code, _, err = run(capsys, "demo", "--store", cluster.store_url, "--orders", str(orders), "--seed", str(seed),
                       "--no-projections")
    assert code == 0, err


def finish_and_compare(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    """Everything stopped: a worker of the group until caught up, then the store-fed tables."""
    code, out, err = run(capsys, "relay", "--store", cluster.store_url, "--kafka", cluster.kafka, "--topic",
                         cluster.topic, "--until-caught-up")
    assert code == 0, err
    worker = ("project", "--source", "kafka", "--store", cluster.store_url, "--kafka", cluster.kafka, "--topic",
              cluster.topic, "--group", cluster.group, "--read-models", cluster.read_models, "--until-caught-up",
              "--json")
    code, out, err = run(capsys, *worker)
    assert code == 0, err
    reference = f"sqlite:///{cluster.tmp_path}/reference.sqlite"
    code, out, err = run(capsys, "project", "--store", cluster.store_url, "--read-models", reference,
                         "--until-caught-up")
    assert code == 0, err
    assert_same_tables(cluster.read_models, reference)
    code, out, err = run(capsys, *worker)
    assert code == 0, err
    assert json.loads(out)["applied"] == 0


def assigned(log: str) -> str:
    """The last "assigned partition(s) ..." line of a worker's log, or ''."""
    lines = [line for line in log.splitlines() if "assigned partition(s)" in line]
    return lines[-1] if lines else ""


def test_a_rebalance_while_trading_loses_nothing_and_applies_nothing_twice(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    trade(capsys, cluster, orders=10, seed=31)
    cluster.relay()
    cluster.worker("first")
    all_partitions = f"assigned partition(s) {list(range(PARTITIONS))}"
    cluster.wait_for("the first worker applies records", lambda: cluster.applied_positions() > 0)
    trade(capsys, cluster, orders=10, seed=32)

    # A second worker joins mid-stream: the partitions are shared.
    cluster.worker("second")
    cluster.wait_for("the second worker gets partitions",
                     lambda: bool(assigned(cluster.log("second")))
                     and not assigned(cluster.log("second")).endswith("none of " + cluster.topic)
                     and all_partitions not in assigned(cluster.log("second")))
    cluster.wait_for("the first worker gives partitions up",
                     lambda: all_partitions not in assigned(cluster.log("first")))
    trade(capsys, cluster, orders=10, seed=33)
    before = cluster.applied_positions()
    cluster.wait_for("the workers keep applying", lambda: cluster.applied_positions() > before)

    # The first one leaves: the second one takes every partition.
    assert cluster.stop("first") == 0, cluster.log("first")
    cluster.wait_for("the second worker takes every partition",
                     lambda: all_partitions in assigned(cluster.log("second")))
    trade(capsys, cluster, orders=10, seed=34)
    head = cluster.head()
    cluster.wait_for("the relay catches up", lambda head=head: cluster.relay_position() == head)
    assert cluster.stop("relay") == 0, cluster.log("relay")
    assert cluster.stop("second") == 0, cluster.log("second")

    finish_and_compare(capsys, cluster)
    # The relay never restarted, so the topic holds each event once: every projection moved
    # past every record exactly once.
    assert cluster.applied_positions() == head * len(REGISTRY)


@pytest.mark.slow
def test_random_sigkills_of_the_relay_and_a_worker_while_trading_lose_nothing(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    rnd = random.Random(20261130)
    trade(capsys, cluster, orders=8, seed=41)
    cluster.relay()
    cluster.worker("worker")
    all_partitions = f"assigned partition(s) {list(range(PARTITIONS))}"
    cluster.wait_for("the worker applies records", lambda: cluster.applied_positions() > 0)
    killed: list[str] = []
    for round_ in range(10):
        # Orders arrive (in another process) while the relay and the worker follow; each is
        # SIGKILLed once a round, in a random order at random moments, and started again.
        demo = subprocess.Popen(
            [sys.executable, "-m", "ecomcore", "demo", "--store", cluster.store_url, "--orders", "8", "--seed",
             str(60 + round_), "--no-projections"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for victim in rnd.sample(["relay", "worker"], 2):
                time.sleep(rnd.uniform(0, 1.5))  # a random moment, not a pass condition
                killed.append(victim)
                assert cluster.stop(victim, signal.SIGKILL) == -signal.SIGKILL
                if victim == "relay":
                    cluster.relay()
                else:
                    cluster.worker("worker")
            _, demo_err = demo.communicate(timeout=120)
            assert demo.returncode == 0, demo_err.decode(errors="replace")
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
        head = cluster.head()
        cluster.wait_for(f"round {round_}: the relay catches up", lambda head=head: cluster.relay_position() == head)
        cluster.wait_for(f"round {round_}: the worker has every partition",
                         lambda: all_partitions in assigned(cluster.log("worker")))
    assert killed.count("relay") == killed.count("worker") == 10, killed
    assert cluster.stop("relay") == 0, cluster.log("relay")
    assert cluster.stop("worker") == 0, cluster.log("worker")

    finish_and_compare(capsys, cluster)
