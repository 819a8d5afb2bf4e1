"""What the back office asks of the stock read model; ``now`` decides which reservations still count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    func,
    or_,
    select,
)

from ecomcore_projections.base import (
    Queries,
    require_aware,
)
from ecomcore_projections.stock.projection import StockProjection


@dataclass(frozen=True)
class StockLevel:
    """One SKU in one warehouse, as of the moment asked."""

    sku_id: str
    warehouse_id: str
    on_hand: int
    reserved: int
    available: int
    safety_stock: int
    reorder_quantity: int
    #: The recorded alert (LowStockDetected not yet cleared), as the aggregate keeps it.
    low_stock_flagged: bool
    updated_at: datetime

    @property
    def at_or_below_safety_stock(self) -> bool:
        """Available now is at or below the safety stock (expiries can lift it before any event)."""
        return self.available <= self.safety_stock


@dataclass(frozen=True)
class SkuStock:
    """One SKU summed over its warehouses."""

    sku_id: str
    on_hand: int
    reserved: int
    available: int
    warehouses: int


@dataclass(frozen=True)
class HeldReservation:
    sku_id: str
    warehouse_id: str
    order_id: UUID
    quantity: int
    confirmed: bool
    expires_at: datetime | None
    active: bool


@dataclass(frozen=True)
class ReorderSuggestion:
    """采购建议: open from LowStockDetected until LowStockCleared."""

    sku_id: str
    warehouse_id: str
    suggested_quantity: int
    available_when_opened: int
    safety_stock: int
    opened_at: datetime
    closed_at: datetime | None
    available_when_closed: int | None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class StockQueries(Queries):
    """Read the stock tables; ``now`` decides which reservations are still active."""

    projection = StockProjection

    def __init__(self, bind: Engine | Connection, tables: Mapping[str, Table]) -> None:
        super().__init__(bind, tables)
        self.items = tables["stock_items"]
        self.reservations_table = tables["stock_reservations"]
        self.suggestions = tables["stock_reorder_suggestions"]

    def _active(self, now: datetime) -> Any:
        r = self.reservations_table
        return or_(r.c.confirmed.is_(True), r.c.expires_at > require_aware(now))

    def _levels_query(self, now: datetime) -> Any:
        i, r = self.items, self.reservations_table
        reserved = func.coalesce(func.sum(r.c.quantity), 0).label("reserved")
        return (
            select(
                i.c.sku_id,
                i.c.warehouse_id,
                i.c.on_hand,
                reserved,
                i.c.safety_stock,
                i.c.reorder_quantity,
                i.c.low_stock,
                i.c.updated_at,
            )
            .select_from(
                i.outerjoin(
                    r,
                    and_(r.c.stock_item_id == i.c.stock_item_id, self._active(now)),
                )
            )
            .group_by(
                i.c.sku_id,
                i.c.warehouse_id,
                i.c.on_hand,
                i.c.safety_stock,
                i.c.reorder_quantity,
                i.c.low_stock,
                i.c.updated_at,
            )
            .order_by(i.c.sku_id, i.c.warehouse_id)
        )

    @staticmethod
    def _level(row: Any) -> StockLevel:
        reserved = int(row.reserved)
        return StockLevel(
            sku_id=row.sku_id,
            warehouse_id=row.warehouse_id,
            on_hand=row.on_hand,
            reserved=reserved,
            available=row.on_hand - reserved,
            safety_stock=row.safety_stock,
            reorder_quantity=row.reorder_quantity,
            low_stock_flagged=bool(row.low_stock),
            updated_at=row.updated_at,
        )

    def levels(self, now: datetime, *, sku_id: str | None = None, warehouse_id: str | None = None) -> list[StockLevel]:
        """Every SKU × warehouse row (optionally one SKU or one warehouse), ordered by SKU then warehouse."""
        query = self._levels_query(now)
        if sku_id is not None:
            query = query.where(self.items.c.sku_id == sku_id)
        if warehouse_id is not None:
            query = query.where(self.items.c.warehouse_id == warehouse_id)
        return [self._level(row) for row in self.read(query)]

    def level(self, sku_id: str, warehouse_id: str, now: datetime) -> StockLevel | None:
        found = self.levels(now, sku_id=sku_id, warehouse_id=warehouse_id)
        return found[0] if found else None

    def totals(self, now: datetime) -> list[SkuStock]:
        """Per SKU over all its warehouses."""
        by_sku: dict[str, SkuStock] = {}
        for level in self.levels(now):
            total = by_sku.get(level.sku_id)
            by_sku[level.sku_id] = SkuStock(
                sku_id=level.sku_id,
                on_hand=level.on_hand + (total.on_hand if total else 0),
                reserved=level.reserved + (total.reserved if total else 0),
                available=level.available + (total.available if total else 0),
                warehouses=1 + (total.warehouses if total else 0),
            )
        return list(by_sku.values())

    def total(self, sku_id: str, now: datetime) -> SkuStock:
        levels = self.levels(now, sku_id=sku_id)
        return SkuStock(
            sku_id=sku_id,
            on_hand=sum(x.on_hand for x in levels),
            reserved=sum(x.reserved for x in levels),
            available=sum(x.available for x in levels),
            warehouses=len(levels),
        )

    def low_stock(self, now: datetime) -> list[StockLevel]:
        """Items whose low-stock alert is raised (LowStockDetected and not cleared)."""
        return [level for level in self.levels(now) if level.low_stock_flagged]

    def reservations(self, sku_id: str, warehouse_id: str, now: datetime) -> list[HeldReservation]:
        """Every reservation recorded on one item, each saying whether it still counts at ``now``."""
        r = self.reservations_table
        query = (
            select(r, self._active(now).label("active"))
            .where(r.c.sku_id == sku_id, r.c.warehouse_id == warehouse_id)
            .order_by(r.c.order_id)
        )
        return [
            HeldReservation(
                sku_id=row.sku_id,
                warehouse_id=row.warehouse_id,
                order_id=UUID(row.order_id),
                quantity=row.quantity,
                confirmed=bool(row.confirmed),
                expires_at=row.expires_at,
                active=bool(row.active),
            )
            for row in self.read(query)
        ]

    def reorder_suggestions(self, *, open_only: bool = True) -> list[ReorderSuggestion]:
        """采购建议, oldest first; with ``open_only=False`` the closed ones too (the history)."""
        s = self.suggestions
        query = select(s).order_by(s.c.opened_at, s.c.sku_id, s.c.warehouse_id, s.c.opened_version)
        if open_only:
            query = query.where(s.c.closed_at.is_(None))
        return [
            ReorderSuggestion(
                sku_id=row.sku_id,
                warehouse_id=row.warehouse_id,
                suggested_quantity=row.suggested_quantity,
                available_when_opened=row.available_when_opened,
                safety_stock=row.safety_stock,
                opened_at=row.opened_at,
                closed_at=row.closed_at,
                available_when_closed=row.available_when_closed,
            )
            for row in self.read(query)
        ]
