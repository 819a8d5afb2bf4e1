"""The write path's shortcuts keep every answer the store would give (issue 10, item 3).

Commands borrow aggregates from the process's cache without copying them, read the
catalogue from memory while its version stands, and take snapshots from the aggregate at
hand. Each test here would fail if a shortcut let a failed command, another process's
write or a catalogue change go unseen.
"""

from __future__ import annotations

import pytest
from shop_fixtures import START, hot_sku_shop

from ecomcore import InsufficientStock, ManualClock, NotFound, Settings, Shop
from ecomcore.application import unit_of_work
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.aggregate import project
from ecomcore.domain.errors import DomainError
from ecomcore.domain.stock_item import StockItem, stock_item_id

HOT = stock_item_id("HOT", "w1")


class Refused(DomainError):
    code = "refused_for_the_test"


def _reserve_then(shop: Shop, quantity: int, error: Exception | None) -> None:
    """A command that reserves units of HOT for a new order, then fails with ``error``."""

    def handler(uow: UnitOfWork) -> None:
        item = uow.get(StockItem, HOT)
        item.reserve(stock_item_id("order", str(quantity)), quantity, uow.now + shop.settings.payment_timeout, uow.now)
        if error is not None:
            raise error

    shop._transact(handler)


@pytest.mark.parametrize("error", [Refused("no"), RuntimeError("bug")], ids=["refusal", "unexpected error"])
def test_a_failed_command_leaves_the_cached_aggregate_as_the_store_has_it(store_url, error) -> None:
    """The aggregate a failed command changed is not handed back to the cache: the next
    command sees the stock as stored, not the units the failed one had reserved."""
    with hot_sku_shop(store_url, on_hand=10) as shop:
        assert shop.available("HOT", "w1") == 10  # the item is in the cache now
        with pytest.raises(type(error)):
            _reserve_then(shop, 4, error)
        assert shop.available("HOT", "w1") == 10
        assert shop.stock_item("HOT", "w1").reservations == {}
        shop.checkout(customer_id="c", items=[{"sku_id": "HOT", "quantity": 10}], shipping_address="x")
        assert shop.available("HOT", "w1") == 0


def test_a_command_that_lost_a_race_is_run_again_on_what_the_store_has(store_url, monkeypatch) -> None:
    """Another writer changes the item between this command's read and its save: the save
    conflicts, and the attempt's changed copy (which holds changes never stored) is dropped,
    so the next attempt builds on the other writer's events, not beside them.

    (Writers of a stock item take turns on PostgreSQL rather than race; the race is made
    here as it happens there for any aggregate that is not ``contended``.)"""
    monkeypatch.setattr(StockItem, "contended", False)
    with hot_sku_shop(store_url, on_hand=10) as shop, Shop(store_url) as other:
        assert shop.available("HOT", "w1") == 10
        raced = []

        def another_writer_moves_first() -> None:
            if not raced:
                raced.append(True)
                other.receive_stock(sku_id="HOT", warehouse_id="w1", quantity=5, reference="po-2")

        monkeypatch.setattr(unit_of_work, "after_first_read", another_writer_moves_first)
        _reserve_then(shop, 4, None)
        assert raced
        assert shop.available("HOT", "w1") == 10 + 5 - 4
        item = shop.stock_item("HOT", "w1")
        replayed = project(None, shop.store.events.get(HOT))
        assert isinstance(replayed, StockItem)
        assert (item.version, item.on_hand, dict(item.reservations)) == (
            replayed.version, replayed.on_hand, dict(replayed.reservations)
        )


def test_what_another_process_stored_is_seen_by_the_next_command(store_url) -> None:
    """A cached aggregate is brought up to date with the events other writers stored."""
    with hot_sku_shop(store_url, on_hand=3) as shop, Shop(store_url) as other:
        assert shop.available("HOT", "w1") == 3
        other.receive_stock(sku_id="HOT", warehouse_id="w1", quantity=7, reference="po-2")
        receipt = shop.checkout(customer_id="c", items=[{"sku_id": "HOT", "quantity": 10}], shipping_address="x")
        assert other.available("HOT", "w1") == 0
        other.pay(checkout_id=receipt.checkout_id, payment_id="p1", amount=receipt.payable, provider_txn="t1")
        # The checkout and its order were cached by `shop` when it saved them; `other` paid them.
        assert shop.checkout_of(receipt.checkout_id).is_paid


def test_a_query_answers_a_copy_the_caller_may_change(store_url) -> None:
    with hot_sku_shop(store_url, on_hand=10) as shop:
        item = shop.stock_item("HOT", "w1")
        item.on_hand = 1_000
        item.reservations.set(stock_item_id("x", "y"), item.reservations.get(HOT) or _a_reservation())
        assert shop.available("HOT", "w1") == 10
        with pytest.raises(InsufficientStock):
            shop.checkout(customer_id="c", items=[{"sku_id": "HOT", "quantity": 11}], shipping_address="x")


def _a_reservation():
    from ecomcore.domain.stock_item import Reservation

    return Reservation(quantity=1, expires_at=START)


def test_a_catalogue_change_by_another_process_reaches_the_next_command(store_url) -> None:
    """Commands remember catalogue lookups only while the catalogue's version stands: a
    price another process changed, and a SKU it added after this one found it missing,
    are both seen at once."""
    with hot_sku_shop(store_url, on_hand=10) as shop, Shop(store_url) as other:
        first = shop.checkout(customer_id="c", items=[{"sku_id": "HOT", "quantity": 1}], shipping_address="x")
        with pytest.raises(NotFound):
            shop.checkout(customer_id="c", items=[{"sku_id": "NEW", "quantity": 1}], shipping_address="x")
        other.register_sku(
            sku_id="HOT", spu_id="P1", merchant_id="m1", category_path=("c",), brand_id="b",
            unit_price=1_999, weight_g=100, title="Hot item, dearer",
        )
        other.register_sku(
            sku_id="NEW", spu_id="P2", merchant_id="m1", category_path=("c",), brand_id="b",
            unit_price=500, weight_g=100, title="New item",
        )
        other.receive_stock(sku_id="NEW", warehouse_id="w1", quantity=1, reference="po")
        second = shop.checkout(customer_id="c", items=[{"sku_id": "HOT", "quantity": 1}], shipping_address="x")
        assert second.payable - first.payable == 1_999 - 999
        shop.checkout(customer_id="c", items=[{"sku_id": "NEW", "quantity": 1}], shipping_address="x")


def test_snapshots_taken_from_the_aggregate_at_hand_load_as_the_full_replay(store_url) -> None:
    """A snapshot is stored whenever a save passes a multiple of the interval, from the
    saved aggregate itself; loading from it gives what replaying every event gives."""
    url = store_url
    with Shop(url, clock=ManualClock(START), settings=Settings(store_url=url, snapshot_interval=5)) as shop:
        shop.register_merchant(merchant_id="m1", name="m")
        shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
        shop.register_sku(
            sku_id="HOT", spu_id="P1", merchant_id="m1", category_path=("c",), brand_id="b",
            unit_price=999, weight_g=100, title="Hot item",
        )
        for n in range(12):
            shop.receive_stock(sku_id="HOT", warehouse_id="w1", quantity=1, reference=f"po-{n}")
            shop.checkout(customer_id=f"c{n}", items=[{"sku_id": "HOT", "quantity": 1}], shipping_address="x")
        snapshots = [s.originator_version for s in shop.store.snapshots.get(HOT)]
        version = shop.stock_item("HOT", "w1").version
        assert len(snapshots) == version // 5 and all(v % 5 <= 1 for v in snapshots), snapshots
    with Shop(url, settings=Settings(store_url=url, snapshot_interval=5)) as fresh:
        loaded = fresh.stock_item("HOT", "w1")
        replayed = project(None, fresh.store.events.get(HOT))
        assert isinstance(replayed, StockItem)
        assert (loaded.version, loaded.on_hand, dict(loaded.reservations), loaded.low_stock_flagged) == (
            replayed.version, replayed.on_hand, dict(replayed.reservations), replayed.low_stock_flagged
        )
