"""Event classes renamed or moved since their events were first stored.

A stored event names its class by topic, ``module:Class.Name``.  When a class is renamed
or moved, its old events keep their old topic, so every old topic is listed here with
the class it now means.  The infrastructure registers each as an alias when it maps
stored events (so an old ``Coupon.Returned`` loads as a ``Coupon.Reinstated``), and
whatever selects stored events by topic asks for the former topics too
(:func:`former_topics`).  Entries are never removed: history is never rewritten.
"""

from __future__ import annotations

from ecomcore.domain.aggregate import Aggregate, DomainEvent
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.shipment import Shipment

__all__ = ["RENAMED_TOPICS", "former_topics"]

#: Old topic → the class its stored events (or snapshots) now load as.
RENAMED_TOPICS: dict[str, type[DomainEvent] | type[Aggregate]] = {
    # 0.2: names that say what happened, not a second meaning of "returned" or "received".
    "ecomcore.domain.coupon:Coupon.Returned": Coupon.Reinstated,
    "ecomcore.domain.shipment:Shipment.Received": Shipment.ReturnCheckedIn,
    "ecomcore.domain.shipment:Shipment.Shrunk": Shipment.UnitsWithdrawn,
    # 0.2: the Checkout aggregate moved from order.py to its own module.
    "ecomcore.domain.order:Checkout": Checkout,
    "ecomcore.domain.order:Checkout.Placed": Checkout.Placed,
    "ecomcore.domain.order:Checkout.Paid": Checkout.Paid,
    "ecomcore.domain.order:Checkout.LatePaymentReceived": Checkout.LatePaymentReceived,
    "ecomcore.domain.order:Checkout.Cancelled": Checkout.Cancelled,
}


def former_topics(cls: type[DomainEvent] | type[Aggregate]) -> tuple[str, ...]:
    """The topics ``cls`` was stored under before it got its current name, oldest first."""
    return tuple(topic for topic, renamed in RENAMED_TOPICS.items() if renamed is cls)
