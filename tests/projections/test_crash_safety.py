"""Crash safety (spec §6): a projector killed with SIGKILL at random moments resumes, and ends
equal to a rebuild from zero."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from shop_fixtures import START, open_shop, stock_catalogue
from sqlalchemy import create_engine, inspect, text

from ecomcore_projections.cli import main as ecomcore


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo on PostgreSQL writes its provider's statement into the current directory."""
    monkeypatch.chdir(tmp_path)

KILLS = 20


def _projector(store: str, read_models: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ecomcore_projections.cli", "project", "--store", store, "--read-models", read_models,
         "--until-caught-up", "--batch-size", "7"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _positions(read_models: str) -> dict[str, int]:
    engine = create_engine(read_models)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("rm_projection_positions"):
                return {}
            return dict(conn.execute(text("SELECT name, position FROM rm_projection_positions")).all())
    finally:
        engine.dispose()


def _more_trading(shop, n: int) -> None:
    """The shop keeps trading while the projector crashes and restarts."""
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=3, reference=f"po-{n}")
    receipt = shop.checkout(customer_id=f"c{n}", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    shop.pay(checkout_id=receipt.checkout_id, payment_id=f"pay-{n}", amount=receipt.payable, provider_txn=f"t{n}")
    if n % 3 == 0:
        shop.refund_only(order_id=receipt.order_ids[0], refund_id=f"re-{n}", lines={1: 1}, reason="changed mind")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_projector_killed_at_random_resumes_and_equals_a_rebuild(backend, tmp_path, request):
    """SIGKILL the projector 20 times, each time after it was seen committing a random number of batches and
    before it finished; every restart resumes from its stored position (never behind it) and the final read
    models equal a rebuild from zero."""
    store = f"sqlite:///{tmp_path}/store.sqlite" if backend == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    read_models = f"sqlite:///{tmp_path}/read-models.sqlite"
    assert ecomcore(["demo", "--store", store, "--orders", "30", "--seed", "3", "--no-projections"]) == 0
    rng = random.Random(20261122)
    shop = open_shop(store)
    shop.clock.set(START.replace(year=2027))
    stock_catalogue(shop)
    kills = mid_work = rounds = 0
    positions: dict[str, int] = {}
    process: subprocess.Popen | None = None
    try:
        while kills < KILLS:
            rounds += 1
            assert rounds <= 3 * KILLS, f"only {kills} of {KILLS} kills landed while the projector worked"
            for n in range(3):
                _more_trading(shop, rounds * 10 + n)  # the shop keeps trading between crashes
            before = _positions(read_models)
            assert all(before.get(name, 0) >= p for name, p in positions.items()), "a position went back"
            process = _projector(store, read_models)
            wanted = rng.randint(1, 4)  # kill after this many committed batches were seen
            if _wait_for_batches(process, read_models, before, wanted):
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                kills += 1
                positions = _positions(read_models)
                head = shop.store.recorder.max_notification_id()
                if any(p < head for p in positions.values()):
                    mid_work += 1  # killed with work left: the restart must resume it
            else:
                assert process.wait(timeout=120) == 0, process.stderr.read().decode()
                positions = _positions(read_models)
            process.stderr.close()
    finally:
        if process is not None and process.poll() is None:
            process.kill()  # a failed assertion must not leave a projector running
            process.wait()
        shop.close()
    final = _projector(store, read_models)
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()
    final.stderr.close()
    assert mid_work >= KILLS // 2, f"only {mid_work} kills landed with work left"
    assert ecomcore(["rebuild", "--check", "--all", "--store", store, "--read-models", read_models]) == 0


def _wait_for_batches(process: subprocess.Popen, read_models: str, before: dict[str, int], batches: int) -> bool:
    """True once the projector was seen committing ``batches`` position changes while still running;
    False if it finished first."""
    seen, last = 0, before
    deadline = time.monotonic() + 120
    while process.poll() is None:
        assert time.monotonic() < deadline, "the projector made no progress"
        now = _positions(read_models)
        if now != last:
            seen += sum(1 for name, p in now.items() if p != last.get(name))
            last = now
            if seen >= batches:
                return process.poll() is None
        time.sleep(0.002)
    return False


def test_a_following_worker_picks_up_new_events_and_stops_on_sigterm(tmp_path):
    """project --follow catches up, applies events written later while it polls, and exits 0 on SIGTERM."""
    store = f"sqlite:///{tmp_path}/store.sqlite"
    read_models = f"sqlite:///{tmp_path}/read-models.sqlite"
    shop = open_shop(store)
    stock_catalogue(shop)
    _more_trading(shop, 1)
    worker = subprocess.Popen(
        [sys.executable, "-m", "ecomcore_projections.cli", "project", "--store", store, "--read-models", read_models,
         "--follow", "--poll", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        def caught_up() -> bool:
            head = shop.store.recorder.max_notification_id()
            positions = _positions(read_models)
            return len(positions) == 3 and all(p == head for p in positions.values())

        _wait_for(caught_up, worker)
        _more_trading(shop, 2)  # written while the worker polls
        _wait_for(caught_up, worker)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err.decode()
        assert out.decode().count("behind       0 events") == 3
    finally:
        if worker.poll() is None:
            worker.kill()
        shop.close()


def _wait_for(condition, worker: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll until ``condition`` holds; a worker that exits meanwhile fails the test with its stderr."""
    deadline = time.monotonic() + timeout
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited with {worker.returncode}:\n{worker.stderr.read().decode()}")
        assert time.monotonic() < deadline, "the worker did not catch up in time"
        time.sleep(0.1)
