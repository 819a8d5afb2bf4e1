"""Stock as of a moment (spec §7): "why was this checkout refused at 14:03?".

Each StockItem of the SKU is rebuilt from its events up to the moment, and asked what
was available *then* by the live rule: ``on_hand − Σ active reservations``, where an
unpaid reservation past its deadline no longer counts even if no sweeper released it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import takewhile
from typing import Any, cast
from uuid import UUID

from eventsourcing.utils import get_topic
from pydantic import BaseModel, ConfigDict

from ecomcore import NotFound
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.stock_item import StockItem, stock_item_id
from ecomcore.infrastructure.store import EventStore

#: Notifications read per query when looking for a SKU's warehouses.
_BATCH = 1000


class ActiveReservation(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: UUID
    quantity: int
    confirmed: bool
    expires_at: datetime | None


class ExpiredReservation(ActiveReservation):
    """Still recorded at the moment, but past its deadline and unpaid: it no longer counts."""


class WarehouseStock(BaseModel):
    model_config = ConfigDict(frozen=True)

    warehouse_id: str
    #: Version of the StockItem at the moment (0: it did not exist yet).
    version: int
    on_hand: int
    reserved: int
    available: int
    safety_stock: int
    active: tuple[ActiveReservation, ...]
    expired: tuple[ExpiredReservation, ...]


class StockAsOf(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku_id: str
    as_of: datetime
    on_hand: int
    reserved: int
    available: int
    warehouses: tuple[WarehouseStock, ...]

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def stock_as_of(
    store: EventStore, sku_id: str, as_of: datetime, warehouse_ids: Iterable[str] | None = None
) -> StockAsOf:
    """The SKU's stock at ``as_of`` in ``warehouse_ids`` (every warehouse that ever held it when None).

    ``NotFound`` when the SKU never had stock in any of them.
    """
    chosen = sorted(set(warehouse_ids)) if warehouse_ids is not None else warehouses_of(store, sku_id)
    if not chosen:
        raise NotFound(f"sku {sku_id} never had stock in any warehouse")
    found = []
    for warehouse_id in chosen:
        item_id = stock_item_id(sku_id, warehouse_id)
        if not store.recorder.select_events(item_id, limit=1):
            raise NotFound(f"sku {sku_id} never had stock in warehouse {warehouse_id}")
        events = cast("Iterable[DomainEvent]", store.events.get(item_id))
        item = StockItem.replay(takewhile(lambda e: e.timestamp <= as_of, events))
        found.append(_warehouse_stock(warehouse_id, item, as_of) if item else _nothing(warehouse_id))
    return StockAsOf(
        sku_id=sku_id,
        as_of=as_of,
        on_hand=sum(w.on_hand for w in found),
        reserved=sum(w.reserved for w in found),
        available=sum(w.available for w in found),
        warehouses=tuple(found),
    )


def warehouses_of(store: EventStore, sku_id: str) -> list[str]:
    """Every warehouse where the SKU's stock was registered: the ``StockItem.Registered``
    notifications, read by topic (few, one per SKU and warehouse)."""
    topic = get_topic(StockItem.Registered)
    recorder = store.recorder
    found = set()
    position = 0
    while True:
        batch = recorder.select_notifications(position + 1, _BATCH, topics=[topic])
        for notification in batch:
            registered = cast(StockItem.Registered, store.mapper.to_domain_event(notification))
            if registered.sku_id == sku_id:
                found.add(registered.warehouse_id)
        if len(batch) < _BATCH:
            return sorted(found)
        position = batch[-1].id


def _warehouse_stock(warehouse_id: str, item: StockItem, as_of: datetime) -> WarehouseStock:
    held = sorted(item.reservations.items(), key=lambda pair: str(pair[0]))
    active = [(order_id, r) for order_id, r in held if r.is_active(as_of)]
    expired = [(order_id, r) for order_id, r in held if not r.is_active(as_of)]
    return WarehouseStock(
        warehouse_id=warehouse_id,
        version=item.version,
        on_hand=item.on_hand,
        reserved=item.reserved(as_of),
        available=item.available(as_of),
        safety_stock=item.safety_stock,
        active=tuple(
            ActiveReservation(order_id=o, quantity=r.quantity, confirmed=r.confirmed, expires_at=r.expires_at)
            for o, r in active
        ),
        expired=tuple(
            ExpiredReservation(order_id=o, quantity=r.quantity, confirmed=r.confirmed, expires_at=r.expires_at)
            for o, r in expired
        ),
    )


def _nothing(warehouse_id: str) -> WarehouseStock:
    return WarehouseStock(
        warehouse_id=warehouse_id, version=0, on_hand=0, reserved=0, available=0, safety_stock=0, active=(), expired=()
    )
