"""``ecomcore project --source kafka`` against a real broker (tansu): a demo history relayed to a
4-partition topic, applied by Kafka workers of one consumer group, gives the same read-model
tables as the store-fed workers; nothing is applied twice (re-runs, a relay that publishes
everything again); two workers share the partitions; SIGTERM ends a worker cleanly; ``status
--source kafka`` shows each partition's position, end offset and lag."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka_broker import SESSION_TIMEOUT_MS
from kafka_helpers import assert_same_tables, run, tables

from ecomcore_projections.read_models import REGISTRY

pytestmark = pytest.mark.stores("sqlite")


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECOMCORE_KAFKA_SESSION_TIMEOUT_MS", str(SESSION_TIMEOUT_MS))


@pytest.fixture
def relayed(capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """A 15-order demo store relayed to a fresh 4-partition topic, and the store-fed tables."""
    code, _, err = run(capsys, "demo", "--store", store_url, "--orders", "15", "--seed", "11", "--no-projections")
    assert code == 0, err
    topic = f"w-{uuid.uuid4().hex[:8]}"
    code, _, err = run(capsys, "relay", "--store", store_url, "--kafka", kafka_bootstrap, "--topic", topic,
                       "--partitions", "4", "--batch-size", "40", "--until-caught-up")
    assert code == 0, err
    reference = f"sqlite:///{tmp_path}/reference.sqlite"
    code, out, err = run(capsys, "project", "--store", store_url, "--read-models", reference, "--until-caught-up",
                         "--json")
    assert code == 0, err
    # A group of its own: the broker outlives the test, and a group's members (or a rebalance
    # left pending by them) must not carry over into the next test.
    return {"topic": topic, "group": f"g-{topic}", "reference": reference,
            "read_models": f"sqlite:///{tmp_path}/kafka.sqlite", "applied": str(json.loads(out)["applied"])}


def kafka_worker(capsys: pytest.CaptureFixture[str], store_url: str, kafka: str, relayed: dict[str, str],
                 *more: str) -> tuple[int, str, str]:
    return run(capsys, "project", "--source", "kafka", "--store", store_url, "--kafka", kafka,
               "--topic", relayed["topic"], "--read-models", relayed["read_models"], "--batch-size", "25", *more)


def test_one_worker_equals_the_store_fed_tables_and_applies_nothing_twice(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, relayed: dict[str, str]
) -> None:
    code, out, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["applied"] == int(relayed["applied"])  # every event once, per projection
    assert_same_tables(relayed["read_models"], relayed["reference"])
    # Where it left each partition, per projection: at the end.
    assert report["behind"] == 0 and len(report["lag"]) == 4 * len(REGISTRY), report

    # Again: every partition is at its stored position already.
    code, out, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up", "--json")
    assert code == 0, err
    assert json.loads(out)["applied"] == 0

    # A relay that lost its position publishes everything again: the duplicates are skipped
    # by event identity (the Kafka positions alone would not catch them).
    path = store_url.split("///", 1)[1]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE ecomcore_relay_position SET position = 0")
    code, out, err = run(capsys, "relay", "--store", store_url, "--kafka", kafka_bootstrap, "--topic",
                         relayed["topic"], "--until-caught-up", "--json")
    assert code == 0, err
    assert json.loads(out)["published"] > 0
    code, out, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up", "--json")
    assert code == 0, err
    assert json.loads(out)["applied"] == 0
    assert_same_tables(relayed["read_models"], relayed["reference"])

    # Status: per projection and partition, the stored position is at the end offset.
    code, out, err = run(capsys, "status", "--source", "kafka", "--store", store_url, "--kafka", kafka_bootstrap,
                         "--topic", relayed["topic"], "--read-models", relayed["read_models"], "--json",
                         "--max-lag", "0")
    assert code == 0, err
    status = json.loads(out)
    assert status["healthy"] is True
    partitions = status["partitions"]
    assert len(partitions) == 4 * len(REGISTRY)
    # (tansu reports a partition's end as its last batch's base offset + 1: at most the true end)
    assert all(p["lag"] == 0 and p["position"] >= p["end_offset"] > 0 for p in partitions), partitions
    assert sum(p["end_offset"] for p in partitions if p["projection"] == "stock") > 0


def _worker(store_url: str, kafka: str, relayed: dict[str, str], log: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ecomcore_projections.cli", "project", "--source", "kafka", "--store", store_url,
         "--kafka", kafka, "--topic", relayed["topic"], "--group", relayed["group"], "--read-models", relayed["read_models"],
         "--batch-size", "10", mode],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "1", "ECOMCORE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)},
    )


def test_two_workers_of_one_group_together_equal_the_store_fed_tables(
    store_url: str, kafka_bootstrap: str, relayed: dict[str, str], tmp_path: Path
) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [_worker(store_url, kafka_bootstrap, relayed, log, "--until-caught-up") for log in logs]
    try:
        codes = [worker.wait(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert codes == [0, 0], [log.read_text() for log in logs]
    assert_same_tables(relayed["read_models"], relayed["reference"])
    # Together they applied each event once (however the group split the partitions).
    applied = [int(m) for log in logs for m in re.findall(r"caught up: applied (\d+) events", log.read_text())]
    assert len(applied) == 2 and sum(applied) == int(relayed["applied"]), applied


def test_sigterm_finishes_the_batch_leaves_the_group_and_exits_0(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, relayed: dict[str, str],
    tmp_path: Path
) -> None:
    log = tmp_path / "follow.log"
    worker = _worker(store_url, kafka_bootstrap, relayed, log, "--follow")
    try:
        deadline = time.monotonic() + 60
        while "assigned partition" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    # Whatever it applied is whole: a worker of the same group finishes the rest exactly.
    code, _, err = run(capsys, "project", "--source", "kafka", "--store", store_url, "--kafka", kafka_bootstrap,
                       "--topic", relayed["topic"], "--group", relayed["group"], "--read-models", relayed["read_models"],
                       "--until-caught-up")
    assert code == 0, err
    assert_same_tables(relayed["read_models"], relayed["reference"])


def test_store_fed_and_kafka_fed_workers_never_feed_the_same_tables(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, relayed: dict[str, str]
) -> None:
    # Their positions count differently (a notification id, per-partition offsets): each
    # would apply what the other applied. The second source is refused, nothing changes.
    code, _, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up")
    assert code == 0, err
    before = tables(relayed["read_models"])
    for argv in (("project", "--store", store_url, "--read-models", relayed["read_models"], "--until-caught-up"),
                 ("rebuild", "stock", "--store", store_url, "--read-models", relayed["read_models"]),
                 ("rebuild", "stock", "--check", "--store", store_url, "--read-models", relayed["read_models"])):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "[mixed_sources]" in err and "fed from Kafka" in err, (argv, code, err)
    assert tables(relayed["read_models"]) == before

    # And the other way round: the store-fed reference refuses a Kafka-fed worker.
    before = tables(relayed["reference"])
    code, _, err = run(capsys, "project", "--source", "kafka", "--store", store_url, "--kafka", kafka_bootstrap,
                       "--topic", relayed["topic"], "--read-models", relayed["reference"], "--until-caught-up")
    assert code == 2 and "[mixed_sources]" in err and "fed from the store's log" in err, (code, err)
    assert tables(relayed["reference"]) == before


@pytest.mark.parametrize("given", [("--session-timeout", "999"), ("--session-timeout", "600001"),
                                   ("--session-timeout", "ten")])
def test_the_session_timeout_is_bounded(capsys: pytest.CaptureFixture[str], given: tuple[str, str]) -> None:
    code, _, err = run(capsys, "project", "--source", "kafka", "--kafka", "127.0.0.1:9", "--until-caught-up", *given)
    assert code == 2 and "--session-timeout" in err, err


def test_the_session_timeout_from_the_environment_is_bounded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOMCORE_KAFKA_SESSION_TIMEOUT_MS", "50")
    code, _, err = run(capsys, "project", "--source", "kafka", "--kafka", "127.0.0.1:9", "--until-caught-up")
    assert code == 2 and "ECOMCORE_KAFKA_SESSION_TIMEOUT_MS" in err, err


def _delete_topic(kafka: str, topic: str, *, then_create_empty: int = 0) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        admin.delete_topics([topic])
        if then_create_empty:
            admin.create_topics([NewTopic(topic, then_create_empty, 1)])
    finally:
        admin.close()


def test_a_deleted_topic_is_published_again_by_the_relay(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, relayed: dict[str, str]
) -> None:
    code, _, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up")
    assert code == 0, err
    _delete_topic(kafka_bootstrap, relayed["topic"])

    # The relay has to create the topic again: it publishes the whole log again, saying why.
    code, out, err = run(capsys, "relay", "--store", store_url, "--kafka", kafka_bootstrap, "--topic",
                         relayed["topic"], "--partitions", "4", "--until-caught-up", "--json")
    assert code == 0, err
    assert json.loads(out)["published"] == json.loads(out)["head"] > 0
    assert "publishing the whole log again" in err
    # Workers had applied all of it: nothing twice.
    code, out, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up", "--json")
    assert code == 0, err
    assert json.loads(out)["applied"] == 0
    assert_same_tables(relayed["read_models"], relayed["reference"])


def test_records_below_the_stored_position_that_were_never_applied_stop_the_worker(
    capsys: pytest.CaptureFixture[str], store_url: str, kafka_bootstrap: str, relayed: dict[str, str]
) -> None:
    # A topic emptied behind the relay's back (deleted and created again by someone else, or a
    # broker that lost its records): the relay cannot tell and publishes only what is new, at
    # offsets the worker has stored positions beyond. It stops rather than skip them.
    code, _, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up")
    assert code == 0, err
    before = tables(relayed["read_models"])
    _delete_topic(kafka_bootstrap, relayed["topic"], then_create_empty=4)
    code, _, err = run(capsys, "demo", "--store", store_url, "--orders", "5", "--seed", "12", "--no-projections")
    assert code == 0, err
    code, out, err = run(capsys, "relay", "--store", store_url, "--kafka", kafka_bootstrap, "--topic",
                         relayed["topic"], "--until-caught-up", "--json")
    assert code == 0, err
    assert 0 < json.loads(out)["published"] < json.loads(out)["head"]
    code, _, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up")
    # (the partitions now end before the stored positions)
    assert code == 2 and "[kafka_topic_rewound]" in err and "before the stored position" in err, err
    assert "caught up" not in err
    assert tables(relayed["read_models"]) == before

    # The new topic grows past the stored positions: the worker reads from the last record it
    # applied in each partition, finds there an event it never applied, and stops again.
    code, _, err = run(capsys, "demo", "--store", store_url, "--orders", "30", "--seed", "13", "--no-projections")
    assert code == 0, err
    code, out, err = run(capsys, "relay", "--store", store_url, "--kafka", kafka_bootstrap, "--topic",
                         relayed["topic"], "--until-caught-up", "--json")
    assert code == 0, err
    code, _, err = kafka_worker(capsys, store_url, kafka_bootstrap, relayed, "--until-caught-up")
    assert code == 2 and "[kafka_topic_rewound]" in err and "below projection" in err, err
    assert tables(relayed["read_models"]) == before
