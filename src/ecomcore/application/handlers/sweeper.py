"""Time-driven work: expiring overdue checkouts and coupons, completing orders.

Each sweep streams, from the event log, the aggregates that recorded the event that
made them candidates, and handles each in its own transaction, at the moment given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol
from uuid import UUID

from ecomcore.application.handlers.checkout import cancel
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.checkout import CancelReason, Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.order import Order
from ecomcore.domain.renames import former_topics
from ecomcore.infrastructure.store import EventStore, topic_of


class Transact(Protocol):
    """Runs one handler of an aggregate at a moment in a transaction (``Shop._transact``)."""

    def __call__(
        self, handler: Callable[[UnitOfWork, UUID, datetime], bool], aggregate_id: UUID, now: datetime, /
    ) -> bool: ...


def expire_overdue_checkouts(store: EventStore, transact: Transact, now: datetime) -> list[UUID]:
    """Cancel every unpaid checkout past its payment deadline; returns their ids."""
    return [i for i in aggregate_ids_with(store, Checkout.Placed) if transact(_expire_checkout, i, now)]


def expire_coupons(store: EventStore, transact: Transact, now: datetime) -> list[UUID]:
    """Mark available coupons past their validity as expired; returns their ids."""
    return [i for i in aggregate_ids_with(store, Coupon.Issued) if transact(_expire_coupon, i, now)]


def complete_orders(store: EventStore, transact: Transact, now: datetime) -> list[UUID]:
    """Complete delivered orders whose after-sales window has passed; returns their ids."""
    return [i for i in aggregate_ids_with(store, Order.ShipmentDelivered) if transact(_complete_order, i, now)]


def _expire_checkout(uow: UnitOfWork, checkout_id: UUID, now: datetime) -> bool:
    checkout = uow.get(Checkout, checkout_id)
    if not checkout.is_overdue(now):
        return False
    cancel(uow, checkout, CancelReason.TIMEOUT, now)
    return True


def _expire_coupon(uow: UnitOfWork, coupon_id: UUID, now: datetime) -> bool:
    return uow.get(Coupon, coupon_id).expire(now)


def _complete_order(uow: UnitOfWork, order_id: UUID, now: datetime) -> bool:
    order = uow.get(Order, order_id)
    window = uow.settings.after_sales_window
    return order.delivered_at is not None and order.complete_if_window_passed(order.delivered_at + window, now)


def aggregate_ids_with(store: EventStore, event_type: type[DomainEvent], batch: int = 1000) -> Iterator[UUID]:
    """Ids of aggregates that recorded ``event_type`` (under its current or a former
    name), streamed from the notification log."""
    topics = [topic_of(event_type), *former_topics(event_type)]
    seen: set[UUID] = set()
    start = 1
    while True:
        notifications = store.recorder.select_notifications(start, batch, topics=topics)
        for n in notifications:
            originator_id = UUID(str(n.originator_id))
            if originator_id not in seen:
                seen.add(originator_id)
                yield originator_id
        if len(notifications) < batch:
            return
        start = notifications[-1].id + 1
