"""Kafka relay and projector workers while the shop keeps trading: orders keep arriving in the
store while a relay and Kafka workers follow it; workers join and leave the group (rebalance)
or are SIGKILLed at random moments together with the relay, and are restarted. In the end a
worker of the group that runs until caught up gives the store-fed tables: nothing lost,
nothing applied twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_broker import SESSION_TIMEOUT_MS
from kafka_helpers import PARTITIONS, Cluster, finish_and_compare, trade

from ecomcore_projections.read_models import REGISTRY

pytestmark = pytest.mark.stores("sqlite")


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECOMCORE_KAFKA_SESSION_TIMEOUT_MS", str(SESSION_TIMEOUT_MS))


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, kafka_bootstrap)
    try:
        yield c
    finally:
        c.kill_all()


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
