"""Concurrent writers on PostgreSQL never oversell.

These tests are about storage (optimistic concurrency between processes and threads that
share one database), so they run on PostgreSQL only.  Whatever goes wrong inside a
worker, also while it opens its Shop or waits at the barrier, reaches the test with its
traceback and fails it; a worker that does not finish in time is stopped and fails it.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
import traceback

import pytest
from shop_fixtures import hot_sku_shop

from ecomcore import InsufficientStock, Settings, Shop

WORKERS = 6
UNITS_EACH = 2
ON_HAND = 7
#: Seconds a worker may take; past it the test stops the worker and fails.
WORKER_TIMEOUT = 120


def _buy(store_url: str, worker: int, barrier, results) -> None:
    try:
        # All workers open their Shop at once too: starting together must work.
        shop = Shop(store_url, settings=Settings(store_url=store_url, max_attempts=20))
        try:
            barrier.wait(timeout=60)
            for attempt in range(UNITS_EACH):
                try:
                    shop.checkout(
                        customer_id=f"buyer-{worker}",
                        items=[{"sku_id": "HOT", "quantity": 1}],
                        shipping_address="x",
                        client_request_id=f"w{worker}-{attempt}",
                    )
                    results.put(("reserved", worker))
                except InsufficientStock:
                    results.put(("refused", worker))
        finally:
            shop.close()
    except BaseException:  # reported to the test, which fails on it
        results.put(("error", f"worker {worker}:\n{traceback.format_exc()}"))
        raise
    finally:
        results.put(("finished", worker))


def _outcomes_of(workers: list, results) -> list[tuple[str, object]]:
    """What the worker processes reported, read until each said it finished (or all fell
    silent); then every worker is joined, and one still running is killed."""
    outcomes, finished = [], set()
    try:
        while len(finished) < len(workers):
            kind, detail = results.get(timeout=WORKER_TIMEOUT)
            if kind == "finished":
                finished.add(detail)
            else:
                outcomes.append((kind, detail))
    except queue.Empty:
        pass  # a worker died without a word or hangs: its exit code says which
    for process in workers:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
    return outcomes


@pytest.mark.slow
def test_concurrent_checkouts_of_the_last_units_never_oversell(fresh_postgres_url):
    """Several processes check out the last units at once: reservations never exceed stock, refusals are InsufficientStock."""
    url = fresh_postgres_url
    shop = hot_sku_shop(url, ON_HAND)

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    workers = [ctx.Process(target=_buy, args=(url, n, barrier, results)) for n in range(WORKERS)]
    for process in workers:
        process.start()
    outcomes = _outcomes_of(workers, results)

    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert errors == [], "\n".join(map(str, errors))
    # A worker that died before reporting, or was killed while hanging, fails the test here.
    assert [process.exitcode for process in workers] == [0] * WORKERS
    assert len(outcomes) == WORKERS * UNITS_EACH
    reserved = sum(kind == "reserved" for kind, _ in outcomes)
    assert reserved == ON_HAND  # 12 attempts for 7 units: all 7 sold, 5 refused
    item = shop.stock_item("HOT", "w1")
    assert item.reserved(shop.clock.now()) == reserved <= item.on_hand
    assert len(item.reservations) == reserved
    shop.close()


FLASH_BUYERS, FLASH_ROUNDS, FLASH_UNITS = 8, 4, 20


def _flash_buy(store_url: str, worker: int, barrier, results) -> None:
    """A buyer process with the default settings: checks out one unit, pays, again."""
    try:
        from ecomcore import ConcurrencyConflict
        from ecomcore.domain.stock_item import StockItem

        # Every reservation dwells between reading the stock item and saving it, so that
        # buyers overlap every time (racing, they would mostly lose: 8 writers at once).
        reserve = StockItem.reserve

        def slow_reserve(self, *args, **kwargs):
            reserve(self, *args, **kwargs)
            time.sleep(0.02)

        StockItem.reserve = slow_reserve  # type: ignore[method-assign]
        shop = Shop(store_url)
        try:
            barrier.wait(timeout=60)
            for n in range(FLASH_ROUNDS):
                try:
                    receipt = shop.checkout(
                        customer_id=f"buyer-{worker}", items=[{"sku_id": "HOT", "quantity": 1}],
                        shipping_address="x", client_request_id=f"flash-{worker}-{n}",
                    )
                    shop.pay(checkout_id=receipt.checkout_id, payment_id=f"flash-{worker}-{n}",
                             amount=receipt.payable, provider_txn="t")
                    results.put(("sold", worker))
                except InsufficientStock:
                    results.put(("refused", worker))
                except ConcurrencyConflict:
                    results.put(("conflict", worker))
        finally:
            shop.close()
    except BaseException:  # reported to the test, which fails on it
        results.put(("error", f"worker {worker}:\n{traceback.format_exc()}"))
        raise
    finally:
        results.put(("finished", worker))


@pytest.mark.slow
def test_a_flash_sale_sells_every_unit_once_and_hands_nobody_a_conflict(fresh_postgres_url):
    """More buyers than units, one SKU, many processes, default settings: the units sold are
    exactly the units there, every other buyer is told InsufficientStock, and no buyer is
    handed ConcurrencyConflict (writers of the stock item take turns, issue 10 item 5)."""
    url = fresh_postgres_url
    shop = hot_sku_shop(url, FLASH_UNITS)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(FLASH_BUYERS), ctx.Queue()
    workers = [ctx.Process(target=_flash_buy, args=(url, n, barrier, results)) for n in range(FLASH_BUYERS)]
    for process in workers:
        process.start()
    outcomes = _outcomes_of(workers, results)

    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert errors == [], "\n".join(map(str, errors))
    assert [process.exitcode for process in workers] == [0] * FLASH_BUYERS
    kinds = [kind for kind, _ in outcomes]
    assert len(kinds) == FLASH_BUYERS * FLASH_ROUNDS
    assert kinds.count("conflict") == 0
    assert kinds.count("sold") == FLASH_UNITS
    assert kinds.count("refused") == FLASH_BUYERS * FLASH_ROUNDS - FLASH_UNITS
    item = shop.stock_item("HOT", "w1")
    assert item.on_hand == FLASH_UNITS and item.available(shop.clock.now()) == 0
    assert len(item.reservations) == FLASH_UNITS and all(r.confirmed for r in item.reservations.values())
    shop.close()


@pytest.mark.slow
def test_orders_of_one_checkout_refunded_at_once_still_return_the_platform_coupon(fresh_postgres_url):
    """Two shops fully refund the two orders of a checkout at the same moment: neither misses the other's
    refund, so the platform coupon they shared comes back every time."""
    from shop_fixtures import START, campaign, stock_catalogue

    from ecomcore import PLATFORM, CouponState, CouponTerms, ManualClock
    from ecomcore.infrastructure.catalogue import InMemoryCatalogue

    catalogue = InMemoryCatalogue()
    clock = ManualClock(START)
    settings = Settings(store_url=fresh_postgres_url, max_attempts=20)
    setup = Shop(fresh_postgres_url, clock=clock, settings=settings, catalogue=catalogue)
    stock_catalogue(setup)
    for sku_id, warehouse_id in (("C1", "w2"), ("E1", "w2")):
        setup.receive_stock(sku_id=sku_id, warehouse_id=warehouse_id, quantity=50, reference="po")
    platform = campaign(setup, CouponTerms(kind="cash", amount_off=500, funding=PLATFORM), total=50, per_customer=50)
    shops = [Shop(fresh_postgres_url, clock=clock, settings=settings, catalogue=catalogue) for _ in range(2)]
    try:
        for round_ in range(5):
            coupon = setup.issue_coupon(campaign_id=platform, customer_id="alice")
            receipt = setup.checkout(
                customer_id="alice", items=[{"sku_id": "C1", "quantity": 2}, {"sku_id": "E1", "quantity": 1}],
                platform_coupon_id=coupon, shipping_address="x",
            )
            setup.pay(checkout_id=receipt.checkout_id, payment_id=f"pay-{round_}", amount=receipt.payable,
                      provider_txn="t")
            barrier, errors = threading.Barrier(2), []  # errors: what went wrong inside the threads

            def refund(shop: Shop, order_id, n: int, barrier=barrier, errors=errors, round_=round_) -> None:
                try:
                    barrier.wait(timeout=30)
                    order = shop.order(order_id)
                    lines = {line.line_no: line.quantity for line in order.lines}
                    shop.refund_only(order_id=order_id, refund_id=f"re-{round_}-{n}", lines=lines, reason="r")
                except BaseException:  # collected and asserted below
                    errors.append(f"refund {n}:\n{traceback.format_exc()}")

            threads = [
                threading.Thread(target=refund, args=(shop, order_id, n))
                for n, (shop, order_id) in enumerate(zip(shops, receipt.order_ids, strict=True))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=WORKER_TIMEOUT)
            assert not any(thread.is_alive() for thread in threads), f"round {round_}: a refund did not finish"
            assert errors == [], "\n".join(errors)
            assert setup.coupon(coupon).state is CouponState.AVAILABLE, f"round {round_}"
    finally:
        for shop in (setup, *shops):
            shop.close()


def test_two_checkouts_locking_two_items_in_opposite_orders_both_go_through(fresh_postgres_url, monkeypatch):
    """One cart is X then Y, the other Y then X, both at once: a command only waits for its
    first lock and steps back when a further one is taken, so neither waits on the other
    for ever (PostgreSQL would end such a deadlock with an error after a second)."""
    from ecomcore.infrastructure import locks

    url = fresh_postgres_url
    setup = hot_sku_shop(url, 10)
    setup.register_sku(
        sku_id="HOT2", spu_id="P2", merchant_id="m1", category_path=("c",), brand_id="b",
        unit_price=500, weight_g=100, title="Second hot item",
    )
    setup.receive_stock(sku_id="HOT2", warehouse_id="w1", quantity=10, reference="po")
    both_hold_one, first = threading.Barrier(2), threading.local()
    lock = locks.AdvisoryLocks.lock

    def lock_then_wait_for_the_other(self, aggregate_id):
        lock(self, aggregate_id)
        if not getattr(first, "done", False):
            first.done = True
            both_hold_one.wait(timeout=10)  # each thread's first lock: both now hold one item

    monkeypatch.setattr(locks.AdvisoryLocks, "lock", lock_then_wait_for_the_other)
    errors, receipts = [], []

    def buy(items) -> None:
        try:
            with Shop(url) as shop:
                receipts.append(shop.checkout(customer_id="c", items=items, shipping_address="x"))
        except BaseException:  # asserted below
            errors.append(traceback.format_exc())

    carts = ([{"sku_id": "HOT", "quantity": 1}, {"sku_id": "HOT2", "quantity": 1}],
             [{"sku_id": "HOT2", "quantity": 1}, {"sku_id": "HOT", "quantity": 1}])
    threads = [threading.Thread(target=buy, args=(cart,)) for cart in carts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(receipts) == 2
    assert setup.available("HOT", "w1") == setup.available("HOT2", "w1") == 8
    setup.close()
