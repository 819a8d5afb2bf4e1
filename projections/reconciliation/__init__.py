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

from ecomcore_projections.reconciliation.accounts import (
    CUSTOMER_PREFIX,
    FUNDED_DISCOUNTS_MEMO,
    LATE_PAYMENT_SUSPENSE,
    PLATFORM_SUBSIDY,
    PROVIDER_CASH,
    EntryKind,
    MoneyEventKind,
    customer_account,
    merchant_freight,
    merchant_funded_discounts,
    merchant_goods,
    share_refund,
    utc_day,
)
from ecomcore_projections.reconciliation.ledger import ReconciliationProjection
from ecomcore_projections.reconciliation.reports import (
    Discrepancy,
    DiscrepancyKind,
    LedgerEntry,
    OrderMoney,
    ReconciliationQueries,
    Settlement,
)

__all__ = [
    "CUSTOMER_PREFIX",
    "Discrepancy",
    "DiscrepancyKind",
    "EntryKind",
    "FUNDED_DISCOUNTS_MEMO",
    "LATE_PAYMENT_SUSPENSE",
    "LedgerEntry",
    "MoneyEventKind",
    "OrderMoney",
    "PLATFORM_SUBSIDY",
    "PROVIDER_CASH",
    "ReconciliationProjection",
    "ReconciliationQueries",
    "Settlement",
    "customer_account",
    "merchant_freight",
    "merchant_funded_discounts",
    "merchant_goods",
    "share_refund",
    "utc_day",
]
