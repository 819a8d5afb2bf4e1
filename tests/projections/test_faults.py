"""Which faults a worker waits out (spec §8): transient ones are retried, everything else stops it."""

from __future__ import annotations

import logging
import re
import sqlite3
import threading

import psycopg
import pytest
from eventsourcing.persistence import OperationalError as StoreOperationalError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from ecomcore_projections.base import ProjectionFailed, SchemaMismatch
from ecomcore_projections.faults import Backoff, Faults, is_transient


def _sqlalchemy_error(tmp_path, sql: str, *, locked: bool = False) -> BaseException:
    engine = create_engine(f"sqlite:///{tmp_path}/db.sqlite", connect_args={"timeout": 0})
    other = sqlite3.connect(f"{tmp_path}/db.sqlite")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)"))
            conn.execute(text("INSERT OR IGNORE INTO t VALUES (1)"))
        if locked:
            other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Exception) as caught, engine.begin() as conn:
            conn.execute(text(sql))
        return caught.value
    finally:
        other.close()
        engine.dispose()


def test_a_busy_sqlite_database_is_transient(tmp_path):
    """SQLite's "database is locked" is waited out."""
    error = _sqlalchemy_error(tmp_path, "INSERT INTO t VALUES (2)", locked=True)
    assert isinstance(error, OperationalError) and "locked" in str(error)
    assert is_transient(error)


def test_a_missing_table_or_a_broken_constraint_is_not_transient(tmp_path):
    """Faults of the data or the code are not retried: they would only repeat."""
    missing = _sqlalchemy_error(tmp_path, "SELECT * FROM nowhere")
    duplicate = _sqlalchemy_error(tmp_path, "INSERT INTO t VALUES (1)")
    assert isinstance(missing, OperationalError) and isinstance(duplicate, IntegrityError)
    assert not is_transient(missing) and not is_transient(duplicate)


def test_connection_faults_are_transient_and_verdicts_are_not():
    """A refused PostgreSQL connection, the store library's operational errors and dropped connections are
    transient; a projection's failure or a schema mismatch is final, whatever caused it."""
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("host=127.0.0.1 port=1 connect_timeout=1")
    assert is_transient(refused.value)
    assert is_transient(StoreOperationalError("server closed the connection unexpectedly"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError("bad data"))
    assert not is_transient(SchemaMismatch("stock", 1, 2))
    failed = ProjectionFailed("stock", 7, None, ValueError("x"))
    failed.__context__ = refused.value
    assert not is_transient(failed)


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_a_reset():
    """0.5 s doubling to 30 s (within the jitter), then back to 0.5 s once reset."""
    backoff = Backoff(jitter=0.0)
    delays = [backoff.next_delay() for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


class _GaveUp(Exception):
    pass


def test_faults_are_waited_out_and_only_a_run_that_does_not_follow_gives_up(caplog):
    log = logging.getLogger("test.faults")
    error = ConnectionError("refused")
    stopped = threading.Event()
    stopped.set()  # the waits return at once: no sleeping in tests

    following = Faults(log, stopped, follow=True, give_up_after=0.0, backoff=Backoff(initial=0.5))
    with caplog.at_level(logging.INFO, logger="test.faults"):
        following.wait_out(error, "the store: refused", _GaveUp)  # never gives up
        following.wait_out(error, "the store: refused", _GaveUp)
        assert following.since is not None
        following.recovered()
    assert following.since is None
    lines = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"the store: refused; retrying in \d+\.\d s", lines[0]), lines
    assert float(lines[1].split()[-2]) > float(lines[0].split()[-2])  # backing off
    assert lines[2].startswith("recovered after ")
    assert following.backoff.next_delay() < 0.6  # the back-off starts again

    catching_up = Faults(log, stopped, follow=False, give_up_after=0.0)
    with pytest.raises(_GaveUp, match=r"gave up after 0 s of faults: the store: refused") as caught:
        catching_up.wait_out(error, "the store: refused", _GaveUp)
    assert caught.value.__cause__ is error

    patient = Faults(log, stopped, follow=False, give_up_after=3600.0)
    patient.wait_out(error, "the store: refused", _GaveUp)  # not yet
