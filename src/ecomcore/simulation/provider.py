"""The simulated payment provider: every transaction it made in the day, for its statement.

The provider knows its own transactions, not the shop's books: a payment under its
transaction id (``provider_txn``), a refund under the refund id it gave the shop, and a
late payment it returns in full under the late payment's own transaction id (the shop
records that refund per order as ``late:<payment id>:<order id>``; the provider refunds
the transaction once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class ProviderTransaction:
    """One line of the provider's statement: money in (``payment``) or back out (``refund``)."""

    transaction_id: str
    kind: Literal["payment", "refund"]
    #: Minor units, never negative: the kind says which way the money went.
    amount: int
    at: datetime


@dataclass
class SimulatedProvider:
    """Keeps the transactions the day's customers and after-sales desk made through the provider."""

    transactions: list[ProviderTransaction] = field(default_factory=list)

    def took(self, provider_txn: str, amount: int, at: datetime) -> None:
        self.transactions.append(ProviderTransaction(provider_txn, "payment", amount, at))

    def refunded(self, transaction_id: str, amount: int, at: datetime) -> None:
        self.transactions.append(ProviderTransaction(transaction_id, "refund", amount, at))
