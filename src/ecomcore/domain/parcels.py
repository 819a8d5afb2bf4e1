"""Units by order line and by parcel, and how far each of an order's parcels got.

Shared by the Order (which plans its parcels and follows them), its after-sales rules
(which count units parcel by parcel) and the Shipment (one parcel).
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from ecomcore.domain.values import Value

#: Units by order line number, e.g. ``{1: 2, 3: 1}``.
LineUnits = dict[int, int]
#: Units by shipment, then by line number.
ParcelUnits = dict[UUID, LineUnits]


class PlannedParcel(Value):
    """Which units of which lines one planned shipment carries."""

    shipment_id: UUID
    lines: LineUnits = Field(min_length=1)


class ShipmentProgress(StrEnum):
    """How far one of an order's parcels got, as the Order records it.

    The Shipment aggregate is the source of truth for a parcel's progress; the Order
    records the steps that change what it may do (see ``ecomcore.domain``).
    """

    PLANNED = "planned"
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
