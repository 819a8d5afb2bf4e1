"""Reconciliation ledger (spec §3, §6.3): exact double-entry balances, settlement, and the checks, on both stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID, uuid4

import pytest
from shop_fixtures import START, place_worked_example
from sqlalchemy import delete, select, update

from ecomcore import (
    ManualClock,
    RefundKind,
    Settings,
    Shop,
)
from ecomcore.domain.order import CancelReason, Order
from ecomcore.simulation import simulate_trading_day
from ecomcore_projections.base import ProjectionFailed
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.reconciliation import (
    DiscrepancyKind,
    EntryKind,
    ReconciliationProjection,
    ReconciliationQueries,
    Settlement,
    share_refund,
)
from ecomcore_projections.runner import Projector, ReadModels

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
DAY1, DAY2, DAY3 = date(2026, 11, 11), date(2026, 11, 12), date(2026, 11, 13)


@pytest.fixture
def queries_class() -> type[ReconciliationQueries]:
    """The read model under test: conftest's read_models, projector and queries hold it."""
    return ReconciliationQueries


@dataclass
class History:
    m1: UUID  # worked example, tea house: A1 2×, B1 1×, C1 3× (C1 refunded unit by unit before dispatch)
    m2: UUID  # worked example, iron works: E1 2× (one returned and refunded)
    carol: UUID  # B1 1×, refunded whole before dispatch: freight back too
    bob: UUID  # C1 1×, paid after its deadline: cancelled, the late money refunded


def money_history(shop, clock) -> History:
    """Three UTC days of money: payments on day 1, refunds and a late payment on day 2, a return on day 3.

    Worked example (see the after-sales scenarios): nets A1 4384, B1 3298, C1 2200 (m1) and
    E1 5400 (m2); platform shares 487/367/244 and 600; merchant-funded (promotion + merchant
    coupon) 1109/835/556; freight 1400 and 1200; payable 17882.
    """
    alice, _, _ = place_worked_example(shop)
    assert alice.payable == 17882
    shop.pay(checkout_id=alice.checkout_id, payment_id="pay-a", amount=17882, provider_txn="txn-a")
    m1, m2 = alice.order_ids
    carol = shop.checkout(customer_id="carol", items=[{"sku_id": "B1", "quantity": 1}], shipping_address="c")
    assert carol.payable == 4500 + 1100  # 1200 g: 800 + 300
    shop.pay(checkout_id=carol.checkout_id, payment_id="pay-c", amount=5600, provider_txn="txn-c")
    bob = shop.checkout(customer_id="bob", items=[{"sku_id": "C1", "quantity": 1}], shipping_address="b")
    assert bob.payable == 1000 + 800

    clock.advance(DAY + 2 * HOUR)  # day 2, 10:00: bob's deadline (08:00) has passed
    for n in (1, 2, 3):  # C1 one unit at a time: 733, 733, 734
        shop.refund_only(order_id=m1, refund_id=f"re-c1-{n}", lines={3: 1}, reason="out of stock")
    assert shop.refund_only(order_id=carol.order_ids[0], refund_id="re-carol", lines={1: 1}, reason="x").amount == 5600
    assert shop.pay(checkout_id=bob.checkout_id, payment_id="pay-b", amount=1800, provider_txn="txn-b").outcome == (
        "refunded"
    )

    clock.advance(DAY)  # day 3, 10:00
    for shipment_id in shop.order(m2).shipments:
        shop.dispatch(shipment_id=shipment_id, carrier="SF", tracking_number="SF-m2")
        shop.deliver(shipment_id=shipment_id)
    return_id = shop.request_return(order_id=m2, customer_id="alice", lines={1: 1}, reason="too heavy")
    shop.approve_return(order_id=m2, return_id=return_id)
    shop.ship_return(order_id=m2, return_id=return_id, carrier="SF", tracking_number="RET-m2")
    shop.receive_return(order_id=m2, return_id=return_id, sellable={1: 1})
    assert shop.refund_return(order_id=m2, return_id=return_id, refund_id="re-m2").amount == 2700
    return History(m1=m1, m2=m2, carol=carol.order_ids[0], bob=bob.order_ids[0])


@pytest.fixture
def history(shop, clock, projector) -> History:
    made = money_history(shop, clock)
    projector.catch_up()
    return made


def test_balances_are_exact_to_the_cent(history, queries):
    """Every account's balance after three days of payments, refunds, a late payment and a return."""
    balances = queries.balances()
    assert balances == {
        "provider_cash": 23482 - 7800 - 2700,  # 17882 + 5600 in; 2200 + 5600 + 2700 refunded; 1800 in and out
        "merchant:m1:goods": -(9882 + 1098 + 4500) + (2200 + 4500) + 244,  # net + subsidy − refunds − subsidy back
        "merchant:m1:freight": -(1400 + 1100) + 1100,
        "merchant:m2:goods": -(5400 + 600) + 2700 + 300,
        "merchant:m2:freight": -1200,
        "platform:subsidy": 1698 - 244 - 300,
        "merchant:m1:funded_discounts": 2500 - 556,
        "memo:funded_discounts": -(2500 - 556),
        "late_payments:suspense": 0,
    }
    assert sum(balances.values()) == 0
    clearing = {a: v for a, v in queries.balances(settled_clearing=True).items() if a.startswith("customer:")}
    assert len(clearing) == 4 and set(clearing.values()) == {0}  # every order's clearing account is back at zero


def test_a_fully_refunded_line_reverses_exactly_its_platform_share(history, queries):
    """C1's platform share 244 comes back 81 + 81 + 82 and its funded share 556 as 185 + 185 + 186."""
    reversals = [
        (e.kind, e.amount)
        for e in queries.entries(history.m1)
        if e.line_no == 3 and e.kind in (EntryKind.SUBSIDY_REVERSAL, EntryKind.FUNDED_DISCOUNT_REVERSAL)
    ]
    assert reversals == [
        (EntryKind.SUBSIDY_REVERSAL, 81),
        (EntryKind.FUNDED_DISCOUNT_REVERSAL, 185),
        (EntryKind.SUBSIDY_REVERSAL, 81),
        (EntryKind.FUNDED_DISCOUNT_REVERSAL, 185),
        (EntryKind.SUBSIDY_REVERSAL, 82),
        (EntryKind.FUNDED_DISCOUNT_REVERSAL, 186),
    ]
    assert [share_refund(244, 3, r, 1) for r in range(3)] == [81, 81, 82]


def test_per_order_balances(history, queries):
    """Paid, refunded and still owed for goods, per order; the cancelled order holds nothing."""
    money = {
        x.order_id: (
            x.state,
            x.paid,
            x.refunded,
            x.late_received,
            x.late_refunded,
            x.owed_for_goods,
            x.held_for_goods,
            x.cash,
        )
        for x in queries.order_balances()
    }
    assert money == {
        history.m1: ("paid", 11282, 2200, 0, 0, 9082, 9082, 9082),
        history.m2: ("paid", 6600, 2700, 0, 0, 3900, 3900, 3900),
        history.carol: ("paid", 5600, 5600, 0, 0, 0, 0, 0),
        history.bob: ("cancelled", 0, 0, 1800, 1800, 0, 0, 0),
    }
    assert queries.order_balance(history.m2).payable == 6600
    late = queries.entries(history.bob)
    assert [(e.kind, e.debit_account, e.credit_account, e.amount) for e in late] == [
        (EntryKind.LATE_PAYMENT, "provider_cash", f"customer:{history.bob}", 1800),
        (EntryKind.LATE_PAYMENT_HELD, f"customer:{history.bob}", "late_payments:suspense", 1800),
        (EntryKind.LATE_REFUND_RELEASE, "late_payments:suspense", f"customer:{history.bob}", 1800),
        (EntryKind.LATE_REFUND, f"customer:{history.bob}", "provider_cash", 1800),
    ]
    assert {e.at for e in late} == {START + DAY + 2 * HOUR}  # timestamps come back aware and exact


def test_settlement_per_merchant_and_day(history, queries):
    """What each merchant is owed per UTC day; each day's settlement less subsidy equals its cash."""
    settlements = queries.settlements()
    assert settlements == [
        Settlement("m1", DAY1, goods=9882 + 4500, subsidy=1098, freight=1400 + 1100, goods_refunded=0,
                   subsidy_reversed=0, freight_refunded=0, funded_discounts=2500),
        Settlement("m2", DAY1, goods=5400, subsidy=600, freight=1200, goods_refunded=0,
                   subsidy_reversed=0, freight_refunded=0, funded_discounts=0),
        Settlement("m1", DAY2, goods=0, subsidy=0, freight=0, goods_refunded=2200 + 4500,
                   subsidy_reversed=244, freight_refunded=1100, funded_discounts=-556),
        Settlement("m2", DAY3, goods=0, subsidy=0, freight=0, goods_refunded=2700,
                   subsidy_reversed=300, freight_refunded=0, funded_discounts=0),
    ]  # fmt: skip
    assert [s.owed for s in settlements] == [17980, 7200, -8044, -3000]
    # Cash per day: payments − refunds = Σ owed − subsidy paid by the platform that day.
    assert 17980 + 7200 - 1698 == 23482 and -8044 + 244 == -2200 - 5600 + 1800 - 1800 and -3000 + 300 == -2700
    assert queries.settlements(merchant_id="m2", day=DAY3) == [settlements[3]]


def test_a_consistent_history_has_no_discrepancies(history, queries, shop, read_models):
    """Every §6.3 check holds, and a rebuild in one big batch equals the live rows (applied one event a batch)."""
    assert queries.discrepancies() == []
    report = rebuild(shop.store, read_models, "reconciliation", check=True, batch_size=1)
    assert report.events > 0 and report.differences == ()


def test_rows_do_not_depend_on_batch_boundaries(shop, clock, read_models):
    """Applied one event per batch, the ledger equals a rebuild from zero in one large batch."""
    money_history(shop, clock)
    Projector(shop.store, read_models, names=["reconciliation"], batch_size=1).catch_up()
    report = rebuild(shop.store, read_models, "reconciliation", check=True, batch_size=100_000)
    assert report.events > 0 and report.differences == ()


# ---------------------------------------------------------------------- inconsistent money histories


def apply_forged(projector, shop, event) -> None:
    """Apply a hand-built event after the store's head, as if it had been stored."""
    position = (shop.store.recorder.max_notification_id() or 0) + 1000 + event.originator_version
    with projector.read_models.engine.begin() as conn:
        projector.projections["reconciliation"].apply_batch(conn, [(position, event)])


def found(queries) -> set[tuple[DiscrepancyKind, str]]:
    return {(d.kind, d.subject) for d in queries.discrepancies()}


def test_a_refund_larger_than_paid_is_reported(history, queries, projector, shop, clock):
    """A refund that takes 9000 more for a unit of a 5400 line: the order and the line are over-refunded."""
    forged = Order.RefundIssued(
        originator_id=history.m2,
        originator_version=shop.order(history.m2).version + 1,
        timestamp=clock.now(),
        refund_id="forged-1",
        kind=RefundKind.REFUND_ONLY,
        amount=9000,
        reason="forged",
        lines={1: (1, 9000)},
    )
    apply_forged(projector, shop, forged)
    assert found(queries) == {
        (DiscrepancyKind.OVER_REFUND, f"order:{history.m2}"),
        (DiscrepancyKind.OVER_REFUND, f"order:{history.m2}/line:1"),
    }
    (order,) = [d for d in queries.discrepancies() if d.subject == f"order:{history.m2}"]
    assert (order.expected, order.actual) == (6600, 2700 + 9000)


def test_a_late_payment_never_refunded_is_reported(history, queries, projector, shop, clock):
    """Late money kept on a cancelled order: it is not refunded and the cancelled order holds money."""
    forged = Order.LatePaymentReceived(
        originator_id=history.bob,
        originator_version=shop.order(history.bob).version + 1,
        timestamp=clock.now(),
        payment_id="pay-b2",
        amount=500,
        provider_txn="txn-b2",
    )
    apply_forged(projector, shop, forged)
    assert found(queries) == {
        (DiscrepancyKind.MONEY_ON_CANCELLED_ORDER, f"order:{history.bob}"),
        (DiscrepancyKind.UNREFUNDED_LATE_PAYMENT, f"order:{history.bob}"),
    }
    kept = {d.kind: (d.expected, d.actual) for d in queries.discrepancies()}
    assert kept[DiscrepancyKind.MONEY_ON_CANCELLED_ORDER] == (0, 500)
    assert kept[DiscrepancyKind.UNREFUNDED_LATE_PAYMENT] == (2300, 1800)


def test_a_deleted_entry_is_reported(history, queries, read_models):
    """Deleting m1's freight entry unbalances its payment, the order's goods, and day 1's settlement."""
    ledger = read_models.tables["reconciliation"]["reconciliation_ledger"]
    with read_models.engine.begin() as conn:
        position = conn.execute(
            select(ledger.c.position).where(ledger.c.order_id == str(history.m1), ledger.c.kind == "freight")
        ).scalar_one()
        conn.execute(delete(ledger).where(ledger.c.order_id == str(history.m1), ledger.c.kind == "freight"))
    assert found(queries) == {
        (DiscrepancyKind.UNBALANCED_ENTRY_SET, f"entry_set:{position}"),
        (DiscrepancyKind.ORDER_BALANCE, f"order:{history.m1}/goods"),
        (DiscrepancyKind.DAY_TOTALS, f"day:{DAY1}/settlement"),
    }
    by_subject = {d.subject: (d.expected, d.actual) for d in queries.discrepancies()}
    assert by_subject[f"order:{history.m1}/goods"] == (9082, 9082 - 1400)


def test_a_deleted_cash_entry_and_a_tampered_amount_are_reported(history, queries, read_models):
    """A refund's cash leg removed and a memo amount made negative are each caught."""
    ledger = read_models.tables["reconciliation"]["reconciliation_ledger"]
    with read_models.engine.begin() as conn:
        refund = conn.execute(
            select(ledger.c.position).where(ledger.c.reference == "re-carol", ledger.c.kind == "refund")
        ).scalar_one()
        conn.execute(delete(ledger).where(ledger.c.reference == "re-carol", ledger.c.kind == "refund"))
        memo = conn.execute(
            select(ledger.c.entry_id).where(
                ledger.c.order_id == str(history.m1), ledger.c.kind == "funded_discount", ledger.c.line_no == 1
            )
        ).scalar_one()
        conn.execute(update(ledger).where(ledger.c.entry_id == memo).values(amount=-5))
    assert found(queries) == {
        (DiscrepancyKind.INVALID_ENTRY, f"entry:{memo}"),
        (DiscrepancyKind.ORDER_BALANCE, f"order:{history.m1}/funded_discounts"),
        (DiscrepancyKind.UNBALANCED_ENTRY_SET, f"entry_set:{refund}"),
        (DiscrepancyKind.ORDER_BALANCE, f"order:{history.carol}/cash"),
        (DiscrepancyKind.DAY_TOTALS, f"day:{DAY2}/cash"),
        (DiscrepancyKind.DAY_TOTALS, f"day:{DAY2}/settlement"),
    }
    by_subject = {(d.subject, d.expected): d.actual for d in queries.discrepancies()}
    assert by_subject[(f"entry_set:{refund}", -5600)] == 0  # the event refunded 5600; no cash left the provider
    assert by_subject[(f"day:{DAY2}/cash", -7800)] == -2200


def test_malformed_events_stop_the_projection(history, projector, shop, clock, read_models):
    """Unknown orders or lines, a refund that does not add up, a repeat, a paid order paid or cancelled: raise."""
    version = shop.order(history.m2).version
    common = {"timestamp": clock.now()}
    refund = {"refund_id": "x", "kind": RefundKind.REFUND_ONLY, "reason": "x"}
    cases = [
        ("was never placed", Order.Paid(originator_id=uuid4(), originator_version=2, payment_id="p", amount=1,
                                 provider_txn="t", **common)),
        ("add up to something else", Order.RefundIssued(originator_id=history.m2, originator_version=version + 1, amount=10,
                                        lines={1: (1, 9)}, **refund, **common)),
        ("does not have", Order.RefundIssued(originator_id=history.m2, originator_version=version + 1, amount=9,
                                         lines={7: (1, 9)}, **refund, **common)),
        ("arrived after", Order.RefundIssued(originator_id=history.m2, originator_version=version, amount=9,
                                        lines={1: (1, 9)}, **refund, **common)),
        ("only a placed order is paid", Order.Paid(originator_id=history.m2, originator_version=version + 1, payment_id="p",
                                amount=1, provider_txn="t", **common)),
        ("only an unpaid order is cancelled", Order.Cancelled(originator_id=history.m2, originator_version=version + 1,
                                     reason=CancelReason.OPERATIONS, **common)),
    ]  # fmt: skip
    for reason, event in cases:
        with pytest.raises(ProjectionFailed, match=reason):
            apply_forged(projector, shop, event)


def test_a_simulated_trading_day_reconciles(tmp_path):
    """The demo's trading day (late payments, refunds, returns, four merchants) leaves no discrepancy."""
    url = f"sqlite:///{tmp_path}/store.sqlite"
    clock = ManualClock(START)
    shop = Shop(url, clock=clock, settings=Settings(store_url=url))
    read_models = ReadModels(url, projections={"reconciliation": ReconciliationProjection})
    try:
        summary = simulate_trading_day(shop, clock, orders=60, seed=11)
        Projector(shop.store, read_models).catch_up()
        queries = ReconciliationQueries(read_models.engine, read_models.tables["reconciliation"])
        assert summary.late_payments_refunded > 0
        assert queries.discrepancies() == []
        assert queries.balances()["late_payments:suspense"] == 0
    finally:
        read_models.dispose()
        shop.close()
