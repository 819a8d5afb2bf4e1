"""Available stock (spec §6.2): on hand, reservations and low-stock alerts per SKU and warehouse.

Every StockItem event is applied in SQL.  ``reserved`` and ``available`` are not stored:
they are computed when asked, at the moment asked, as ``on_hand − Σ active reservations``
(a reservation is active while it is confirmed or its expiry is still in the future), so
an unpaid reservation stops counting the moment its deadline passes, before the sweeper
records its release, exactly as in the StockItem aggregate.
"""

from __future__ import annotations

from ecomcore_projections.stock.projection import StockProjection
from ecomcore_projections.stock.queries import (
    HeldReservation,
    ReorderSuggestion,
    SkuStock,
    StockLevel,
    StockQueries,
)

__all__ = [
    "HeldReservation",
    "ReorderSuggestion",
    "SkuStock",
    "StockLevel",
    "StockProjection",
    "StockQueries",
]
