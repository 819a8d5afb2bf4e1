"""The projector runner (spec §6): exactly-once batches, resumable position, lag, rebuild and check."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
from shop_fixtures import open_shop, stock_catalogue
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, text, update

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.stock_item import StockItem
from ecomcore_projections.base import Projection, ProjectionFailed, SchemaMismatch, handles
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.rows import Batch
from ecomcore_projections.runner import Projector, ReadModels, StoredPosition, dump


class StockMoves(Projection):
    """Test projection: per stock item, how many events and the last event type and position."""

    name = "stock_moves"
    fail_on: int | None = None

    @classmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        return {
            "moves": Table(
                table_name("test_moves"), metadata,
                Column("aggregate_id", String(36), primary_key=True),
                Column("events", Integer, nullable=False),
                Column("last_type", String(100), nullable=False),
                Column("last_position", Integer, nullable=False),
            )
        }

    def prepare(self, batch: Batch, events) -> None:
        batch.load("moves", ((str(e.originator_id),) for _, e in events))

    @handles(StockItem.Received, StockItem.Reserved, StockItem.Registered)
    def _moved(self, batch: Batch, event: DomainEvent, position: int) -> None:
        if position == type(self).fail_on:
            raise ValueError("cannot apply this one")
        moves = batch.rows("moves")
        key = str(event.originator_id)
        row = moves.get((key,))
        values = {"last_type": type(event).__name__, "last_position": position}
        if row is None:
            moves.insert({"aggregate_id": key, "events": 1, **values})
        else:
            row.update(events=row["events"] + 1, **values)


@pytest.fixture
def shop(store_url):
    shop = open_shop(store_url)
    stock_catalogue(shop)
    yield shop
    shop.close()


@pytest.fixture
def read_models(store_url):
    StockMoves.fail_on = None
    models = ReadModels(store_url, projections={"stock_moves": StockMoves})
    yield models
    models.dispose()


def trade(shop, receipts: int = 5) -> None:
    for n in range(receipts):
        shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=n + 1, reference=f"po-{n}")
        shop.receive_stock(sku_id="B1", warehouse_id=f"w{1 + n % 2}", quantity=1, reference=f"po-{n}")
    shop.checkout(customer_id="c", items=[{"sku_id": "A1", "quantity": 2}], shipping_address="x")


def rows(read_models) -> dict:
    return dump(read_models, "stock_moves")


def test_catch_up_applies_every_handled_event_once_and_reports_no_lag(shop, read_models):
    """Catching up applies each handled event once; the position reaches the head and lag is zero."""
    trade(shop)
    projector = Projector(shop.store, read_models)
    applied = projector.catch_up()
    assert applied == 3 + 10 + 1  # three items registered, ten receipts, one reservation
    moves = {row[0]: row[1] for row in rows(read_models)["moves"]}
    # Registered plus receipts (plus the reservation of A1): B1@w2 1+2, B1@w1 1+3, A1@w1 1+5+1.
    assert sorted(moves.values()) == [3, 4, 7]
    (lag,) = projector.lag()
    assert (lag.events_behind, lag.seconds_behind) == (0, 0.0)
    assert lag.position == lag.head == shop.store.recorder.max_notification_id()
    assert projector.catch_up() == 0


def test_lag_counts_events_not_yet_applied(shop, read_models):
    """Events written after the last catch-up show as lag until applied."""
    trade(shop)
    projector = Projector(shop.store, read_models)
    projector.catch_up()
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="late")
    (lag,) = projector.lag()
    assert lag.events_behind >= 1
    assert projector.catch_up() == 1
    assert projector.lag()[0].events_behind == 0


def test_a_batch_applied_twice_changes_nothing(shop, read_models):
    """Re-applying notifications at or below the stored position is skipped."""
    trade(shop)
    projector = Projector(shop.store, read_models)
    projector.catch_up()
    before = rows(read_models)
    everything = shop.store.recorder.select_notifications(1, 10_000)
    assert projector.apply("stock_moves", everything) == 0
    assert rows(read_models) == before


def test_batch_size_does_not_change_the_result(shop, tmp_path):
    """Any batch size gives the same rows and position (read models in their own database here)."""
    trade(shop)
    results = []
    for batch_size in (1, 3, 1000):
        models = ReadModels(f"sqlite:///{tmp_path}/rm-{batch_size}.sqlite", projections={"stock_moves": StockMoves})
        Projector(shop.store, models, batch_size=batch_size).catch_up()
        results.append((rows(models), models.position("stock_moves")))
        models.dispose()
    assert results[0] == results[1] == results[2]
    assert results[0][1] == shop.store.recorder.max_notification_id()


def test_an_event_that_cannot_be_applied_stops_the_projection_naming_it(shop, read_models):
    """A failing event raises ProjectionFailed naming its position, aggregate and type; its batch is not applied."""
    trade(shop)
    topics_of_interest = shop.store.recorder.select_notifications(1, 10_000)
    reserved = next(n for n in topics_of_interest if n.topic.endswith("StockItem.Reserved"))
    StockMoves.fail_on = reserved.id
    projector = Projector(shop.store, read_models, batch_size=2)
    with pytest.raises(ProjectionFailed) as caught:
        projector.catch_up()
    error = caught.value
    assert error.position == reserved.id and type(error.event) is StockItem.Reserved
    assert str(reserved.originator_id) in str(error) and "Reserved" in str(error)
    assert read_models.position("stock_moves") < reserved.id
    StockMoves.fail_on = None
    assert projector.catch_up() >= 1  # resumes from where it stopped
    assert read_models.position("stock_moves") >= reserved.id


def test_rebuild_swaps_in_a_fresh_copy_and_check_reports_differences(shop, read_models):
    """rebuild --check finds a tampered live row; rebuild replaces the live rows; then check is clean."""
    trade(shop)
    Projector(shop.store, read_models).catch_up()
    assert rebuild(shop.store, read_models, "stock_moves", check=True).differences == ()
    table = read_models.tables["stock_moves"]["moves"]
    with read_models.engine.begin() as conn:
        conn.execute(update(table).values(events=99).where(table.c.last_type == "Reserved"))
        conn.execute(insert(table).values(aggregate_id="ghost", events=1, last_type="X", last_position=1))
    report = rebuild(shop.store, read_models, "stock_moves", check=True)
    kinds = sorted((d.live is None, d.rebuilt is None) for d in report.differences)
    assert kinds == [(False, False), (False, True)]  # one row differs, one is only in the live table
    assert "ghost" in " ".join(str(d) for d in report.differences)
    rebuilt = rebuild(shop.store, read_models, "stock_moves")
    assert rebuilt.position == shop.store.recorder.max_notification_id()
    assert rebuild(shop.store, read_models, "stock_moves", check=True).differences == ()
    # Shadow tables are gone.
    with read_models.engine.connect() as conn:
        names = set(read_models.engine.dialect.get_table_names(conn))
    assert not any(name.endswith("_shadow") for name in names)


def test_handles_marks_give_the_topics_and_the_dispatch():
    """@handles derives a projection's handled events; an event without a handler is refused."""
    assert set(StockMoves.handles) == {StockItem.Received, StockItem.Reserved, StockItem.Registered}


# ---------------------------------------------------------------------- workers started together


@pytest.fixture
def demo_store(store_url, tmp_path, monkeypatch):
    """A small demo day on each backend; the read models go into the store's own (fresh) database."""
    from ecomcore_projections.cli import main as ecomcore

    monkeypatch.chdir(tmp_path)  # on PostgreSQL the demo writes its statement into the working directory

    assert ecomcore(["demo", "--store", store_url, "--orders", "15", "--seed", "4", "--no-projections"]) == 0
    return store_url


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_started_together_in_threads_all_live(demo_store, workers):
    """N workers (threads) released at the same moment on an empty read-model database: none fails, and
    every projection ends equal to a rebuild from zero. Failures inside the threads fail the test."""
    from ecomcore.infrastructure.settings import Settings
    from ecomcore.infrastructure.store import EventStore

    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []
    applied: list[int] = []

    def work() -> None:
        try:
            store = EventStore(Settings(store_url=demo_store))
            try:
                barrier.wait(timeout=30)
                read_models = ReadModels(demo_store)
                try:
                    applied.append(Projector(store, read_models, batch_size=7).run())
                finally:
                    read_models.dispose()
            finally:
                store.close()
        except BaseException as error:  # collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker did not finish"
    assert failures == [], "\n".join(f"{type(e).__name__}: {e}" for e in failures)
    assert len(applied) == workers
    _assert_equal_to_a_rebuild(demo_store)


@pytest.mark.parametrize("workers", [2, 4])
def test_worker_processes_started_together_all_exit_0(demo_store, workers):
    """N `ecomcore project --until-caught-up` processes started together on an empty read-model database
    all exit 0, and the read models equal a rebuild from zero."""
    command = [sys.executable, "-m", "ecomcore_projections.cli", "project", "--store", demo_store,
               "--read-models", demo_store, "--until-caught-up", "--batch-size", "7"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(workers)]
    try:
        outcomes = [(p.wait(timeout=300), p.stderr.read().decode()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.stdout.close()
            p.stderr.close()
    assert [code for code, _ in outcomes] == [0] * workers, "\n".join(err for _, err in outcomes)
    _assert_equal_to_a_rebuild(demo_store)


def _assert_equal_to_a_rebuild(url: str) -> None:
    from ecomcore.infrastructure.settings import Settings
    from ecomcore.infrastructure.store import EventStore

    store = EventStore(Settings(store_url=url))
    read_models = ReadModels(url)
    try:
        head = store.recorder.max_notification_id()
        for name in read_models.classes:
            assert read_models.position(name) == head
            assert rebuild(store, read_models, name, check=True).differences == ()
    finally:
        read_models.dispose()
        store.close()


# ---------------------------------------------------------------------- schema versions


def test_a_changed_schema_version_is_refused_until_rebuilt(shop, read_models, monkeypatch):
    """Tables written by another schema version stop the worker with a message naming the projection and
    the rebuild that fixes it; `rebuild` recreates the tables, after which the worker runs again."""
    trade(shop)
    Projector(shop.store, read_models).catch_up()
    before = rows(read_models)
    monkeypatch.setattr(StockMoves, "schema_version", StockMoves.schema_version + 1)
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="after upgrade")
    with pytest.raises(SchemaMismatch, match=r"stock_moves .* run `ecomcore rebuild stock_moves`"):
        Projector(shop.store, read_models).catch_up()
    assert rows(read_models) == before  # nothing applied with the old tables
    with pytest.raises(SchemaMismatch):
        rebuild(shop.store, read_models, "stock_moves", check=True)
    report = rebuild(shop.store, read_models, "stock_moves")
    assert report.position == shop.store.recorder.max_notification_id()
    assert read_models.stored("stock_moves").schema_version == StockMoves.schema_version
    shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="after rebuild")
    assert Projector(shop.store, read_models).catch_up() == 1
    assert rebuild(shop.store, read_models, "stock_moves", check=True).differences == ()


def test_position_tables_from_before_schema_versions_count_as_version_1(tmp_path):
    """A read-model database written before schema versions were recorded gets the column, and its
    projections count as version 1 (so a projection at version 2 asks for a rebuild)."""
    url = f"sqlite:///{tmp_path}/old.sqlite"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE rm_projection_positions (name VARCHAR(100) PRIMARY KEY, "
                          "position BIGINT NOT NULL, updated_at VARCHAR(40) NOT NULL)"))
        conn.execute(text("INSERT INTO rm_projection_positions VALUES ('stock_moves', 3, 'then')"))
    engine.dispose()
    models = ReadModels(url, projections={"stock_moves": StockMoves})
    try:
        assert models.stored("stock_moves") == StoredPosition(position=3, schema_version=1)
    finally:
        models.dispose()
