"""Exactly once under concurrent retries, on SQLite and PostgreSQL, from separate processes.

A command that carries an idempotency key (a checkout's ``client_request_id``, a payment
id, a refund id) answers its first outcome to every caller, however many run it at once;
a refund that lost the race to another refund id of the same units is refused with
``RefundRefused``, never anything else.

To hit the race window on every run, each worker holds every attempt open for a while
right after its first read (``unit_of_work.after_first_read``): one worker briefly, the
others longer, so the first finishes while the others sit between their first read and
the rest of theirs.  Whatever goes wrong inside a worker reaches the test with its
traceback; a worker that does not finish in time is stopped and fails the test.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import queue
import time
import traceback
from typing import Any
from uuid import UUID

import pytest
from shop_fixtures import hot_sku_shop

from ecomcore import PLATFORM, CouponState, CouponTerms, Settings, Shop
from ecomcore.application import unit_of_work

WORKERS = 4
#: Seconds a worker may take; past it the test stops the worker and fails.
WORKER_TIMEOUT = 120
#: How long the first worker, and the others, hold an attempt open after its first read.
SHORT_PAUSE, LONG_PAUSE = 0.05, 0.4
ROUNDS = 3


def _pause(seconds: float) -> None:
    unit_of_work.after_first_read = functools.partial(time.sleep, seconds)


def _outcome(call) -> tuple[str, Any]:
    """A command's receipt (as JSON-ready data), or the code of the typed error it raised."""
    from ecomcore.domain.errors import EcomcoreError

    try:
        return "ok", call().model_dump(mode="json")
    except EcomcoreError as error:
        return "refused", (error.code, str(error))


def _worker(job: str, store_url: str, worker: int, args: dict, barrier, results) -> None:
    try:
        shop = Shop(store_url, settings=Settings(store_url=store_url, max_attempts=10))
        try:
            if job == "refund":
                for round_, order_id in enumerate(args["order_ids"]):
                    # The workers take turns at finishing first.
                    _pause(SHORT_PAUSE if (worker + round_) % 2 == 0 else LONG_PAUSE)
                    barrier.wait(timeout=60)
                    outcome = _outcome(
                        lambda order_id=order_id, round_=round_: shop.refund_only(
                            order_id=order_id, refund_id=args["refund_id"].format(round=round_, worker=worker),
                            lines=args["lines"], reason="r",
                        )
                    )
                    results.put(("outcome", (round_, worker, outcome)))
            else:
                _pause(SHORT_PAUSE if worker == 0 else LONG_PAUSE)
                barrier.wait(timeout=60)
                if job == "checkout":
                    outcome = _outcome(lambda: shop.checkout(**args))
                else:
                    outcome = _outcome(lambda: shop.pay(**args))
                results.put(("outcome", (0, worker, outcome)))
        finally:
            shop.close()
    except BaseException:  # reported to the test, which fails on it
        results.put(("error", f"worker {worker}:\n{traceback.format_exc()}"))
        raise
    finally:
        results.put(("finished", worker))


def _run(job: str, store_url: str, args: dict, workers: int = WORKERS) -> list[tuple[int, int, tuple[str, Any]]]:
    """Run ``job`` in ``workers`` spawned processes at once; their outcomes as (round, worker, outcome),
    after asserting that no worker failed, hung or died."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    processes = [ctx.Process(target=_worker, args=(job, store_url, n, args, barrier, results)) for n in range(workers)]
    for process in processes:
        process.start()
    outcomes, errors, finished = [], [], set()
    try:
        while len(finished) < workers:
            kind, detail = results.get(timeout=WORKER_TIMEOUT)
            if kind == "finished":
                finished.add(detail)
            elif kind == "error":
                errors.append(detail)
            else:
                outcomes.append(detail)
    except queue.Empty:
        pass  # a worker died without a word or hangs: its exit code says which
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
    assert errors == [], "\n".join(errors)
    assert [process.exitcode for process in processes] == [0] * workers
    return sorted(outcomes, key=lambda o: (o[0], o[1]))


def _platform_coupon(shop: Shop, customer_id: str):
    now = shop.clock.now()
    from datetime import timedelta

    from ecomcore import Validity

    campaign_id = shop.create_campaign(
        name="platform", terms=CouponTerms(kind="cash", amount_off=100, funding=PLATFORM),
        claim_starts_at=now - timedelta(hours=1), claim_ends_at=now + timedelta(days=1),
        validity=Validity(days_from_issue=7), total_quantity=10, per_customer_limit=5,
    )
    return shop.issue_coupon(campaign_id=campaign_id, customer_id=customer_id)


@pytest.mark.parametrize("contended", ["stock", "coupon"])
def test_the_same_checkout_request_from_several_processes_answers_one_receipt(store_url, contended):
    """The same client_request_id from 4 processes at once: every caller gets the one checkout's receipt
    (not InsufficientStock for units that checkout holds, nor CouponNotUsable for the coupon it locked)."""
    quantity = 3
    # "stock": exactly the units asked for, so a second reservation would not fit;
    # "coupon": plenty of stock, but the coupon can be locked once.
    shop = hot_sku_shop(store_url, on_hand=quantity if contended == "stock" else 50)
    args: dict[str, Any] = {
        "customer_id": "alice", "items": [{"sku_id": "HOT", "quantity": quantity}], "shipping_address": "x",
        "client_request_id": "req-1",
    }
    coupon_id = None
    if contended == "coupon":
        coupon_id = _platform_coupon(shop, "alice")
        args["platform_coupon_id"] = coupon_id
    try:
        outcomes = _run("checkout", store_url, args)
        assert len(outcomes) == WORKERS
        assert {kind for _, _, (kind, _) in outcomes} == {"ok"}, outcomes
        receipts = [receipt for _, _, (_, receipt) in outcomes]
        assert all(receipt == receipts[0] for receipt in receipts)
        checkout = shop.checkout_of(UUID(receipts[0]["checkout_id"]))
        assert checkout.client_request_id == "req-1"
        assert checkout.version == 1  # placed once
        item = shop.stock_item("HOT", "w1")
        assert len(item.reservations) == 1
        assert item.reserved(shop.clock.now()) == quantity
        if coupon_id is not None:
            coupon = shop.coupon(coupon_id)
            assert coupon.state is CouponState.LOCKED and coupon.checkout_id == checkout.id
    finally:
        shop.close()


def test_the_same_payment_from_several_processes_answers_one_receipt(store_url):
    """The same payment_id from 4 processes at once: every caller gets the payment's receipt, recorded once."""
    shop = hot_sku_shop(store_url, on_hand=10)
    try:
        receipt = shop.checkout(customer_id="alice", items=[{"sku_id": "HOT", "quantity": 2}], shipping_address="x")
        args = {"checkout_id": receipt.checkout_id, "payment_id": "pay-1", "amount": receipt.payable,
                "provider_txn": "txn-1"}
        outcomes = _run("pay", store_url, args)
        assert len(outcomes) == WORKERS
        assert {kind for _, _, (kind, _) in outcomes} == {"ok"}, outcomes
        receipts = [paid for _, _, (_, paid) in outcomes]
        assert all(paid == receipts[0] for paid in receipts)
        assert receipts[0]["outcome"] == "paid" and receipts[0]["payment_id"] == "pay-1"
        checkout = shop.checkout_of(receipt.checkout_id)
        assert checkout.payment_id == "pay-1" and checkout.late_payments == {}
        assert checkout.version == 2  # placed, paid
        (order_id,) = receipt.order_ids
        order = shop.order(order_id)
        assert order.paid == receipt.payable
        assert len(order.shipments) == len(receipts[0]["shipment_ids"]) == 1
    finally:
        shop.close()


def _paid_orders(shop: Shop, rounds: int) -> list:
    """One paid order of two HOT units per round (refunds then race on them)."""
    order_ids = []
    for round_ in range(rounds):
        receipt = shop.checkout(customer_id="alice", items=[{"sku_id": "HOT", "quantity": 2}], shipping_address="x")
        shop.pay(checkout_id=receipt.checkout_id, payment_id=f"pay-{round_}", amount=receipt.payable, provider_txn="t")
        order_ids.extend(receipt.order_ids)
    return order_ids


def test_two_refunds_of_the_same_units_at_once_one_wins_the_other_is_refund_refused(store_url):
    """Two refund ids for the same (not yet dispatched) units at once, round after round: exactly one is
    issued, the other is always RefundRefused (refund_refused), never anything else."""
    shop = hot_sku_shop(store_url, on_hand=50)
    try:
        order_ids = _paid_orders(shop, ROUNDS)
        args = {"order_ids": order_ids, "lines": {1: 2}, "refund_id": "re-{round}-{worker}"}
        outcomes = _run("refund", store_url, args, workers=2)
        assert len(outcomes) == 2 * ROUNDS
        for round_, order_id in enumerate(order_ids):
            of_round = [outcome for r, _, outcome in outcomes if r == round_]
            issued = [receipt for kind, receipt in of_round if kind == "ok"]
            refused = [detail for kind, detail in of_round if kind == "refused"]
            assert len(issued) == 1 and len(refused) == 1, f"round {round_}: {of_round}"
            assert refused[0][0] == "refund_refused", f"round {round_}: {refused[0]}"
            assert [r.refund_id for r in shop.refunds(order_id)] == [issued[0]["refund_id"]]
        assert shop.stock_item("HOT", "w1").reservations == {}
    finally:
        shop.close()


def test_the_same_refund_from_two_processes_answers_one_receipt(store_url):
    """The same refund id from 2 processes at once, round after round: both get the refund's receipt, issued once."""
    shop = hot_sku_shop(store_url, on_hand=50)
    try:
        order_ids = _paid_orders(shop, ROUNDS)
        args = {"order_ids": order_ids, "lines": {1: 2}, "refund_id": "re-{round}"}
        outcomes = _run("refund", store_url, args, workers=2)
        assert len(outcomes) == 2 * ROUNDS
        for round_, order_id in enumerate(order_ids):
            of_round = [outcome for r, _, outcome in outcomes if r == round_]
            assert {kind for kind, _ in of_round} == {"ok"}, f"round {round_}: {of_round}"
            assert of_round[0][1] == of_round[1][1]
            assert [r.refund_id for r in shop.refunds(order_id)] == [f"re-{round_}"]
    finally:
        shop.close()
