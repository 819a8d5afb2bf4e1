"""Loading checks what it loads (issue 11 item 3): tampered copies of a store — a payload
edited, an event deleted, an unknown topic, class versions 0 and 99 — raise
``StoreCorrupted`` naming the aggregate and the version when a ``Shop`` loads them, and
stop a projector with ``ProjectionFailed`` naming the notification, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification
from shop_fixtures import open_shop, stock_catalogue

from ecomcore import NotFound, Shop, StoreCorrupted
from ecomcore.domain.stock_item import stock_item_id
from ecomcore.infrastructure.store import is_postgres
from ecomcore_projections.base import ProjectionFailed
from ecomcore_projections.runner import Projector, ReadModels

ITEM = stock_item_id("A1", "w1")
#: The event every tampering hits: the stock item's second receipt (its version 3).
TAMPERED_VERSION = 3


@pytest.fixture
def history(store_url: str) -> Iterator[str]:
    """A store whose stock item A1/w1 has versions 1 (set up) to 4 (three receipts)."""
    shop = open_shop(store_url)
    stock_catalogue(shop)
    for n in range(3):
        shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference=f"po-{n}")
    assert shop.stock_item("A1", "w1").version == 4
    shop.close()
    return store_url


def notification_of(shop: Shop, aggregate_id: UUID, version: int) -> Notification:
    """The notification of one stored event, read from the log."""
    head = shop.store.recorder.max_notification_id() or 0
    found = [
        n
        for n in shop.store.recorder.select_notifications(1, head)
        if n.originator_id == aggregate_id and n.originator_version == version
    ]
    assert len(found) == 1
    return found[0]


def tamper(shop: Shop, statement: str, *params: Any) -> None:
    """Run one statement (``%s`` placeholders) straight on the store's events table,
    as someone with access to the database would."""
    postgres = is_postgres(shop.settings.store_url)
    table = shop.store.recorder.events_table_name
    sql = statement.format(table=table)
    if not postgres:
        sql = sql.replace("%s", "?")
        params = tuple(p.hex if isinstance(p, UUID) else p for p in params)  # how SQLite keeps ids
    with shop.store.recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(sql, params)
        if postgres:
            changed = cursor.rowcount
        else:
            cursor.execute("SELECT changes()")
            changed = cursor.fetchone()[0]
        assert changed == 1


def _edit_payload(shop: Shop, notification: Notification) -> None:
    tamper(
        shop, "UPDATE {table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
        b"\x00{not json", ITEM, TAMPERED_VERSION,
    )


def _set_class_version(value: int) -> Callable[[Shop, Notification], None]:
    def edit(shop: Shop, notification: Notification) -> None:
        state = json.loads(notification.state)
        state["class_version"] = value
        tamper(
            shop, "UPDATE {table} SET state = %s WHERE originator_id = %s AND originator_version = %s",
            json.dumps(state).encode(), ITEM, TAMPERED_VERSION,
        )

    return edit


def _unknown_topic(shop: Shop, notification: Notification) -> None:
    tamper(
        shop, "UPDATE {table} SET topic = %s WHERE originator_id = %s AND originator_version = %s",
        "ecomcore.domain.stock_item:StockItem.Teleported", ITEM, TAMPERED_VERSION,
    )


TAMPERINGS = {
    "payload-edited": (_edit_payload, "cannot decode"),
    "class-version-0": (_set_class_version(0), "class_version 0"),
    "class-version-99": (_set_class_version(99), "class_version 99"),
    "unknown-topic": (_unknown_topic, "unknown topic"),
}


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_a_tampered_event_is_refused_when_a_shop_loads_it(history: str, kind: str) -> None:
    """Queries, historical loads and commands raise StoreCorrupted naming the aggregate and version."""
    edit, words = TAMPERINGS[kind]
    shop = open_shop(history)
    try:
        edit(shop, notification_of(shop, ITEM, TAMPERED_VERSION))
        for load in (
            lambda: shop.stock_item("A1", "w1"),
            lambda: shop.stock_item("A1", "w1", version=4),
            lambda: shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="po-x"),
        ):
            with pytest.raises(StoreCorrupted, match=words) as caught:
                load()
            assert (caught.value.aggregate_id, caught.value.version) == (ITEM, TAMPERED_VERSION)
            assert caught.value.code == "store_corrupted"
            assert str(ITEM) in caught.value.message and f"v{TAMPERED_VERSION}" in caught.value.message
        # What lies before the damage still loads: history up to it is sound.
        assert shop.stock_item("A1", "w1", version=2).version == 2
    finally:
        shop.close()


def test_a_deleted_event_is_a_gap_that_loading_refuses(history: str) -> None:
    """An event deleted in the middle of a stream: StoreCorrupted names the missing version."""
    shop = open_shop(history)
    try:
        tamper(shop, "DELETE FROM {table} WHERE originator_id = %s AND originator_version = %s", ITEM, TAMPERED_VERSION)
        for load in (
            lambda: shop.stock_item("A1", "w1"),
            lambda: shop.stock_item("A1", "w1", version=4),
            lambda: shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="po-x"),
        ):
            with pytest.raises(StoreCorrupted, match="version 3 is missing") as caught:
                load()
            assert (caught.value.aggregate_id, caught.value.version) == (ITEM, TAMPERED_VERSION)
    finally:
        shop.close()


def test_a_gap_is_refused_when_a_cached_aggregate_is_brought_up_to_date(history: str) -> None:
    """The events after a cached aggregate's version must start at the next one."""
    reader = open_shop(history)
    writer = open_shop(history)
    try:
        assert reader.available("A1", "w1") == 3  # reader now holds the item at v4 in its cache
        writer.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="po-5")
        writer.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="po-6")
        tamper(writer, "DELETE FROM {table} WHERE originator_id = %s AND originator_version = %s", ITEM, 5)
        with pytest.raises(StoreCorrupted, match="version 5 is missing") as caught:
            reader.available("A1", "w1")
        assert (caught.value.aggregate_id, caught.value.version) == (ITEM, 5)
    finally:
        reader.close()
        writer.close()


def test_a_version_never_reached_is_not_found(history: str) -> None:
    """Asking for a version beyond the aggregate's latest is NotFound, not its current state."""
    shop = open_shop(history)
    try:
        with pytest.raises(NotFound, match="no version 9: its latest is 4"):
            shop.stock_item("A1", "w1", version=9)
    finally:
        shop.close()


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_a_tampered_event_stops_the_projector_naming_the_notification(history: str, kind: str) -> None:
    """Every projection that reads past the damaged event stops there, naming its notification;
    nothing after it is applied and nothing is skipped."""
    edit, words = TAMPERINGS[kind]
    shop = open_shop(history)
    read_models = ReadModels(shop.settings.store_url)
    try:
        damaged = notification_of(shop, ITEM, TAMPERED_VERSION)
        edit(shop, damaged)
        read_models.create_tables()
        projector = Projector(shop.store, read_models, names=["stock"])
        with pytest.raises(ProjectionFailed) as caught:
            projector.catch_up()
        failed = caught.value
        assert failed.code == "projection_failed"
        assert failed.position == damaged.id
        assert f"#{damaged.id}" in failed.message and "cannot apply" in failed.message
        assert isinstance(failed.cause, StoreCorrupted)
        assert failed.cause.notification_id == damaged.id
        assert (failed.cause.aggregate_id, failed.cause.version) == (ITEM, TAMPERED_VERSION)
        assert words in failed.cause.message
        assert read_models.position("stock") < damaged.id
        # Run again (a restarted worker): it stops at the same event.
        with pytest.raises(ProjectionFailed) as again:
            Projector(shop.store, read_models, names=["stock"]).catch_up()
        assert again.value.position == damaged.id
    finally:
        read_models.dispose()
        shop.close()


def test_an_unknown_topic_stops_even_projections_that_do_not_handle_its_aggregate(history: str) -> None:
    """A projection of other events also stops: the event might have been one of its own."""
    shop = open_shop(history)
    read_models = ReadModels(shop.settings.store_url)
    try:
        damaged = notification_of(shop, ITEM, TAMPERED_VERSION)
        _unknown_topic(shop, damaged)
        read_models.create_tables()
        with pytest.raises(ProjectionFailed) as caught:
            Projector(shop.store, read_models, names=["order_status"]).catch_up()
        assert caught.value.position == damaged.id
        assert isinstance(caught.value.cause, StoreCorrupted)
    finally:
        read_models.dispose()
        shop.close()


def test_a_sound_store_projects_past_events_of_other_projections(history: str) -> None:
    """Reading every notification and keeping a projection's own still applies exactly its events."""
    shop = open_shop(history)
    read_models = ReadModels(shop.settings.store_url)
    try:
        read_models.create_tables()
        projector = Projector(shop.store, read_models, names=["order_status"], batch_size=2)
        assert projector.catch_up() == 0  # no order events in this history
        assert read_models.position("order_status") == shop.store.recorder.max_notification_id()
        projector = Projector(shop.store, read_models, names=["stock"], batch_size=3)
        assert projector.catch_up() == 4
    finally:
        read_models.dispose()
        shop.close()
