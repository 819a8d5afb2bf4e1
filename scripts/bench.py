"""Benchmark harness: one script, one part per area, every result as a ratio to a baseline.

Usage::

    python scripts/bench.py                         # every part, full sizes (several minutes)
    python scripts/bench.py --quick                 # every part, small sizes (under 2 minutes)
    python scripts/bench.py --part projections --json out.json
    python scripts/bench.py --workdir DIR           # where generated histories are cached

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
    ``sweep_growth``: ``Shop.sweep`` with nothing due on a copy of a simulated history of
    5,000 orders (about 108k events) over one of 500 orders (about 11k); ``--quick``: 1,500
    (about 32k) over 150 (about 3.2k).  One sweep first (the due-work index catches up),
    then the best of 5 more, all at the same time (nothing due).
    ``long_stream``: ``receive_stock`` on a StockItem with 100,000 earlier events (quick:
    10,000) over a fresh one, each in a newly opened Shop without aggregate cache, median
    of 7, each in a newly opened Shop with no aggregate cache.

Sizes: ``--quick`` times a 600-order day and compares RSS at 300 vs 1,500 orders; the
full run times a 2,000-order day (over 40,000 events) and compares 2,000 vs 10,000.
Histories come from the demo simulation (``ecomcore.simulation.simulate_trading_day``,
fixed seed, clock from 2026-11-11 08:00 UTC) and are cached in ``--workdir`` (default:
``<system temp>/ecomcore-bench``), one SQLite file per (orders, seed), built under a
temporary name and renamed when complete, so an interrupted build is never reused.  The
cached store files are only read.  A 10,000-order day takes 3 to 5 minutes to build.

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
import json
import logging
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy
from eventsourcing.utils import get_topic
from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, create_engine, insert

from ecomcore import ManualClock, Settings, Shop
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
    "sweep_growth": Target("<=", 1.3),
    "long_stream": Target("<=", 1.5),
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


@dataclass
class Context:
    """What every part gets: the mode, the work directory and the history cache."""

    quick: bool
    workdir: Path
    store: str | None = None
    _histories: dict[tuple[int, int], History] = field(default_factory=dict)

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


def open_write_shop(path: Path) -> Shop:
    """A fresh SQLite store with the catalogue set up once and enough stock for every checkout."""
    url = sqlite_url(path)
    shop = Shop(url, clock=ManualClock(START), settings=Settings(store_url=url))
    shop.register_merchant(merchant_id="m1", name="Bench")
    shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
    for sku in WRITE_SKUS:
        shop.register_sku(
            sku_id=sku, spu_id=f"P-{sku}", merchant_id="m1", category_path=("bench",), brand_id="b",
            unit_price=1000, weight_g=100, title=sku,
        )
        shop.set_up_stock(sku_id=sku, warehouse_id="w1")
        shop.receive_stock(sku_id=sku, warehouse_id="w1", quantity=1_000_000, reference="bench")
    return shop


def store_durability(shop: Shop) -> tuple[str, int]:
    """``PRAGMA journal_mode`` and ``synchronous`` as the store's own connection has them."""
    settings = []
    with shop.store.recorder.datastore.transaction(commit=False) as cursor:
        for pragma in ("journal_mode", "synchronous"):
            cursor.execute(f"PRAGMA {pragma}")
            settings.append(cursor.fetchone()[0])
    return str(settings[0]), int(settings[1])


class TableWatch:
    """Reads what was written to a SQLite file between two looks: ``stored_events`` by rowid
    (append-only), every other table by comparing its whole content (they are small)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.tables = [
            name for (name,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        self.last_rowid = self._max_rowid()
        self.contents = {name: self._content(name) for name in self.tables if name != "stored_events"}
        self.deleted = 0

    def _max_rowid(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM stored_events").fetchone()[0]

    def _content(self, table: str) -> list[tuple[Any, ...]]:
        return sorted(self.db.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)

    def everything(self) -> Written:
        """Every row of every table (the state a run starts from)."""
        return {name: self.db.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall()
                if name == "stored_events" else self._content(name) for name in self.tables}

    def written(self) -> Written:
        """The rows added or replaced since the last look."""
        found: Written = {}
        rows = self.db.execute("SELECT * FROM stored_events WHERE rowid > ? ORDER BY rowid", (self.last_rowid,))
        if events := rows.fetchall():
            found["stored_events"] = events
        self.last_rowid = self._max_rowid()
        new_tables = {
            name for (name,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        } - set(self.tables)
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

    def close(self) -> None:
        self.db.close()


@dataclass
class WriteRuns:
    """Timed runs of N checkouts then N payments (the subject, or the baseline replaying them)."""

    checkout: list[Run] = field(default_factory=list)
    pay: list[Run] = field(default_factory=list)


def capture_write_commands(workdir: Path, commands: int) -> tuple[Written, list[Written], list[Written], str, int, str]:
    """An untimed subject run that looks at the file after every command: the starting state,
    the rows of each checkout and of each payment, the store's durability and its schema."""
    with fresh_sqlite(workdir, "write-capture") as path:
        shop = open_write_shop(path)
        try:
            journal_mode, synchronous = store_durability(shop)
            watch = TableWatch(path)
            try:
                initial = watch.everything()
                schema = ";\n".join(
                    sql for (sql,) in watch.db.execute(
                        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                        "ORDER BY type DESC, name")
                )
                checkouts, pays, receipts = [], [], []
                for i in range(commands):
                    receipts.append(_checkout(shop, i))
                    checkouts.append(watch.written())
                for i, receipt in enumerate(receipts):
                    _pay(shop, i, receipt)
                    pays.append(watch.written())
                if watch.deleted:
                    log.warning("the commands deleted %d rows: the baseline does not repeat deletes", watch.deleted)
            finally:
                watch.close()
        finally:
            shop.close()
    return initial, checkouts, pays, journal_mode, synchronous, schema


def _checkout(shop: Shop, i: int) -> Any:
    return shop.checkout(customer_id=f"c{i}", items=list(WRITE_CART), shipping_address=f"address {i}")


def _pay(shop: Shop, i: int, receipt: Any) -> Any:
    return shop.pay(checkout_id=receipt.checkout_id, payment_id=f"pay-{i}", amount=receipt.payable,
                    provider_txn=f"txn-{i}")


def time_write_subject(workdir: Path, commands: int) -> tuple[Run, Run]:
    """N checkouts, then the N payments, through ``Shop`` on a fresh store; each loop timed."""
    with fresh_sqlite(workdir, "write-subject") as path:
        shop = open_write_shop(path)
        try:
            gc.collect()
            started = time.perf_counter()
            receipts = [_checkout(shop, i) for i in range(commands)]
            checkout = Run(commands, time.perf_counter() - started)
            gc.collect()
            started = time.perf_counter()
            for i, receipt in enumerate(receipts):
                _pay(shop, i, receipt)
            pay = Run(commands, time.perf_counter() - started)
        finally:
            shop.close()
    return checkout, pay


def _insert_statement(table: str, row: tuple[Any, ...]) -> str:
    verb = "INSERT" if table == "stored_events" else "INSERT OR REPLACE"
    return f'{verb} INTO "{table}" VALUES ({", ".join("?" * len(row))})'


def _replay(db: sqlite3.Connection, commands: list[Written]) -> Run:
    """One transaction per command, the rows it wrote, as the eventsourcing SQLite recorder
    commits them (autocommit connection, explicit ``BEGIN``, ``executemany``, ``COMMIT``)."""
    prepared = [[(_insert_statement(t, rows[0]), rows) for t, rows in written.items()] for written in commands]
    gc.collect()
    started = time.perf_counter()
    for statements in prepared:
        db.execute("BEGIN")
        for statement, rows in statements:
            db.executemany(statement, rows)
        db.execute("COMMIT")
    return Run(len(commands), time.perf_counter() - started)


def time_write_baseline(
    workdir: Path, schema: str, initial: Written, checkouts: list[Written], pays: list[Written],
    journal_mode: str, synchronous: int,
) -> tuple[Run, Run]:
    """The same rows into the same schema of a fresh file, with the plain driver and the store's durability."""
    with fresh_sqlite(workdir, "write-baseline") as path:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute(f"PRAGMA journal_mode={journal_mode}")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(schema)
            db.execute("BEGIN")
            for table, rows in initial.items():
                if rows:
                    db.executemany(_insert_statement(table, rows[0]), rows)
            db.execute("COMMIT")
            return _replay(db, checkouts), _replay(db, pays)
        finally:
            db.close()


def _rows_per_command(commands: list[Written]) -> dict[str, float]:
    tables = sorted({table for written in commands for table in written})
    return {table: sum(len(written.get(table, ())) for written in commands) / len(commands) for table in tables}


def _bytes_per_command(commands: list[Written]) -> float:
    def size(value: Any) -> int:
        return len(value) if isinstance(value, bytes | str) else 8

    return sum(size(v) for written in commands for rows in written.values() for row in rows for v in row) / len(
        commands)


def write_commands_sqlite(ctx: Context) -> tuple[Figures, Ratios]:
    commands = 300 if ctx.quick else 1000
    repeats = 3
    log.info("write: capturing what %d checkouts and %d payments store", commands, commands)
    initial, checkouts, pays, journal_mode, synchronous, schema = capture_write_commands(ctx.workdir, commands)
    figures: Figures = {
        "write_commands": commands,
        "write_repeats": repeats,
        "write_sqlite_journal_mode": journal_mode,
        "write_sqlite_synchronous": synchronous,
    }
    for label, captured in (("checkout", checkouts), ("pay", pays)):
        for table, rows in _rows_per_command(captured).items():
            figures[f"{label}_sqlite_{table}_rows_per_command"] = round(rows, 3)
        figures[f"{label}_sqlite_bytes_per_command"] = round(_bytes_per_command(captured), 1)
        log.info("  %s: rows per command %s, %.0f bytes", label, _rows_per_command(captured),
                 _bytes_per_command(captured))
    subjects, baselines = WriteRuns(), WriteRuns()
    for repeat in range(1, repeats + 1):
        # Alternate which goes first, so neither always runs on a warmer machine.
        order = ("baseline", "subject") if repeat % 2 else ("subject", "baseline")
        for which in order:
            if which == "subject":
                checkout, pay = time_write_subject(ctx.workdir, commands)
                runs = subjects
            else:
                checkout, pay = time_write_baseline(ctx.workdir, schema, initial, checkouts, pays, journal_mode,
                                                    synchronous)
                runs = baselines
            runs.checkout.append(checkout)
            runs.pay.append(pay)
        log.info("run %d/%d checkout: subject %.2f s, baseline %.3f s | pay: subject %.2f s, baseline %.3f s",
                 repeat, repeats, subjects.checkout[-1].seconds, baselines.checkout[-1].seconds,
                 subjects.pay[-1].seconds, baselines.pay[-1].seconds)
    ratios: Ratios = {}
    for label in ("checkout", "pay"):
        subject, baseline = best(getattr(subjects, label)), best(getattr(baselines, label))
        figures |= {
            f"{label}_sqlite_subject_per_s": round(subject.rate, 1),
            f"{label}_sqlite_baseline_per_s": round(baseline.rate, 1),
        }
        ratios[f"{label}_sqlite"] = round(subject.rate / baseline.rate, 4)
    return figures, ratios


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


def part_write(ctx: Context) -> tuple[Figures, Ratios]:
    """Checkout and payment on SQLite against plain inserts of the same rows; sweep growth; long streams."""
    figures: Figures = {}
    ratios: Ratios = {}
    for measure in (write_commands_sqlite, sweep_growth, long_stream):
        found_figures, found_ratios = measure(ctx)
        figures |= found_figures
        ratios |= found_ratios
    return figures, ratios


#: Every part, by name, in the order they run.
PARTS: dict[str, Callable[[Context], tuple[Figures, Ratios]]] = {
    "projections": part_projections,
    "write": part_write,
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
    }


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
                        help="PostgreSQL server base URL for the histories (not supported yet)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.store:
        parser.error("--store: PostgreSQL histories are not supported yet; the benchmark uses SQLite files")

    args.workdir.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(args.workdir)
    ctx = Context(quick=args.quick, workdir=args.workdir.resolve(), store=args.store)
    figures: Figures = {"bench_mode": "quick" if args.quick else "full", **machine()}
    ratios: Ratios = {}
    started = time.perf_counter()
    for name in args.part or list(PARTS):
        log.info("part %s (%s)", name, figures["bench_mode"])
        part_started = time.perf_counter()
        part_figures, part_ratios = PARTS[name](ctx)
        figures |= part_figures | {f"{name}_part_s": round(time.perf_counter() - part_started, 1)}
        ratios |= part_ratios
    figures["bench_total_s"] = round(time.perf_counter() - started, 1)

    print(render(figures, ratios))
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "ratios": ratios}, indent=2) + "\n")
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
