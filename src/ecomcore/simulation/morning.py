"""When a simulated day opens: Double 11 on a fresh store, else the morning after the
store's latest event, so that no run's history goes back in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from ecomcore.application.shop import Shop
from ecomcore.domain.aggregate import DomainEvent

#: A fresh store's simulated day starts on Double 11 (双十一), so runs are repeatable.
FIRST_TRADING_MORNING = datetime(2026, 11, 11, 8, 0, tzinfo=UTC)


def trading_morning(shop: Shop) -> datetime:
    """8:00 on the day after ``shop``'s latest event, and never before Double 11."""
    latest = latest_event_time(shop)
    if latest is None:
        return FIRST_TRADING_MORNING
    morning_after = (latest + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    return max(FIRST_TRADING_MORNING, morning_after)


def latest_event_time(shop: Shop) -> datetime | None:
    """When the last event in ``shop``'s store happened; None for an empty store."""
    # The last notification is the latest event written; events are written in time
    # order by every clock that only moves forward, which is good enough to start after.
    recorder = shop.store.recorder
    last_id = recorder.max_notification_id()
    if not last_id:
        return None
    notifications = recorder.select_notifications(last_id, 1)
    if not notifications:
        return None
    # Every event in an ecomcore store is one of the domain's own.
    return cast(DomainEvent, shop.store.mapper.to_domain_event(notifications[0])).timestamp
