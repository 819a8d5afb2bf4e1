"""Concurrent writers on PostgreSQL never oversell."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from ecomcore import InsufficientStock, Settings, Shop

WORKERS = 6
UNITS_EACH = 2
ON_HAND = 7


def _buy(store_url: str, worker: int, barrier, results) -> None:
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
            except Exception as error:  # reported to the test, which fails on it
                results.put(("error", f"{type(error).__name__}: {error}"))
    finally:
        shop.close()


@pytest.mark.slow
def test_concurrent_checkouts_of_the_last_units_never_oversell(fresh_postgres_url):
    """Several processes check out the last units at once: reservations never exceed stock, refusals are InsufficientStock."""
    url = fresh_postgres_url
    shop = Shop(url)
    shop.register_merchant(merchant_id="m1", name="Hot Deals")
    shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
    shop.register_sku(
        sku_id="HOT", spu_id="P1", merchant_id="m1", category_path=("c",), brand_id="b",
        unit_price=999, weight_g=100, title="Last units",
    )
    shop.receive_stock(sku_id="HOT", warehouse_id="w1", quantity=ON_HAND, reference="po")

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    workers = [ctx.Process(target=_buy, args=(url, n, barrier, results)) for n in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    # A worker that died before reporting (exit code != 0) fails the test here, at once.
    assert [process.exitcode for process in workers] == [0] * WORKERS
    outcomes = [results.get(timeout=10) for _ in range(WORKERS * UNITS_EACH)]

    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert errors == []
    reserved = sum(kind == "reserved" for kind, _ in outcomes)
    assert reserved == ON_HAND  # 12 attempts for 7 units: all 7 sold, 5 refused
    item = shop.stock_item("HOT", "w1")
    assert item.reserved(shop.clock.now()) == reserved <= item.on_hand
    assert len(item.reservations) == reserved
    shop.close()


@pytest.mark.slow
def test_orders_of_one_checkout_refunded_at_once_still_return_the_platform_coupon(fresh_postgres_url):
    """Two shops fully refund the two orders of a checkout at the same moment: neither misses the other's
    refund, so the platform coupon they shared comes back every time."""
    import threading

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
            barrier, errors = threading.Barrier(2), []

            def refund(shop: Shop, order_id, n: int) -> None:
                try:
                    barrier.wait(timeout=30)
                    order = shop.order(order_id)
                    lines = {line.line_no: line.quantity for line in order.lines}
                    shop.refund_only(order_id=order_id, refund_id=f"re-{round_}-{n}", lines=lines, reason="r")
                except Exception as error:  # reported below
                    errors.append(error)

            threads = [
                threading.Thread(target=refund, args=(shop, order_id, n))
                for n, (shop, order_id) in enumerate(zip(shops, receipt.order_ids, strict=True))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert setup.coupon(coupon).state is CouponState.AVAILABLE, f"round {round_}"
    finally:
        for shop in (setup, *shops):
            shop.close()
