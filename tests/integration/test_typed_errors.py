"""Every failure typed (issue 11 item 2): queries validate their arguments like commands,
and the store's failures (unreachable, locked, not a database) are ecomcore's typed errors
with stable codes, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    MapperDeserialisationError,
    OperationalError,
)
from shop_fixtures import START, open_shop, stock_catalogue, stored_events

from ecomcore import (
    InvalidCommand,
    NotFound,
    Settings,
    Shop,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
)
from ecomcore.domain.stock_item import stock_item_id
from ecomcore.infrastructure.failures import store_errors, typed_store_error

NAIVE = datetime(2026, 11, 11, 8, 0)
BAD_IDS: list[Any] = ["not-a-uuid", "", 42, None, b"\x00" * 3, "1" * 10_000]
BAD_VERSIONS: list[Any] = [0, -1, True, "3", 2.0, 2**64, float("nan")]


def _queries_by_id(shop: Shop) -> dict[str, Any]:
    return {
        "order": shop.order,
        "coupon": shop.coupon,
        "shipment": shop.shipment,
        "checkout": shop.checkout_of,
        "campaign": shop.campaign,
        "refundable": shop.refundable,
        "refunds": shop.refunds,
    }


@pytest.fixture
def bare_shop(store_url: str):
    shop = open_shop(store_url)
    yield shop
    shop.close()


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda v: repr(v)[:16])
def test_a_query_with_an_id_that_is_no_uuid_is_an_invalid_command(bare_shop: Shop, bad: Any) -> None:
    """``shop.order("not-a-uuid")`` and its kind: InvalidCommand naming the argument, on every store."""
    for name, query in _queries_by_id(bare_shop).items():
        with pytest.raises(InvalidCommand) as caught:
            query(bad)
        assert caught.value.code == "invalid_command"
        assert "_id" in caught.value.message, name


@pytest.mark.parametrize("bad", BAD_VERSIONS, ids=repr)
def test_a_version_below_one_or_not_an_int_is_an_invalid_command(bare_shop: Shop, bad: Any) -> None:
    """Versions start at 1: 0, negatives, bools, strings, floats and overflowing ints are refused."""
    some_id = uuid.uuid4()
    for query in (bare_shop.order, bare_shop.coupon, bare_shop.shipment):
        with pytest.raises(InvalidCommand, match="version"):
            query(some_id, version=bad)
    with pytest.raises(InvalidCommand, match="version"):
        bare_shop.stock_item("A1", "w1", version=bad)


def test_unknown_ids_are_not_found_and_so_are_ids_of_another_aggregate(bare_shop: Shop) -> None:
    """A well-formed id nobody stored, now or at a version, is NotFound; so is a stock item asked for as an order."""
    stock_catalogue(bare_shop)
    bare_shop.set_up_stock(sku_id="A1", warehouse_id="w1")
    unknown = uuid.uuid4()
    for query in _queries_by_id(bare_shop).values():
        with pytest.raises(NotFound):
            query(unknown)
        with pytest.raises(NotFound):
            query(str(unknown))  # the text of a UUID is accepted, like commands accept it
    for version in (None, 1):
        with pytest.raises(NotFound):
            bare_shop.order(unknown, version=version)
        with pytest.raises(NotFound, match="not a Order|not an Order|StockItem"):
            bare_shop.order(stock_item_id("A1", "w1"), version=version)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.sweep(now=NAIVE),
        lambda s: s.expire_overdue_orders(NAIVE),
        lambda s: s.expire_coupons(NAIVE),
        lambda s: s.complete_orders(NAIVE),
        lambda s: s.recommend_coupons("sam", [{"sku_id": "A1", "quantity": 1}], now=NAIVE),
        lambda s: s.sweep(now="tomorrow"),
    ],
    ids=["sweep", "expire_overdue_orders", "expire_coupons", "complete_orders", "recommend_coupons", "text"],
)
def test_a_moment_without_a_zone_is_an_invalid_command(bare_shop: Shop, call: Any) -> None:
    """Time-driven work and recommendations refuse a naive datetime before touching the store."""
    before = stored_events(bare_shop)
    with pytest.raises(InvalidCommand, match="now"):
        call(bare_shop)
    assert stored_events(bare_shop) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.available(""),
        lambda s: s.available("A1", "bad\x00id"),
        lambda s: s.stock_item("A1", None),
        lambda s: s.coupon_ids_of(None),
        lambda s: s.coupon_ids_of("x" * 1000),
        lambda s: s.return_case(uuid.uuid4(), "not-a-uuid"),
    ],
    ids=["available-empty", "available-nul", "stock_item-none", "coupon_ids_of-none", "coupon_ids_of-long", "return"],
)
def test_other_query_arguments_are_validated(bare_shop: Shop, call: Any) -> None:
    """SKU, warehouse, customer and return ids are checked like the commands' own."""
    with pytest.raises(InvalidCommand):
        call(bare_shop)


def test_sweep_with_an_aware_moment_still_works(bare_shop: Shop) -> None:
    """The check refuses only what is wrong: an aware moment sweeps as before."""
    assert bare_shop.sweep(now=START) == {"expired_checkouts": 0, "expired_coupons": 0, "completed_orders": 0}


@pytest.mark.stores("postgres")
def test_an_unreachable_postgresql_is_store_unavailable_quickly(fresh_postgres_url: str) -> None:
    """Nothing listens on the port: StoreUnavailable within a few connect timeouts, no password shown."""
    url = "postgresql://shop:pa55word@127.0.0.1:9/shop"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        Shop(url, settings=Settings(store_url=url, postgres_connect_timeout_s=1))
    assert time.monotonic() - started < 10
    assert caught.value.code == "store_unavailable"
    assert "pa55word" not in str(caught.value)


def test_a_sqlite_file_that_is_not_a_database_is_store_corrupted(tmp_path) -> None:
    """A file with other content where the store should be: StoreCorrupted, not a raw sqlite3 error."""
    path = tmp_path / "not-a-store.sqlite"
    path.write_bytes(b"this is a text file, not SQLite " * 200)
    with pytest.raises(StoreCorrupted, match="not a database"):
        open_shop(f"sqlite:///{path}")


def test_a_sqlite_store_in_a_missing_directory_is_store_unavailable(tmp_path) -> None:
    """The file cannot be opened at all: StoreUnavailable."""
    with pytest.raises(StoreUnavailable, match="unable to open"):
        open_shop(f"sqlite:///{tmp_path}/missing/dir/store.sqlite")


def test_a_sqlite_store_locked_past_its_timeout_is_store_unavailable(tmp_path) -> None:
    """Another process holds the write lock longer than sqlite_lock_timeout_s: the command
    raises StoreUnavailable and stores nothing."""
    url = f"sqlite:///{tmp_path}/store.sqlite"
    shop = open_shop(url, sqlite_lock_timeout_s=1)
    stock_catalogue(shop)
    shop.set_up_stock(sku_id="A1", warehouse_id="w1")
    before = stored_events(shop)
    blocker = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="po")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert stored_events(shop) == before
    assert shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=1, reference="po") == 1
    shop.close()


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (OperationalError("server closed the connection unexpectedly"), StoreUnavailable),
        (DataError("value out of range"), StoreError),
        (IntegrityError("duplicate key"), StoreError),
        (AggregateNotFoundError("Aggregate x version None not found."), NotFound),
        (MapperDeserialisationError("cannot decode"), StoreCorrupted),
        (sqlite3.OperationalError("database or disk is full"), StoreUnavailable),
        (sqlite3.DatabaseError("database disk image is malformed"), StoreCorrupted),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__,
)
def test_the_library_errors_map_to_typed_errors_keeping_the_cause(raised: Exception, expected: type) -> None:
    """One mapping for both stores; the original error stays the cause, nothing is swallowed."""
    assert type(typed_store_error(raised)) is expected
    with pytest.raises(expected) as caught, store_errors():
        raise raised
    assert caught.value.__cause__ is raised


def test_errors_that_are_no_fault_of_the_store_pass_unchanged() -> None:
    """A bug (a TypeError, say) is not disguised as a store failure."""
    with pytest.raises(TypeError), store_errors():
        raise TypeError("a bug")
