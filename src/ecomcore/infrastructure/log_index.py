"""Small in-process indexes that follow the event store's notification log.

Some questions are asked by a key no aggregate is stored under ("which coupons does
this customer hold?").  Reading the whole log for each question would cost all of
history every time; an index here remembers how far it has read and, on each
question, reads only what was recorded since, filtered by event topic.
"""

from __future__ import annotations

import threading
from typing import cast
from uuid import UUID

from eventsourcing.utils import get_topic

from ecomcore.domain.coupon import Coupon
from ecomcore.infrastructure.store import EventStore


class CouponOwners:
    """Which coupons were issued to each customer, oldest first."""

    def __init__(self, store: EventStore, batch_size: int = 1000) -> None:
        self._store = store
        self._batch_size = batch_size
        self._topic = get_topic(Coupon.Issued)
        self._position = 0
        self._by_customer: dict[str, list[UUID]] = {}
        self._lock = threading.Lock()

    def coupons_of(self, customer_id: str) -> list[UUID]:
        with self._lock:
            self._catch_up()
            return list(self._by_customer.get(customer_id, ()))

    def _catch_up(self) -> None:
        recorder = self._store.recorder
        while True:
            batch = recorder.select_notifications(self._position + 1, self._batch_size, topics=[self._topic])
            for notification in batch:
                issued = cast(Coupon.Issued, self._store.mapper.to_domain_event(notification))
                self._by_customer.setdefault(issued.customer_id, []).append(UUID(str(issued.originator_id)))
            if batch:
                self._position = batch[-1].id
            if len(batch) < self._batch_size:
                return
