"""The projector runner (spec §6): exactly-once batches, resumable position, lag, rebuild and check."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ecomcore_projections.base import Projection, ProjectionError
from ecomcore_projections.runner import Projector, ReadModels, dump, rebuild
from shop_fixtures import open_shop, stock_catalogue
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert, select, update

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.stock_item import StockItem


class StockMoves(Projection):
    """Test projection: per stock item, how many events and the last event type and position."""

    name = "stock_moves"
    handles = (StockItem.Received, StockItem.Reserved, StockItem.Registered)
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

    def apply(self, conn: Connection, event: DomainEvent, position: int) -> None:
        if position == type(self).fail_on:
            raise ValueError("cannot apply this one")
        table = self.tables["moves"]
        key = str(event.originator_id)
        found = conn.execute(select(table.c.events).where(table.c.aggregate_id == key)).scalar()
        values = {"last_type": type(event).__name__, "last_position": position}
        if found is None:
            conn.execute(insert(table).values(aggregate_id=key, events=1, **values))
        else:
            conn.execute(update(table).where(table.c.aggregate_id == key).values(events=found + 1, **values))


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
    """A failing event raises ProjectionError naming its position, aggregate and type; its batch is not applied."""
    trade(shop)
    topics_of_interest = shop.store.recorder.select_notifications(1, 10_000)
    reserved = next(n for n in topics_of_interest if n.topic.endswith("StockItem.Reserved"))
    StockMoves.fail_on = reserved.id
    projector = Projector(shop.store, read_models, batch_size=2)
    with pytest.raises(ProjectionError) as caught:
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


def test_two_workers_on_one_projection_apply_each_event_once(shop, read_models):
    """Two projectors racing on the same projection end with each event applied once."""
    import threading

    trade(shop, receipts=30)
    first = Projector(shop.store, read_models, batch_size=2)
    second = Projector(shop.store, read_models, batch_size=3)
    threads = [threading.Thread(target=p.catch_up) for p in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = rebuild(shop.store, read_models, "stock_moves", check=True)
    assert report.differences == ()
    assert read_models.position("stock_moves") == shop.store.recorder.max_notification_id()
