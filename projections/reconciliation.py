"""Financial reconciliation (对账, spec §6.3): a double-entry ledger of every money event.

Each ledger row is one entry: ``amount`` (> 0, minor units) debited to one account and
credited to another.  The entries of one event (its *entry set*) share the event's
position and pass through the order's clearing account ``customer:<order>``, which they
leave at zero.  Accounts (balances are debit-positive):

``provider_cash``                        money held at the payment provider
``customer:<order>``                     clearing: what the customer paid, until it is allocated
``merchant:<m>:goods``                   owed to the merchant for goods (net paid + platform subsidy)
``merchant:<m>:freight``                 owed to the merchant for freight
``platform:subsidy``                     what the platform pays merchants for platform-coupon discounts
``merchant:<m>:funded_discounts``        memo: promotions and merchant coupons the merchant funded,
``memo:funded_discounts``                    against this offset, so the memo pair balances
``late_payments:suspense``               late money, held until it is refunded

Entry rules (skipping zero amounts):

- ``Order.Paid``: cash in ``provider_cash → customer`` (payment); per line ``customer →
  merchant goods`` (net), ``customer → merchant freight`` (freight), per line
  ``platform:subsidy → merchant goods`` (the platform-coupon share), per line the memo
  ``merchant funded_discounts → memo`` (promotion + merchant-coupon shares).
- ``Order.RefundIssued`` (refund only, return): ``customer → provider_cash`` (refund), per
  line ``merchant goods → customer`` (the line amount refunded), ``merchant freight →
  customer``, and per line the platform subsidy and the funded-discount memo reversed for
  the refunded units by the unit-refund formula of §3 (``floor(s·(r+k)/n) − floor(s·r/n)``
  on the line's share ``s``), so a fully refunded line reverses exactly its whole share.
- ``Order.LatePaymentReceived``: ``provider_cash → customer → late_payments:suspense``;
  its late-payment ``RefundIssued``: ``late_payments:suspense → customer → provider_cash``.

Beside the ledger, the projection keeps the money facts the events state (orders, their
lines, and one row per money event), so :meth:`ReconciliationQueries.discrepancies` can
check the ledger against them.  Malformed events (unknown order or line, a refund whose
amount is not its lines plus freight, a payment of an order not awaiting one) raise;
well-formed money that breaks a rule (refunding more than was paid, a late payment never
refunded) is recorded and reported.

The checks read the tables as the runner last committed them: a late payment and its
refund, or the orders of one checkout, are separate events, and a batch boundary
between them shows a passing difference until the next batch.  Caught up to the head,
the report is final.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from ecomcore_projections.base import Projection, ProjectionInconsistency, Queries, UtcDateTime, handles
from ecomcore_projections.rows import Batch, Row
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
)

from ecomcore.domain.after_sales import RefundKind
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.order import Order
from ecomcore.domain.pricing import unit_refund

PROVIDER_CASH = "provider_cash"
PLATFORM_SUBSIDY = "platform:subsidy"
FUNDED_DISCOUNTS_MEMO = "memo:funded_discounts"
LATE_PAYMENT_SUSPENSE = "late_payments:suspense"
CUSTOMER_PREFIX = "customer:"


def customer_account(order_id: UUID | str) -> str:
    return f"{CUSTOMER_PREFIX}{order_id}"


def merchant_goods(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:goods"


def merchant_freight(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:freight"


def merchant_funded_discounts(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:funded_discounts"


def _is_merchant_owed(account: str) -> bool:
    """A merchant's goods or freight account (merchant ids may hold ':', so the suffix decides)."""
    return account.startswith("merchant:") and account.rsplit(":", 1)[1] in ("goods", "freight")


class EntryKind(StrEnum):
    PAYMENT = "payment"
    GOODS = "goods"
    FREIGHT = "freight"
    PLATFORM_SUBSIDY = "platform_subsidy"
    FUNDED_DISCOUNT = "funded_discount"
    REFUND = "refund"
    GOODS_REFUND = "goods_refund"
    FREIGHT_REFUND = "freight_refund"
    SUBSIDY_REVERSAL = "subsidy_reversal"
    FUNDED_DISCOUNT_REVERSAL = "funded_discount_reversal"
    LATE_PAYMENT = "late_payment"
    LATE_PAYMENT_HELD = "late_payment_held"
    LATE_REFUND_RELEASE = "late_refund_release"
    LATE_REFUND = "late_refund"


class MoneyEventKind(StrEnum):
    PAYMENT = "payment"
    LATE_PAYMENT = "late_payment"
    REFUND = "refund"
    LATE_REFUND = "late_refund"

    @property
    def sign(self) -> int:
        """+1 for money coming in, −1 for money going back."""
        return 1 if self in (MoneyEventKind.PAYMENT, MoneyEventKind.LATE_PAYMENT) else -1


def _money(name: str) -> Column[int]:
    """Minor units; sums of a busy shop's money outgrow 32 bits."""
    return Column(name, BigInteger, nullable=False)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def share_refund(share: int, quantity: int, refunded_before: int, refunding: int) -> int:
    """The part of a line's ``share`` that ``refunding`` more units take back (§3's unit formula).

    Units beyond the line's quantity take nothing more (they are reported, not priced).
    """
    start = min(refunded_before, quantity)
    end = min(refunded_before + refunding, quantity)
    return unit_refund(share, quantity, start, end - start)


@dataclass(frozen=True)
class _Entry:
    kind: EntryKind
    debit: str
    credit: str
    amount: int
    line_no: int | None = None
    reference: str | None = None


class ReconciliationProjection(Projection):
    """The money ledger and the facts it is checked against."""

    name = "reconciliation"
    schema_version = 2  # 2: 64-bit quantities and versions

    @classmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        orders = Table(
            table_name("reconciliation_orders"),
            metadata,
            Column("order_id", String(36), primary_key=True),
            Column("checkout_id", String(36), nullable=False),
            Column("customer_id", String(64), nullable=False),
            Column("merchant_id", String(64), nullable=False),
            Column("currency", String(3), nullable=False),
            Column("state", String(16), nullable=False),  # placed | paid | cancelled
            Column("placed_at", UtcDateTime, nullable=False),
            _money("payable"),
            _money("goods_net"),
            _money("freight"),
            _money("platform_share"),
            _money("merchant_funded"),
            _money("paid"),
            Column("paid_at", UtcDateTime, nullable=True),
            _money("refunded"),  # refunds of goods and freight (not late payments)
            _money("freight_refunded"),
            _money("late_received"),
            _money("late_refunded"),
            Column("cancelled_at", UtcDateTime, nullable=True),
            Column("last_version", BigInteger, nullable=False),
        )
        lines = Table(
            table_name("reconciliation_order_lines"),
            metadata,
            Column("order_id", String(36), primary_key=True),
            Column("line_no", Integer, primary_key=True),
            Column("sku_id", String(64), nullable=False),
            Column("quantity", BigInteger, nullable=False),
            _money("gross"),
            _money("promotion_discount"),
            _money("merchant_coupon_discount"),
            _money("platform_coupon_discount"),
            _money("net"),
            Column("refunded_units", BigInteger, nullable=False),
            _money("refunded_amount"),
            _money("subsidy_reversed"),
            _money("funded_reversed"),
        )
        money_events = Table(
            table_name("reconciliation_money_events"),
            metadata,
            Column("position", BigInteger, primary_key=True, autoincrement=False),
            Column("at", UtcDateTime, nullable=False),
            Column("day", Date, nullable=False),  # UTC
            Column("order_id", String(36), nullable=False, index=True),
            Column("merchant_id", String(64), nullable=False),
            Column("kind", String(16), nullable=False),  # MoneyEventKind
            _money("amount"),
            Column("payment_id", String(128), nullable=True),
            # A provider txn or a refund id (a late-payment refund's is "late:<payment id>:<order id>").
            Column("reference", String(200), nullable=False),
        )
        ledger = Table(
            table_name("reconciliation_ledger"),
            metadata,
            Column("entry_id", String(32), primary_key=True),  # f"{position}:{n}"
            Column("position", BigInteger, nullable=False, index=True),
            Column("n", Integer, nullable=False),
            Column("at", UtcDateTime, nullable=False),
            Column("day", Date, nullable=False, index=True),  # UTC
            Column("order_id", String(36), nullable=False, index=True),
            Column("merchant_id", String(64), nullable=False),
            Column("line_no", Integer, nullable=True),
            Column("kind", String(32), nullable=False),  # EntryKind
            Column("debit_account", String(128), nullable=False),
            Column("credit_account", String(128), nullable=False),
            _money("amount"),
            Column("reference", String(200), nullable=True),
        )
        return {
            "reconciliation_orders": orders,
            "reconciliation_order_lines": lines,
            "reconciliation_money_events": money_events,
            "reconciliation_ledger": ledger,
        }

    def prepare(self, batch: Batch, events: Sequence[tuple[int, DomainEvent]]) -> None:
        order_ids = [str(e.originator_id) for _, e in events]
        batch.load("reconciliation_orders", ((order_id,) for order_id in order_ids))
        batch.load_all("reconciliation_order_lines", order_ids)

    def apply(self, batch: Batch, event: DomainEvent, position: int) -> None:
        if isinstance(event, Order.Placed):
            super().apply(batch, event, position)
            return
        order = self._order(batch, event)
        super().apply(batch, event, position)
        order["last_version"] = event.originator_version

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _order(batch: Batch, event: DomainEvent) -> Row:
        row = batch.rows("reconciliation_orders").get((str(event.originator_id),))
        if row is None:
            raise ProjectionInconsistency(f"order {event.originator_id} was never placed")
        if event.originator_version <= row["last_version"]:
            raise ProjectionInconsistency(
                f"order {event.originator_id} v{event.originator_version} arrived after v{row['last_version']}"
            )
        return row

    @staticmethod
    def _lines(batch: Batch, order_id: str) -> dict[int, Row]:
        return {row["line_no"]: row for row in batch.rows("reconciliation_order_lines").children(order_id)}

    @staticmethod
    def _record_money(
        batch: Batch,
        order: Row,
        event: DomainEvent,
        position: int,
        kind: MoneyEventKind,
        amount: int,
        reference: str,
        payment_id: str | None = None,
    ) -> None:
        batch.rows("reconciliation_money_events").append(
            {
                "position": position,
                "at": event.timestamp,
                "day": utc_day(event.timestamp),
                "order_id": order["order_id"],
                "merchant_id": order["merchant_id"],
                "kind": kind.value,
                "amount": amount,
                "payment_id": payment_id,
                "reference": reference,
            }
        )

    @staticmethod
    def _post(batch: Batch, order: Row, event: DomainEvent, position: int, entries: Iterable[_Entry]) -> None:
        ledger = batch.rows("reconciliation_ledger")
        n = 0
        for entry in entries:
            if entry.amount < 0:
                raise ProjectionInconsistency(
                    f"{entry.kind} of {entry.amount} on order {order['order_id']}: amounts are never negative"
                )
            if entry.amount == 0:
                continue
            n += 1
            ledger.append(
                {
                    "entry_id": f"{position}:{n}",
                    "position": position,
                    "n": n,
                    "at": event.timestamp,
                    "day": utc_day(event.timestamp),
                    "order_id": order["order_id"],
                    "merchant_id": order["merchant_id"],
                    "line_no": entry.line_no,
                    "kind": entry.kind.value,
                    "debit_account": entry.debit,
                    "credit_account": entry.credit,
                    "amount": entry.amount,
                    "reference": entry.reference,
                }
            )

    # -- one method per event ----------------------------------------------------------

    @handles(Order.Placed)
    def _placed(self, batch: Batch, e: Order.Placed, position: int) -> None:
        order_id = str(e.originator_id)
        if e.originator_version != 1:
            raise ProjectionInconsistency(f"order {order_id} placed at version {e.originator_version}")
        batch.rows("reconciliation_orders").insert(
            {
                "order_id": order_id,
                "checkout_id": str(e.checkout_id),
                "customer_id": e.customer_id,
                "merchant_id": e.merchant_id,
                "currency": e.currency,
                "state": "placed",
                "placed_at": e.timestamp,
                "payable": e.payable,
                "goods_net": sum(line.net for line in e.lines),
                "freight": e.freight,
                "platform_share": sum(line.platform_coupon_discount for line in e.lines),
                "merchant_funded": sum(line.promotion_discount + line.merchant_coupon_discount for line in e.lines),
                "paid": 0,
                "paid_at": None,
                "refunded": 0,
                "freight_refunded": 0,
                "late_received": 0,
                "late_refunded": 0,
                "cancelled_at": None,
                "last_version": e.originator_version,
            }
        )
        lines = batch.rows("reconciliation_order_lines")
        for line in e.lines:
            lines.insert(
                {
                    "order_id": order_id,
                    "line_no": line.line_no,
                    "sku_id": line.sku.sku_id,
                    "quantity": line.quantity,
                    "gross": line.gross,
                    "promotion_discount": line.promotion_discount,
                    "merchant_coupon_discount": line.merchant_coupon_discount,
                    "platform_coupon_discount": line.platform_coupon_discount,
                    "net": line.net,
                    "refunded_units": 0,
                    "refunded_amount": 0,
                    "subsidy_reversed": 0,
                    "funded_reversed": 0,
                }
            )

    @handles(Order.Paid)
    def _paid(self, batch: Batch, e: Order.Paid, position: int) -> None:
        order = self._order_row(batch, e)
        if order["state"] != "placed":
            raise ProjectionInconsistency(
                f"order {order['order_id']} is {order['state']}: only a placed order is paid "
                "(late money is a late payment)"
            )
        m, customer = order["merchant_id"], customer_account(order["order_id"])
        lines = self._lines(batch, order["order_id"]).values()
        self._record_money(batch, order, e, position, MoneyEventKind.PAYMENT, e.amount, e.provider_txn, e.payment_id)
        self._post(
            batch,
            order,
            e,
            position,
            [
                _Entry(EntryKind.PAYMENT, PROVIDER_CASH, customer, e.amount, reference=e.provider_txn),
                *(_Entry(EntryKind.GOODS, customer, merchant_goods(m), line["net"], line["line_no"]) for line in lines),
                _Entry(EntryKind.FREIGHT, customer, merchant_freight(m), order["freight"]),
                *(
                    _Entry(
                        EntryKind.PLATFORM_SUBSIDY,
                        PLATFORM_SUBSIDY,
                        merchant_goods(m),
                        line["platform_coupon_discount"],
                        line["line_no"],
                    )
                    for line in lines
                ),
                *(
                    _Entry(
                        EntryKind.FUNDED_DISCOUNT,
                        merchant_funded_discounts(m),
                        FUNDED_DISCOUNTS_MEMO,
                        line["promotion_discount"] + line["merchant_coupon_discount"],
                        line["line_no"],
                    )
                    for line in lines
                ),
            ],
        )
        order.update(state="paid", paid=order["paid"] + e.amount, paid_at=e.timestamp)

    @handles(Order.RefundIssued)
    def _refund_issued(self, batch: Batch, e: Order.RefundIssued, position: int) -> None:
        order = self._order_row(batch, e)
        if e.kind is RefundKind.LATE_PAYMENT:
            self._late_refund(batch, order, e, position)
        else:
            self._refund(batch, order, e, position)

    def _refund(self, batch: Batch, order: Row, e: Order.RefundIssued, position: int) -> None:
        if e.amount != sum(amount for _, amount in e.lines.values()) + e.freight:
            raise ProjectionInconsistency(
                f"refund {e.refund_id} of order {order['order_id']} is {e.amount}, "
                f"but its lines {e.lines} and freight {e.freight} add up to something else"
            )
        m, customer = order["merchant_id"], customer_account(order["order_id"])
        lines = self._lines(batch, order["order_id"])
        unknown = sorted(set(e.lines) - set(lines))
        if unknown:
            raise ProjectionInconsistency(
                f"refund {e.refund_id} names line(s) {unknown} that order {order['order_id']} does not have"
            )
        entries = [
            _Entry(EntryKind.REFUND, customer, PROVIDER_CASH, e.amount, reference=e.refund_id),
            *(
                _Entry(EntryKind.GOODS_REFUND, merchant_goods(m), customer, amount, line_no, e.refund_id)
                for line_no, (_, amount) in sorted(e.lines.items())
            ),
            _Entry(EntryKind.FREIGHT_REFUND, merchant_freight(m), customer, e.freight, reference=e.refund_id),
        ]
        for line_no, (units, amount) in sorted(e.lines.items()):
            line = lines[line_no]
            subsidy = share_refund(line["platform_coupon_discount"], line["quantity"], line["refunded_units"], units)
            funded = share_refund(
                line["promotion_discount"] + line["merchant_coupon_discount"],
                line["quantity"],
                line["refunded_units"],
                units,
            )
            entries.append(
                _Entry(EntryKind.SUBSIDY_REVERSAL, merchant_goods(m), PLATFORM_SUBSIDY, subsidy, line_no, e.refund_id)
            )
            entries.append(
                _Entry(
                    EntryKind.FUNDED_DISCOUNT_REVERSAL,
                    FUNDED_DISCOUNTS_MEMO,
                    merchant_funded_discounts(m),
                    funded,
                    line_no,
                    e.refund_id,
                )
            )
            line.update(
                refunded_units=line["refunded_units"] + units,
                refunded_amount=line["refunded_amount"] + amount,
                subsidy_reversed=line["subsidy_reversed"] + subsidy,
                funded_reversed=line["funded_reversed"] + funded,
            )
        self._record_money(batch, order, e, position, MoneyEventKind.REFUND, e.amount, e.refund_id)
        self._post(batch, order, e, position, entries)
        order.update(refunded=order["refunded"] + e.amount, freight_refunded=order["freight_refunded"] + e.freight)

    @handles(Order.LatePaymentReceived)
    def _late_payment(self, batch: Batch, e: Order.LatePaymentReceived, position: int) -> None:
        order = self._order_row(batch, e)
        customer = customer_account(order["order_id"])
        self._record_money(
            batch, order, e, position, MoneyEventKind.LATE_PAYMENT, e.amount, e.provider_txn, e.payment_id
        )
        self._post(
            batch,
            order,
            e,
            position,
            [
                _Entry(EntryKind.LATE_PAYMENT, PROVIDER_CASH, customer, e.amount, reference=e.provider_txn),
                _Entry(
                    EntryKind.LATE_PAYMENT_HELD, customer, LATE_PAYMENT_SUSPENSE, e.amount, reference=e.provider_txn
                ),
            ],
        )
        order["late_received"] += e.amount

    def _late_refund(self, batch: Batch, order: Row, e: Order.RefundIssued, position: int) -> None:
        if e.lines or e.freight:
            raise ProjectionInconsistency(
                f"late-payment refund {e.refund_id} of order {order['order_id']} names goods or freight"
            )
        customer = customer_account(order["order_id"])
        self._record_money(batch, order, e, position, MoneyEventKind.LATE_REFUND, e.amount, e.refund_id)
        self._post(
            batch,
            order,
            e,
            position,
            [
                _Entry(EntryKind.LATE_REFUND_RELEASE, LATE_PAYMENT_SUSPENSE, customer, e.amount, reference=e.refund_id),
                _Entry(EntryKind.LATE_REFUND, customer, PROVIDER_CASH, e.amount, reference=e.refund_id),
            ],
        )
        order["late_refunded"] += e.amount

    @handles(Order.Cancelled)
    def _cancelled(self, batch: Batch, e: Order.Cancelled, position: int) -> None:
        order = self._order_row(batch, e)
        if order["state"] != "placed":
            raise ProjectionInconsistency(
                f"order {order['order_id']} is {order['state']}: only an unpaid order is cancelled"
            )
        order.update(state="cancelled", cancelled_at=e.timestamp)

    @staticmethod
    def _order_row(batch: Batch, event: DomainEvent) -> Row:
        row = batch.rows("reconciliation_orders").get((str(event.originator_id),))
        assert row is not None  # checked by apply
        return row


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
                    held_for_goods=_held_for_goods(accounts),
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
                "goods": _held_for_goods(accounts),
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
            owed = -sum(v for account, v in accounts.items() if _is_merchant_owed(account))
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


def _held_for_goods(accounts: Mapping[str, int]) -> int:
    """Customer money allocated to goods and freight: merchant goods + freight less the platform's subsidy."""
    return -sum(v for account, v in accounts.items() if _is_merchant_owed(account)) - accounts.get(PLATFORM_SUBSIDY, 0)
