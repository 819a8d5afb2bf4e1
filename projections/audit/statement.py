"""Matching a payment provider's statement against the ledger's provider money, line by line.

The statement is a CSV file with a header row naming (in any order; other columns are
ignored) ``transaction_id``, ``kind`` (``payment`` or ``refund``), ``amount`` (a whole
number of minor units, never negative: the kind says which way the money went) and
``time`` (ISO 8601; without a zone it means UTC).

What a line's transaction id is, on each side:

- a payment (on time or late): the provider's transaction id the shop was paid with
  (``provider_txn``); the ledger sums the payment over the orders of its checkout, since
  one transaction pays a whole checkout;
- a refund: the refund id the provider gave the shop (``refund_id``), summed over the
  orders refunded under it;
- the refund of a late payment: the shop records it per order as ``late:<payment
  id>:<order id>``, an id of its own; the provider refunds the late transaction in full,
  so the statement's refund line carries the late payment's own transaction id, and the
  ledger's late refunds are summed under it.

Discrepancy kinds (:class:`StatementDiscrepancyKind`): ``missing_in_ledger`` (a statement
line the ledger does not have), ``missing_in_statement`` (ledger money the statement does
not show), ``amount_differs``, ``late_payment_not_refunded`` (the statement shows a late
payment, and less than all of it refunded: the provider still holds the customer's money)
and ``duplicate_in_statement`` (the same transaction id and kind on more than one line).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from sqlalchemy import Connection, Engine, Table, select

from ecomcore import EcomcoreError
from ecomcore_projections.reconciliation import MoneyEventKind, utc_day

#: The statement's columns, as its header names them.
COLUMNS = ("transaction_id", "kind", "amount", "time")
KINDS = ("payment", "refund")
LATE_REFUND_PREFIX = "late:"
#: Larger amounts are refused as a typo (a signed 64-bit integer, like the ledger's columns).
MAX_AMOUNT = 2**63 - 1

Kind = Literal["payment", "refund"]


class StatementInvalid(EcomcoreError):
    """The statement file cannot be read: not CSV, a missing column, a bad amount, kind or time."""

    code = "statement_invalid"


class StatementNotFound(EcomcoreError):
    code = "statement_not_found"


@dataclass(frozen=True)
class StatementLine:
    line_no: int
    transaction_id: str
    kind: Kind
    amount: int
    at: datetime


def read_statement(path: Path | str) -> list[StatementLine]:
    """The statement's lines; :class:`StatementInvalid` naming the first bad line."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            return list(parse_statement(file, str(path)))
    except FileNotFoundError:
        raise StatementNotFound(f"no statement at {path}", path=str(path)) from None
    except IsADirectoryError:
        raise StatementNotFound(f"{path} is a directory, not a statement file", path=str(path)) from None
    except UnicodeDecodeError as error:
        raise StatementInvalid(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except PermissionError:
        raise StatementNotFound(f"{path} cannot be read (permission denied)", path=str(path)) from None


def parse_statement(lines: Iterable[str], source: str = "statement") -> Iterator[StatementLine]:
    reader = csv.reader(lines, strict=True)

    def bad(message: str) -> StatementInvalid:
        return StatementInvalid(f"{source} line {reader.line_num}: {message}", line=reader.line_num)

    try:
        header = next(reader, None)
        if header is None:
            raise StatementInvalid(f"{source} is empty: the first line names the columns {', '.join(COLUMNS)}")
        names = [name.strip().lower() for name in header]
        missing = [column for column in COLUMNS if column not in names]
        if missing:
            raise bad(f"the header {','.join(header)[:80]!r} lacks {', '.join(missing)} (needs {', '.join(COLUMNS)})")
        repeated = sorted({name for name in names if names.count(name) > 1 and name in COLUMNS})
        if repeated:
            raise bad(f"the header names {', '.join(repeated)} more than once")
        index = {column: names.index(column) for column in COLUMNS}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            if len(row) != len(header):
                raise bad(f"{len(row)} fields, the header has {len(header)}")
            yield _line(reader.line_num, {column: row[i].strip() for column, i in index.items()}, bad)
    except csv.Error as error:
        raise bad(f"not CSV: {error}") from None


def _line(line_no: int, cells: dict[str, str], bad: Callable[[str], StatementInvalid]) -> StatementLine:
    transaction_id, kind, amount_text, time_text = (cells[column] for column in COLUMNS)
    if not transaction_id:
        raise bad("the transaction id is empty")
    if kind not in KINDS:
        raise bad(f"kind {kind[:40]!r} is neither payment nor refund")
    if not amount_text.isascii() or not amount_text.isdigit():
        raise bad(f"amount {amount_text[:40]!r} is not a whole number of minor units (e.g. 12990 for 129.90)")
    amount = int(amount_text)
    if amount > MAX_AMOUNT:
        raise bad(f"amount {amount_text[:40]} is too large")
    try:
        at = datetime.fromisoformat(time_text)
    except ValueError:
        raise bad(f"time {time_text[:40]!r} is not an ISO 8601 date and time") from None
    direction: Kind = "payment" if kind == "payment" else "refund"
    return StatementLine(line_no, transaction_id, direction, amount, at if at.tzinfo else at.replace(tzinfo=UTC))


def write_statement(path: Path | str, transactions: Iterable[object], *, append: bool = False) -> int:
    """Write (or append) transactions with ``transaction_id``, ``kind``, ``amount`` and ``at``;
    returns how many lines were written."""
    path = Path(path)
    header = not (append and path.exists() and path.stat().st_size > 0)
    written = 0
    with path.open("a" if append else "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        if header:
            writer.writerow(COLUMNS)
        for t in transactions:
            at: datetime = t.at  # type: ignore[attr-defined]
            writer.writerow(
                (t.transaction_id, t.kind, t.amount, at.astimezone(UTC).isoformat())  # type: ignore[attr-defined]
            )
            written += 1
    return written


# --------------------------------------------------------------------------- the ledger's side


@dataclass
class LedgerMoney:
    """The ledger's provider money under one transaction id and kind."""

    transaction_id: str
    kind: Kind
    amount: int = 0
    orders: set[str] = field(default_factory=set)
    #: Whether this is a late payment (or the refund of one).
    late: bool = False


def ledger_money(bind: Engine | Connection, money_events: Table, *, day: date | None = None) -> dict[
    tuple[Kind, str], LedgerMoney
]:
    """The ledger's money events by (kind, transaction id), as a statement would show them."""
    me = money_events
    query = select(me.c.kind, me.c.amount, me.c.reference, me.c.payment_id, me.c.order_id, me.c.day).order_by(
        me.c.position
    )
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            rows = list(conn.execute(query))
    else:
        rows = list(bind.execute(query))
    # A late refund names the payment it returns; the statement names that payment's transaction.
    late_txn = {row.payment_id: row.reference for row in rows if row.kind == MoneyEventKind.LATE_PAYMENT.value}
    found: dict[tuple[Kind, str], LedgerMoney] = {}
    for row in rows:
        if day is not None and row.day != day:
            continue
        event_kind = MoneyEventKind(row.kind)
        kind: Kind = "payment" if event_kind.sign > 0 else "refund"
        txn = row.reference
        if event_kind is MoneyEventKind.LATE_REFUND and txn.startswith(LATE_REFUND_PREFIX):
            payment_id = txn[len(LATE_REFUND_PREFIX):].rpartition(":")[0]
            txn = late_txn.get(payment_id, txn)
        money = found.setdefault((kind, txn), LedgerMoney(txn, kind))
        money.amount += int(row.amount)
        money.orders.add(row.order_id)
        money.late = money.late or event_kind in (MoneyEventKind.LATE_PAYMENT, MoneyEventKind.LATE_REFUND)
    return found


# --------------------------------------------------------------------------- matching


class StatementDiscrepancyKind(StrEnum):
    MISSING_IN_LEDGER = "missing_in_ledger"
    MISSING_IN_STATEMENT = "missing_in_statement"
    AMOUNT_DIFFERS = "amount_differs"
    LATE_PAYMENT_NOT_REFUNDED = "late_payment_not_refunded"
    DUPLICATE_IN_STATEMENT = "duplicate_in_statement"


@dataclass(frozen=True)
class StatementDiscrepancy:
    kind: StatementDiscrepancyKind
    transaction_id: str
    #: payment or refund
    direction: Kind
    #: What the statement says (None: no line), and what the ledger holds (None: nothing).
    statement: int | None
    ledger: int | None
    #: The statement's line numbers for this transaction.
    lines: tuple[int, ...]
    message: str


@dataclass(frozen=True)
class StatementMatch:
    lines: int
    matched: int
    discrepancies: tuple[StatementDiscrepancy, ...]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((kind.value for kind in StatementDiscrepancyKind), 0)
        for found in self.discrepancies:
            counts[found.kind.value] += 1
        return counts


def match_statement(
    statement: Iterable[StatementLine], ledger: dict[tuple[Kind, str], LedgerMoney], *, day: date | None = None
) -> StatementMatch:
    """Match the statement's lines (of ``day`` if given, by their UTC date) against the ledger's money."""
    by_key: dict[tuple[Kind, str], list[StatementLine]] = defaultdict(list)
    count = 0
    for line in statement:
        if day is not None and utc_day(line.at) != day:
            continue
        count += 1
        by_key[(line.kind, line.transaction_id)].append(line)
    found: list[StatementDiscrepancy] = []
    matched = 0

    def add(kind: StatementDiscrepancyKind, key: tuple[Kind, str], stated: int | None, held: int | None,
            lines: list[StatementLine], message: str) -> None:
        found.append(StatementDiscrepancy(kind, key[1], key[0], stated, held, tuple(x.line_no for x in lines),
                                          message))

    for key, lines in by_key.items():
        direction, txn = key
        where = ", ".join(str(x.line_no) for x in lines)
        stated = sum(x.amount for x in lines)
        money = ledger.get(key)
        if len(lines) > 1:
            add(StatementDiscrepancyKind.DUPLICATE_IN_STATEMENT, key, stated, money.amount if money else None, lines,
                f"{direction} {txn} is on {len(lines)} lines of the statement (lines {where})")
            continue
        if money is None:
            add(StatementDiscrepancyKind.MISSING_IN_LEDGER, key, stated, None, lines,
                f"{direction} {txn} of {stated} (line {where}) is not in the ledger")
        elif money.amount != stated:
            add(StatementDiscrepancyKind.AMOUNT_DIFFERS, key, stated, money.amount, lines,
                f"{direction} {txn}: the statement says {stated} (line {where}), the ledger holds {money.amount}")
        else:
            matched += 1
    for key, money in ledger.items():
        if key in by_key:
            continue
        direction, txn = key
        if direction == "refund" and money.late and ("payment", txn) in by_key:
            continue  # reported below, with the late payment it returns
        add(StatementDiscrepancyKind.MISSING_IN_STATEMENT, key, None, money.amount, [],
            f"{direction} {txn} of {money.amount} in the ledger is not on the statement")
    for key, money in ledger.items():
        direction, txn = key
        if direction != "payment" or not money.late:
            continue
        paid = by_key.get(key)
        if not paid:
            continue  # not on the statement at all: reported as missing above
        refunded = sum(x.amount for x in by_key.get(("refund", txn), []))
        taken = sum(x.amount for x in paid)
        if refunded < taken:
            add(StatementDiscrepancyKind.LATE_PAYMENT_NOT_REFUNDED, ("refund", txn), refunded,
                ledger[("refund", txn)].amount if ("refund", txn) in ledger else None, paid,
                f"late payment {txn} of {taken} (line {paid[0].line_no}): the statement shows "
                f"{refunded} of it refunded")
    found.sort(key=lambda d: (d.lines[:1] or (2**62,), d.kind.value, d.transaction_id, d.direction))
    return StatementMatch(lines=count, matched=matched, discrepancies=tuple(found))
