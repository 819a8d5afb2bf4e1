"""Bounded values: what commands and catalogue inputs may carry (spec §8).

The rule: **whatever a command accepts, every read model can hold.**  Read models keep
money, quantities and weights in 64-bit integers (``BigInteger``: at most
``2**63 - 1`` ≈ 9.22·10¹⁸) and text in PostgreSQL, whose ``text``/``varchar`` cannot
hold NUL and whose UTF-8 cannot encode an unpaired surrogate.  So every number a
caller gives has an upper bound, and every text refuses control characters.

The bounds, and why every sum one checkout can produce stays far below ``2**63``:

* ``MAX_UNIT_PRICE × MAX_QUANTITY = 10⁹ × 10⁶ = 10¹⁵ = MAX_AMOUNT``: the gross of one
  order line (quantity summed over the cart's items of that SKU) is a single amount.
* A checkout has at most ``MAX_CART_LINES = 200`` lines, so its gross, every discount
  (never more than the gross) and every line share are at most ``200 × 10¹⁵ = 2·10¹⁷``,
  46 times below ``2**63``.
* Weight: ``MAX_WEIGHT_G × MAX_QUANTITY = 10⁷ g × 10⁶ = 10¹³ g`` per line, at most
  ``2·10¹⁵ g`` per checkout, parcel or shipment.
* Freight is ``first_fee + started extra units × additional_fee``; with fees up to
  ``MAX_AMOUNT`` and an extra unit as small as 1 g or 1 item, that product is unbounded
  by the inputs alone (``2·10¹⁵ × 10¹⁵``).  So the checkout itself refuses a payable
  above ``MAX_AMOUNT`` (:func:`require_amount_within`, raising ``AmountTooLarge``),
  which also keeps every order's freight and payable ≤ 10¹⁵ — and a checkout must be
  payable by one ``Pay``, whose amount is at most ``MAX_AMOUNT`` too.
* Payments (late ones included) and every threshold, cap or fee are at most
  ``MAX_AMOUNT``; refunds never exceed what was paid.
* Stock: a counted quantity, safety stock and reorder quantity are at most
  ``MAX_STOCK_QUANTITY = 10⁹``; receipts and write-offs at most ``MAX_QUANTITY`` each.
* A moment a caller gives (a carrier's scan time) lies between ``MIN_MOMENT`` and
  ``MAX_MOMENT``, far enough inside Python's years 1–9999 that converting it to UTC or
  any other offset cannot overflow.

Sums over *many* commands (a merchant's settlement per day, the ledger's balances,
late payments piling up on one checkout) are bounded by the number of commands only:
at the maximum amounts it takes over 9,000 of them to reach ``2**63``.

These types constrain inputs — commands and catalogue values — and never the stored
events: history recorded under looser rules must always load.

:class:`Value` is the base of every value of the domain (and of every event): frozen, and
refusing unknown fields so that a typo fails loudly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from ecomcore.domain.errors import AmountTooLarge

__all__ = [
    "LINE_MAX_LENGTH",
    "MAX_AMOUNT",
    "MAX_CART_LINES",
    "MAX_MOMENT",
    "MAX_PROMOTION_TIERS",
    "MAX_QUANTITY",
    "MAX_SCOPE_IDS",
    "MAX_STOCK_QUANTITY",
    "MAX_UNIT_PRICE",
    "MAX_VALIDITY_DAYS",
    "MAX_WEIGHT_G",
    "MIN_MOMENT",
    "PROSE_MAX_LENGTH",
    "BoundedAmount",
    "Line",
    "Moment",
    "MultiLineText",
    "PositiveBoundedAmount",
    "Prose",
    "Quantity",
    "SingleLineText",
    "StockQuantity",
    "UnitPrice",
    "UnitWeight",
    "Value",
    "require_amount_within",
    "require_moment",
]


class Value(BaseModel):
    """A frozen value that refuses unknown fields (so typos fail loudly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- numbers

#: Any single amount a caller gives, in minor units: a payment, fee, threshold, cap,
#: discount; and the most one checkout may cost.  10¹⁵ fen is ten trillion yuan.
MAX_AMOUNT = 10**15
#: The price of one unit of a SKU, in minor units (ten million yuan).
MAX_UNIT_PRICE = 10**9
#: Units per cart item, per order line, per stock receipt or write-off.
MAX_QUANTITY = 1_000_000
#: A counted quantity, a safety stock or a reorder quantity of one stock item.
MAX_STOCK_QUANTITY = 10**9
#: The weight of one unit of a SKU, in grams (ten tonnes).
MAX_WEIGHT_G = 10**7
#: Items in one cart, hence lines in one checkout.
MAX_CART_LINES = 200
#: Ids one coupon's or promotion's scope may list, per list (SKUs, SPUs, categories, …).
MAX_SCOPE_IDS = 1_000
#: Tiers of one promotion.
MAX_PROMOTION_TIERS = 20
#: Days a coupon may stay valid after it is issued (ten years).
MAX_VALIDITY_DAYS = 3_660

#: A non-negative amount in minor units, at most ``MAX_AMOUNT``.
BoundedAmount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, strict=True)]
#: A strictly positive amount in minor units, at most ``MAX_AMOUNT``.
PositiveBoundedAmount = Annotated[int, Field(gt=0, le=MAX_AMOUNT, strict=True)]
#: The price of one unit, in minor units.
UnitPrice = Annotated[int, Field(ge=0, le=MAX_UNIT_PRICE, strict=True)]
#: The weight of one unit, in grams.
UnitWeight = Annotated[int, Field(ge=0, le=MAX_WEIGHT_G, strict=True)]
#: Units of one line, receipt or write-off.
Quantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY, strict=True)]
#: Units counted in, or kept for, one stock item.
StockQuantity = Annotated[int, Field(ge=0, le=MAX_STOCK_QUANTITY, strict=True)]


def require_amount_within(what: str, amount: int, limit: int = MAX_AMOUNT) -> None:
    """Refuse an amount the domain computed (a payable, say) that exceeds ``limit``."""
    if amount > limit:
        raise AmountTooLarge(
            f"{what} would be {amount}; one amount may be at most {limit}", what=what, amount=amount, limit=limit
        )


# --------------------------------------------------------------------------- time

#: The earliest and (exclusive) latest moment a caller may give.
MIN_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_MOMENT = datetime(9999, 1, 1, tzinfo=UTC)


def _within_moments(moment: datetime) -> datetime:
    if not MIN_MOMENT <= moment < MAX_MOMENT:
        raise ValueError(f"must be from {MIN_MOMENT.isoformat()} and before {MAX_MOMENT.isoformat()}")
    return moment


#: A timezone-aware moment between ``MIN_MOMENT`` and ``MAX_MOMENT``.
Moment = Annotated[AwareDatetime, AfterValidator(_within_moments)]


def require_moment(what: str, moment: datetime | None) -> None:
    """Refuse a moment inside a value that history also records loosely (``ValueError``,
    for a validator): it must be timezone-aware and between the bounds."""
    if moment is None:
        return
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must carry its timezone (an aware datetime)")
    try:
        _within_moments(moment)
    except ValueError as error:
        raise ValueError(f"{what} {error}") from None


# --------------------------------------------------------------------------- text

#: The longest single line: titles, names, carriers, locations (``varchar(200)`` columns).
LINE_MAX_LENGTH = 200
#: The longest free text: addresses and reasons (``text`` columns).
PROSE_MAX_LENGTH = 500

# C0 controls, DEL, C1 controls and unpaired surrogates: PostgreSQL cannot store NUL
# or encode a surrogate, and the rest have no business in a title or an address.
_NOT_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same less newline (\x0a) and tab (\x09).
_NOT_IN_PROSE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _refuse(forbidden: re.Pattern[str], allowed: str) -> AfterValidator:
    def check(text: str) -> str:
        found = forbidden.search(text)
        if found:
            raise ValueError(
                f"contains U+{ord(found.group()):04X} at position {found.start()}; "
                f"text may not contain control characters{allowed} or unpaired surrogates"
            )
        return text

    return AfterValidator(check)


#: Metadata for a single-line text: no control character at all (C0, DEL, C1) and no
#: unpaired surrogate.  Combine with a ``Field`` giving the lengths.
SingleLineText = _refuse(_NOT_IN_A_LINE, "")
#: Metadata for multi-line text: as ``SingleLineText``, but newlines and tabs are fine.
MultiLineText = _refuse(_NOT_IN_PROSE, " other than newline and tab")

#: One line of text, 1 to ``LINE_MAX_LENGTH`` characters (code points).
Line = Annotated[str, Field(min_length=1, max_length=LINE_MAX_LENGTH), SingleLineText]
#: Free text that may span lines (``\n``) and hold tabs, 1 to ``PROSE_MAX_LENGTH`` characters.
Prose = Annotated[str, Field(min_length=1, max_length=PROSE_MAX_LENGTH), MultiLineText]
