"""Money: integers in minor units (fen, cents). No floats anywhere in money paths."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

DEFAULT_CURRENCY = "CNY"

#: A non-negative amount in minor units.
Amount = Annotated[int, Field(ge=0, strict=True)]
#: A strictly positive amount in minor units.
PositiveAmount = Annotated[int, Field(gt=0, strict=True)]
#: A currency code (ISO 4217).
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


def format_amount(amount: int, currency: str = DEFAULT_CURRENCY) -> str:
    """Render minor units for people: ``12345`` → ``"CNY 123.45"``."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{currency} {sign}{whole:,}.{cents:02d}"
