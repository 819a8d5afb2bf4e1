"""Time-driven work: expiring overdue checkouts and coupons, completing orders.

Each sweep first brings the due-work index up to date (``infrastructure.due_work``: it
reads only what the log recorded since its position), asks it for the candidates whose
moment has come, and handles each in its own transaction, at the moment given: the
aggregate's own rule decides whether it is really due, and what it says about its next
moment goes back to the index.  A sweep's cost follows the work due, not the history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from ecomcore.application.handlers.checkout import cancel
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.checkout import CancelReason, Checkout
from ecomcore.domain.coupon import Coupon, CouponState
from ecomcore.domain.order import Order, OrderState
from ecomcore.domain.renames import former_topics
from ecomcore.infrastructure.due_work import DueKind, DueWork
from ecomcore.infrastructure.store import EventStore, topic_of

#: What handling a candidate says: whether it was due (and is now handled), and if not,
#: the moment from which it may be due (``None``: time alone will not make it due).
Outcome = tuple[bool, datetime | None]


class Transact(Protocol):
    """Runs one handler of an aggregate at a moment in a transaction (``Shop._transact``)."""

    def __call__(
        self, handler: Callable[[UnitOfWork, UUID, datetime], Outcome], aggregate_id: UUID, now: datetime, /
    ) -> Outcome: ...


def expire_overdue_checkouts(due: DueWork, transact: Transact, now: datetime) -> list[UUID]:
    """Cancel every unpaid checkout past its payment deadline; returns their ids."""
    return _sweep(due, DueKind.CHECKOUT, now, now, transact, _expire_checkout)


def expire_coupons(due: DueWork, transact: Transact, now: datetime) -> list[UUID]:
    """Mark available coupons past their validity as expired; returns their ids."""
    return _sweep(due, DueKind.COUPON, now, now, transact, _expire_coupon)


def complete_orders(due: DueWork, transact: Transact, now: datetime, after_sales_window: timedelta) -> list[UUID]:
    """Complete delivered orders whose after-sales window has passed; returns their ids.

    The index keeps when each order was delivered; the window is a setting, applied here.
    """
    return _sweep(due, DueKind.ORDER, now, now - after_sales_window, transact, _complete_order)


def _sweep(
    due: DueWork,
    kind: DueKind,
    now: datetime,
    not_after: datetime,
    transact: Transact,
    handler: Callable[[UnitOfWork, UUID, datetime], Outcome],
) -> list[UUID]:
    due.catch_up()
    handled = []
    for candidate in due.due(kind, not_after):
        done, next_moment = transact(handler, candidate.aggregate_id, now)
        due.reschedule(candidate, None if done else next_moment)
        if done:
            handled.append(candidate.aggregate_id)
    return handled


def _expire_checkout(uow: UnitOfWork, checkout_id: UUID, now: datetime) -> Outcome:
    checkout = uow.get(Checkout, checkout_id)
    if not checkout.is_overdue(now):
        return False, checkout.payment_deadline if checkout.is_open else None
    cancel(uow, checkout, CancelReason.TIMEOUT, now)
    return True, None


def _expire_coupon(uow: UnitOfWork, coupon_id: UUID, now: datetime) -> Outcome:
    coupon = uow.get(Coupon, coupon_id)
    if coupon.expire(now):
        return True, None
    return False, coupon.valid_until if coupon.state is CouponState.AVAILABLE else None


def _complete_order(uow: UnitOfWork, order_id: UUID, now: datetime) -> Outcome:
    order = uow.get(Order, order_id)
    window = uow.settings.after_sales_window
    if order.delivered_at is not None and order.complete_if_window_passed(order.delivered_at + window, now):
        return True, None
    if order.state is OrderState.DELIVERED and order.delivered_at is not None and not order.has_open_return:
        # The index keeps the delivery moment; the window is added when it is asked.
        return False, order.delivered_at
    return False, None


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
