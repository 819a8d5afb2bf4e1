"""Reports of the reconciliation read model: balances, per-order money, settlement, the §6.3 checks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    func,
    select,
)

from ecomcore_projections.base import (
    Queries,
)
from ecomcore_projections.reconciliation.accounts import (
    CUSTOMER_PREFIX,
    LATE_PAYMENT_SUSPENSE,
    PLATFORM_SUBSIDY,
    PROVIDER_CASH,
    EntryKind,
    MoneyEventKind,
    held_for_goods,
    is_merchant_owed,
    merchant_funded_discounts,
)
from ecomcore_projections.reconciliation.ledger import ReconciliationProjection

# -- reports ----------------------------------------------------------------------------------


class DiscrepancyKind(StrEnum):
    #: A ledger row that is no entry: amount not positive, or the same account on both sides.
    INVALID_ENTRY = "invalid_entry"
    #: An event's entries do not clear the order's clearing account, or move other cash than the event.
    UNBALANCED_ENTRY_SET = "unbalanced_entry_set"
    #: Per order, the ledger disagrees with the money facts (cash, goods, subsidy, memo, suspense).
    ORDER_BALANCE = "order_balance"
    #: More refunded than paid: an order, or a line's units or amount.
    OVER_REFUND = "over_refund"
    #: A cancelled order still holds money.
    MONEY_ON_CANCELLED_ORDER = "money_on_cancelled_order"
    #: A late payment not (fully) refunded.
    UNREFUNDED_LATE_PAYMENT = "unrefunded_late_payment"
    #: A day's cash does not match its money events, or its settlement, subsidy and suspense movements.
    DAY_TOTALS = "day_totals"


@dataclass(frozen=True)
class Discrepancy:
    kind: DiscrepancyKind
    subject: str
    expected: int
    actual: int
    message: str


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: str
    position: int
    at: datetime
    order_id: UUID
    merchant_id: str
    line_no: int | None
    kind: EntryKind
    debit_account: str
    credit_account: str
    amount: int
    reference: str | None


@dataclass(frozen=True)
class OrderMoney:
    """One order's money: facts from its events beside what the ledger holds for it."""

    order_id: UUID
    checkout_id: UUID
    merchant_id: str
    state: str
    payable: int
    paid: int
    refunded: int
    late_received: int
    late_refunded: int
    #: Goods and freight paid for and not refunded, from the order's lines (0 unless paid).
    owed_for_goods: int
    #: Customer money the ledger holds for the order's goods and freight (merchant accounts − subsidy).
    held_for_goods: int
    #: Net cash the ledger shows at the provider for this order.
    cash: int


@dataclass(frozen=True)
class Settlement:
    """What one merchant is owed from one UTC day's money events.

    ``owed = goods + subsidy + freight − goods_refunded − subsidy_reversed − freight_refunded``:
    the net paid for goods, plus the platform's subsidy for platform-coupon discounts, plus
    freight, less what went back.  ``funded_discounts`` (promotions and merchant coupons the
    merchant bore, net of reversals) is a memo, already outside ``goods``.
    """

    merchant_id: str
    day: date
    goods: int
    subsidy: int
    freight: int
    goods_refunded: int
    subsidy_reversed: int
    freight_refunded: int
    funded_discounts: int

    @property
    def owed(self) -> int:
        return (
            self.goods
            + self.subsidy
            + self.freight
            - self.goods_refunded
            - self.subsidy_reversed
            - self.freight_refunded
        )


_SETTLEMENT_FIELDS = {
    EntryKind.GOODS: ("goods", 1),
    EntryKind.PLATFORM_SUBSIDY: ("subsidy", 1),
    EntryKind.FREIGHT: ("freight", 1),
    EntryKind.GOODS_REFUND: ("goods_refunded", 1),
    EntryKind.SUBSIDY_REVERSAL: ("subsidy_reversed", 1),
    EntryKind.FREIGHT_REFUND: ("freight_refunded", 1),
    EntryKind.FUNDED_DISCOUNT: ("funded_discounts", 1),
    EntryKind.FUNDED_DISCOUNT_REVERSAL: ("funded_discounts", -1),
}
_FIELD_NAMES = tuple(dict.fromkeys(name for name, _ in _SETTLEMENT_FIELDS.values()))


class ReconciliationQueries(Queries):
    """Balances, per-order money, merchant settlement and the §6.3 checks."""

    projection = ReconciliationProjection

    def __init__(self, bind: Engine | Connection, tables: Mapping[str, Table]) -> None:
        super().__init__(bind, tables)
        self.orders = tables["reconciliation_orders"]
        self.lines = tables["reconciliation_order_lines"]
        self.money_events = tables["reconciliation_money_events"]
        self.ledger = tables["reconciliation_ledger"]

    def _movements(self, key: Any, *, where: Any = None) -> dict[Any, dict[str, int]]:
        """Debit-positive balance of every account, grouped by ``key`` (a column of the ledger)."""
        l = self.ledger
        query = select(key, l.c.debit_account, l.c.credit_account, func.sum(l.c.amount).label("amount")).group_by(
            key, l.c.debit_account, l.c.credit_account
        )
        if where is not None:
            query = query.where(where)
        found: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in self.read(query):
            found[row[0]][row.debit_account] += int(row.amount)
            found[row[0]][row.credit_account] -= int(row.amount)
        return found

    # -- reports --------------------------------------------------------------------

    def balances(self, *, settled_clearing: bool = False) -> dict[str, int]:
        """Every account's balance, debit-positive (money at the provider > 0, owed to merchants < 0).

        The orders' clearing accounts are left out when they are at zero, as they always
        should be, unless ``settled_clearing``; one that is not at zero is always shown.
        """
        l = self.ledger
        balances: dict[str, int] = defaultdict(int)
        for row in self.read(select(l.c.debit_account, func.sum(l.c.amount)).group_by(l.c.debit_account)):
            balances[row[0]] += int(row[1])
        for row in self.read(select(l.c.credit_account, func.sum(l.c.amount)).group_by(l.c.credit_account)):
            balances[row[0]] -= int(row[1])
        return {
            account: balance
            for account, balance in sorted(balances.items())
            if balance or settled_clearing or not account.startswith(CUSTOMER_PREFIX)
        }

    def entries(self, order_id: UUID | None = None) -> list[LedgerEntry]:
        """Ledger entries in the order they were made (all, or one order's)."""
        l = self.ledger
        query = select(l).order_by(l.c.position, l.c.n)
        if order_id is not None:
            query = query.where(l.c.order_id == str(order_id))
        return [
            LedgerEntry(
                entry_id=row.entry_id,
                position=row.position,
                at=row.at,
                order_id=UUID(row.order_id),
                merchant_id=row.merchant_id,
                line_no=row.line_no,
                kind=EntryKind(row.kind),
                debit_account=row.debit_account,
                credit_account=row.credit_account,
                amount=row.amount,
                reference=row.reference,
            )
            for row in self.read(query)
        ]

    def order_balances(self, *, state: str | None = None, order_id: UUID | None = None) -> list[OrderMoney]:
        """Every order's money (or those in one state, or one order), by order id."""
        o, li, l = self.orders, self.lines, self.ledger
        query = select(o).order_by(o.c.order_id)
        unrefunded_query = select(li.c.order_id, func.sum(li.c.net - li.c.refunded_amount).label("left")).group_by(
            li.c.order_id
        )
        ledger_filter = None
        if state is not None:
            query = query.where(o.c.state == state)
        if order_id is not None:
            query = query.where(o.c.order_id == str(order_id))
            unrefunded_query = unrefunded_query.where(li.c.order_id == str(order_id))
            ledger_filter = l.c.order_id == str(order_id)
        rows = self.read(query)
        unrefunded = {row.order_id: int(row.left) for row in self.read(unrefunded_query)}
        held = self._movements(l.c.order_id, where=ledger_filter)
        found = []
        for row in rows:
            accounts = held.get(row.order_id, {})
            paid = row.state == "paid"
            owed = unrefunded.get(row.order_id, 0) + row.freight - row.freight_refunded if paid else 0
            found.append(
                OrderMoney(
                    order_id=UUID(row.order_id),
                    checkout_id=UUID(row.checkout_id),
                    merchant_id=row.merchant_id,
                    state=row.state,
                    payable=row.payable,
                    paid=row.paid,
                    refunded=row.refunded,
                    late_received=row.late_received,
                    late_refunded=row.late_refunded,
                    owed_for_goods=owed,
                    held_for_goods=held_for_goods(accounts),
                    cash=accounts.get(PROVIDER_CASH, 0),
                )
            )
        return found

    def order_balance(self, order_id: UUID) -> OrderMoney | None:
        found = self.order_balances(order_id=order_id)
        return found[0] if found else None

    def settlements(self, *, merchant_id: str | None = None, day: date | None = None) -> list[Settlement]:
        """What each merchant is owed per UTC day, by day then merchant."""
        l = self.ledger
        query = select(l.c.day, l.c.merchant_id, l.c.kind, func.sum(l.c.amount).label("amount")).group_by(
            l.c.day, l.c.merchant_id, l.c.kind
        )
        if merchant_id is not None:
            query = query.where(l.c.merchant_id == merchant_id)
        if day is not None:
            query = query.where(l.c.day == day)
        totals: dict[tuple[date, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(_FIELD_NAMES, 0))
        for row in self.read(query):
            field = _SETTLEMENT_FIELDS.get(EntryKind(row.kind))
            if field is not None:
                name, sign = field
                totals[(row.day, row.merchant_id)][name] += sign * int(row.amount)
        return [Settlement(merchant_id=m, day=d, **fields) for (d, m), fields in sorted(totals.items())]

    # -- checks ---------------------------------------------------------------------

    def discrepancies(self) -> list[Discrepancy]:
        """Every way the ledger and the money facts disagree (§6.3); empty when all holds."""
        return [
            *self._invalid_entries(),
            *self._unbalanced_entry_sets(),
            *self._order_checks(),
            *self._day_totals(),
        ]

    def _invalid_entries(self) -> Iterable[Discrepancy]:
        l = self.ledger
        query = (
            select(l.c.entry_id, l.c.amount, l.c.debit_account, l.c.credit_account)
            .where((l.c.amount <= 0) | (l.c.debit_account == l.c.credit_account))
            .order_by(l.c.position, l.c.n)
        )
        for row in self.read(query):
            yield Discrepancy(
                DiscrepancyKind.INVALID_ENTRY,
                f"entry:{row.entry_id}",
                expected=0,
                actual=row.amount,
                message=f"entry {row.entry_id} moves {row.amount} from {row.debit_account} to {row.credit_account}",
            )

    def _unbalanced_entry_sets(self) -> Iterable[Discrepancy]:
        by_position = self._movements(self.ledger.c.position)
        events = {
            row.position: row for row in self.read(select(self.money_events).order_by(self.money_events.c.position))
        }
        for position in sorted({*by_position, *events}):
            accounts = by_position.get(position, {})
            subject = f"entry_set:{position}"
            clearing = sum(v for account, v in accounts.items() if account.startswith(CUSTOMER_PREFIX))
            if clearing:
                yield Discrepancy(
                    DiscrepancyKind.UNBALANCED_ENTRY_SET,
                    subject,
                    expected=0,
                    actual=clearing,
                    message=f"the entries of event #{position} leave {clearing} in the order's clearing account",
                )
            event = events.get(position)
            expected_cash = MoneyEventKind(event.kind).sign * event.amount if event is not None else 0
            cash = accounts.get(PROVIDER_CASH, 0)
            if cash != expected_cash:
                what = f"{event.kind} of {event.amount} ({event.reference})" if event is not None else "no money event"
                yield Discrepancy(
                    DiscrepancyKind.UNBALANCED_ENTRY_SET,
                    subject,
                    expected=expected_cash,
                    actual=cash,
                    message=f"event #{position} is {what}, but its entries move {cash} at the provider",
                )

    def _order_checks(self) -> Iterable[Discrepancy]:
        by_order = self._movements(self.ledger.c.order_id)
        lines_by_order: dict[str, list[Any]] = defaultdict(list)
        for line in self.read(select(self.lines).order_by(self.lines.c.order_id, self.lines.c.line_no)):
            lines_by_order[line.order_id].append(line)
        for order in self.read(select(self.orders).order_by(self.orders.c.order_id)):
            oid, subject = order.order_id, f"order:{order.order_id}"
            accounts = by_order.get(oid, {})
            lines = lines_by_order[oid]
            # The subsidy and the funded-discount memo are granted when the order is paid.
            granted = order.state == "paid"
            expected = {
                "cash": order.paid - order.refunded + order.late_received - order.late_refunded,
                "goods": order.paid - order.refunded,
                "subsidy": sum((x.platform_coupon_discount if granted else 0) - x.subsidy_reversed for x in lines),
                "funded_discounts": sum(
                    (x.promotion_discount + x.merchant_coupon_discount if granted else 0) - x.funded_reversed
                    for x in lines
                ),
                "suspense": order.late_received - order.late_refunded,
            }
            actual = {
                "cash": accounts.get(PROVIDER_CASH, 0),
                "goods": held_for_goods(accounts),
                "subsidy": accounts.get(PLATFORM_SUBSIDY, 0),
                "funded_discounts": accounts.get(merchant_funded_discounts(order.merchant_id), 0),
                "suspense": -accounts.get(LATE_PAYMENT_SUSPENSE, 0),
            }
            for component, wanted in expected.items():
                if wanted != actual[component]:
                    yield Discrepancy(
                        DiscrepancyKind.ORDER_BALANCE,
                        f"{subject}/{component}",
                        expected=wanted,
                        actual=actual[component],
                        message=f"order {oid}: its money events give {component} {wanted}, "
                        f"the ledger holds {actual[component]}",
                    )
            if order.refunded > order.paid:
                yield Discrepancy(
                    DiscrepancyKind.OVER_REFUND,
                    subject,
                    expected=order.paid,
                    actual=order.refunded,
                    message=f"order {oid} was paid {order.paid} and refunded {order.refunded}",
                )
            for line in lines:
                if line.refunded_units > line.quantity or line.refunded_amount > line.net:
                    yield Discrepancy(
                        DiscrepancyKind.OVER_REFUND,
                        f"{subject}/line:{line.line_no}",
                        expected=line.net,
                        actual=line.refunded_amount,
                        message=f"line {line.line_no} of order {oid}: {line.refunded_units} of {line.quantity} "
                        f"unit(s) refunded for {line.refunded_amount}, its net is {line.net}",
                    )
            if order.state == "cancelled" and actual["cash"] != 0:
                yield Discrepancy(
                    DiscrepancyKind.MONEY_ON_CANCELLED_ORDER,
                    subject,
                    expected=0,
                    actual=actual["cash"],
                    message=f"order {oid} is cancelled but {actual['cash']} of its money is still at the provider",
                )
            if order.late_received != order.late_refunded:
                yield Discrepancy(
                    DiscrepancyKind.UNREFUNDED_LATE_PAYMENT,
                    subject,
                    expected=order.late_received,
                    actual=order.late_refunded,
                    message=f"order {oid} received {order.late_received} late and refunded {order.late_refunded} of it",
                )

    def _day_totals(self) -> Iterable[Discrepancy]:
        me = self.money_events
        facts: dict[date, int] = defaultdict(int)
        for row in self.read(select(me.c.day, me.c.kind, func.sum(me.c.amount)).group_by(me.c.day, me.c.kind)):
            facts[row[0]] += MoneyEventKind(row[1]).sign * int(row[2])
        by_day = self._movements(self.ledger.c.day)
        for day in sorted({*facts, *by_day}):
            accounts = by_day.get(day, {})
            subject = f"day:{day.isoformat()}"
            cash = accounts.get(PROVIDER_CASH, 0)
            if cash != facts.get(day, 0):
                yield Discrepancy(
                    DiscrepancyKind.DAY_TOTALS,
                    f"{subject}/cash",
                    expected=facts.get(day, 0),
                    actual=cash,
                    message=f"on {day} payments less refunds were {facts.get(day, 0)}, the ledger's cash moved {cash}",
                )
            owed = -sum(v for account, v in accounts.items() if is_merchant_owed(account))
            subsidy = accounts.get(PLATFORM_SUBSIDY, 0)
            suspense = -accounts.get(LATE_PAYMENT_SUSPENSE, 0)
            if cash != owed - subsidy + suspense:
                yield Discrepancy(
                    DiscrepancyKind.DAY_TOTALS,
                    f"{subject}/settlement",
                    expected=cash,
                    actual=owed - subsidy + suspense,
                    message=f"on {day} cash moved {cash}, but merchants were owed {owed} less subsidy {subsidy} "
                    f"plus late money held {suspense}",
                )
