"""The ledger's accounts, entry kinds and the unit-refund share rule (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
)

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


def is_merchant_owed(account: str) -> bool:
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


def money_column(name: str) -> Column[int]:
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
class Entry:
    kind: EntryKind
    debit: str
    credit: str
    amount: int
    line_no: int | None = None
    reference: str | None = None


def held_for_goods(accounts: Mapping[str, int]) -> int:
    """Customer money allocated to goods and freight: merchant goods + freight less the platform's subsidy."""
    return -sum(v for account, v in accounts.items() if is_merchant_owed(account)) - accounts.get(PLATFORM_SUBSIDY, 0)

