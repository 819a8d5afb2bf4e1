"""What the Kafka tests share: running the command in-process, reading and comparing every
read-model table, and a store with a relay and Kafka workers following it as processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_broker import SESSION_TIMEOUT_MS

from ecomcore_projections.cli import main
from ecomcore_projections.read_models import REGISTRY, ReadModels, dump

PARTITIONS = 4


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``ecomcore ARGV`` in this process: its exit status, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tables(url: str) -> dict[str, Any]:
    """Every projection's tables in the read-model database at ``url``, rows in a stable order."""
    read_models = ReadModels(url, create_tables=False)
    try:
        return {name: dump(read_models, name) for name in REGISTRY}
    finally:
        read_models.dispose()


def assert_same_tables(got_url: str, reference: str | dict[str, Any], *, all_filled: bool = True,
                       context: str = "") -> None:
    """The read models at ``got_url`` hold exactly the rows of ``reference`` (a URL, or its
    ``tables`` already read). The demo must have filled every projection, and with
    ``all_filled`` every table of it; ``context`` (logs) is added to a failure's message."""
    got = tables(got_url)
    expected = tables(reference) if isinstance(reference, str) else reference
    assert all(any(rows for rows in expected[name].values()) for name in REGISTRY), "the demo should fill them"
    for name in REGISTRY:
        for logical, rows in expected[name].items():
            assert rows or not all_filled, f"{name}.{logical} is empty: the demo should fill it"
            assert got[name][logical] == rows, f"{name}.{logical} differs\n{context}"


def scalar(path: Path, sql: str, *params: Any) -> int:
    """One integer from a SQLite database; -1 while the table is missing or the file locked."""
    try:
        with sqlite3.connect(path, timeout=0.5) as db:
            row = db.execute(sql, params).fetchone()
            return -1 if row is None or row[0] is None else int(row[0])
    except sqlite3.OperationalError:
        return -1


class Cluster:
    """A SQLite store, a topic, and the relay and Kafka worker processes that follow them (each
    start of one logs to a file of its own)."""

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
        with log.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "ecomcore", *argv], stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1",
                     "ECOMCORE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)},
            )
        self.processes[name] = process
        return process

    def relay(self) -> subprocess.Popen[bytes]:
        return self._spawn("relay", ["relay", "--store", self.store_url, "--kafka", self.kafka, "--topic", self.topic,
                                     "--partitions", str(PARTITIONS), "--batch-size", "20", "--poll", "0.1",
                                     "--log-interval", "0.5", "--follow"])

    def worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self._spawn(name, ["project", "--source", "kafka", "--store", self.store_url, "--kafka", self.kafka,
                                  "--topic", self.topic, "--group", self.group, "--read-models", self.read_models,
                                  "--batch-size", "7", "--log-interval", "0.5", "--follow"])

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def all_logs(self) -> str:
        return "\n---\n".join(f"[{n}]\n{p.read_text(errors='replace')}" for n, p in self.logs.items())

    # what they did, as the databases show it
    def head(self) -> int:
        return scalar(self.store_db, "SELECT MAX(rowid) FROM stored_events")  # the notification id

    def relay_position(self) -> int:
        return scalar(self.store_db, "SELECT position FROM ecomcore_relay_position WHERE topic = ?", self.topic)

    def applied_positions(self) -> int:
        return scalar(self.kafka_db, "SELECT COALESCE(SUM(next_offset), 0) FROM rm_kafka_positions")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for name, process in self.processes.items():
                assert process.poll() is None, f"{what}: {name} exited with {process.returncode}\n{self.all_logs()}"
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


def trade(capsys: pytest.CaptureFixture[str], cluster: Cluster, orders: int, seed: int) -> None:
    """More orders in the same store: the demo continues the day."""
    code, _, err = run(capsys, "demo", "--store", cluster.store_url, "--orders", str(orders), "--seed", str(seed),
                       "--no-projections")
    assert code == 0, err


def finish_and_compare(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    """Everything stopped: the relay and a worker of the group until caught up, then the
    store-fed tables; a worker run again applies nothing."""
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
    assert_same_tables(cluster.read_models, reference, all_filled=False, context=cluster.all_logs())
    code, out, err = run(capsys, *worker)
    assert code == 0, err
    assert json.loads(out)["applied"] == 0
