"""Order status (spec §6 item 1): one row per order, its lines, its parcels with their
tracking, and a timeline of what happened — with the queries the back office asks.

State, refund status and money are never worked out again here: each Order and
Shipment event is folded into the aggregate with the domain's own handlers (a bounded
cache holds the latest version of recently seen aggregates; anything else is loaded
from the store as it was just before the event), and the rows are written from the
folded aggregate.  Every row carries the aggregate version it shows, and an event
whose version does not follow it is refused, so a gap or a repeat cannot pass unseen.

Timestamps are stored as naive UTC and read back timezone-aware (:class:`UtcDateTime`),
the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from ecomcore_projections.order_status.projection import (
    ORDER_EVENTS,
    SHIPMENT_EVENTS,
    OrderStatusProjection,
)
from ecomcore_projections.order_status.queries import (
    OrderDetail,
    OrderLineView,
    OrderStatusQueries,
    OrderSummary,
    ParcelItemView,
    ShipmentView,
    TimelineEntry,
    TrackingView,
)

__all__ = [
    "ORDER_EVENTS",
    "SHIPMENT_EVENTS",
    "OrderDetail",
    "OrderLineView",
        "OrderStatusProjection",
    "OrderStatusQueries",
    "OrderSummary",
    "ParcelItemView",
    "ShipmentView",
    "TimelineEntry",
    "TrackingView",
]

