"""Available stock (spec §6.2): on hand, reservations and low-stock alerts per SKU and warehouse.

Every StockItem event is applied in SQL.  ``reserved`` and ``available`` are not stored:
they are computed when asked, at the moment asked, as ``on_hand − Σ active reservations``
(a reservation is active while it is confirmed or its expiry is still in the future), so
an unpaid reservation stops counting the moment its deadline passes, before the sweeper
records its release, exactly as in the StockItem aggregate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self
from uuid import UUID

from ecomcore_projections.base import Projection, UtcDateTime, live_name
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.stock_item import StockItem


class StockProjection(Projection):
    """One row per stock item, its reservations, and its reorder suggestions (open and past)."""

    name = "stock"
    # ``handles`` (every StockItem event) is the keys of ``_handlers``, at the end of the class.

    @classmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        items = Table(
            table_name("stock_items"),
            metadata,
            Column("sku_id", String(64), primary_key=True),
            Column("warehouse_id", String(64), primary_key=True),
            # Events name their StockItem only by id: this finds the row.
            Column("stock_item_id", String(36), nullable=False, unique=True),
            Column("on_hand", Integer, nullable=False),
            Column("safety_stock", Integer, nullable=False),
            Column("reorder_quantity", Integer, nullable=False),
            Column("low_stock", Boolean, nullable=False),
            # The last applied version: a gap or a repeat means events were lost or doubled.
            Column("version", Integer, nullable=False),
            Column("updated_at", UtcDateTime, nullable=False),
        )
        reservations = Table(
            table_name("stock_reservations"),
            metadata,
            Column("sku_id", String(64), primary_key=True),
            Column("warehouse_id", String(64), primary_key=True),
            Column("order_id", String(36), primary_key=True),
            Column("quantity", Integer, nullable=False),
            Column("expires_at", UtcDateTime, nullable=True),  # null once confirmed: paid units never expire
            Column("confirmed", Boolean, nullable=False),
            Column("reserved_at", UtcDateTime, nullable=False),
        )
        suggestions = Table(
            table_name("stock_reorder_suggestions"),
            metadata,
            Column("sku_id", String(64), primary_key=True),
            Column("warehouse_id", String(64), primary_key=True),
            Column("opened_version", Integer, primary_key=True),
            Column("suggested_quantity", Integer, nullable=False),
            Column("available_when_opened", Integer, nullable=False),
            Column("safety_stock", Integer, nullable=False),
            Column("opened_at", UtcDateTime, nullable=False),
            Column("closed_at", UtcDateTime, nullable=True),  # null while open
            Column("available_when_closed", Integer, nullable=True),
        )
        return {"stock_items": items, "stock_reservations": reservations, "stock_reorder_suggestions": suggestions}

    def apply(self, conn: Connection, event: DomainEvent, position: int) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"the stock projection does not handle {type(event).__qualname__}")
        if isinstance(event, StockItem.Registered):
            self._registered(conn, event)
            return
        item = self._item(conn, event)
        changes = handler(self, conn, item, event)
        conn.execute(
            update(self.tables["stock_items"])
            .where(self.tables["stock_items"].c.stock_item_id == str(event.originator_id))
            .values(version=event.originator_version, updated_at=event.timestamp, **changes)
        )

    # -- helpers -----------------------------------------------------------------------

    def _item(self, conn: Connection, event: DomainEvent) -> Any:
        items = self.tables["stock_items"]
        row = conn.execute(select(items).where(items.c.stock_item_id == str(event.originator_id))).one_or_none()
        if row is None:
            raise LookupError(f"stock item {event.originator_id} was never registered")
        if event.originator_version != row.version + 1:
            raise ValueError(
                f"stock item {row.sku_id}@{row.warehouse_id} is at version {row.version}; "
                f"the next event must be version {row.version + 1}, got {event.originator_version}"
            )
        return row

    def _reservation(self, conn: Connection, item: Any, order_id: UUID) -> Any:
        reservations = self.tables["stock_reservations"]
        row = conn.execute(select(reservations).where(self._reservation_key(item, order_id))).one_or_none()
        if row is None:
            raise LookupError(f"order {order_id} holds no reservation of {item.sku_id}@{item.warehouse_id}")
        return row

    def _reservation_key(self, item: Any, order_id: UUID) -> Any:
        reservations = self.tables["stock_reservations"]
        return and_(
            reservations.c.sku_id == item.sku_id,
            reservations.c.warehouse_id == item.warehouse_id,
            reservations.c.order_id == str(order_id),
        )

    def _reduce_reservation(self, conn: Connection, item: Any, order_id: UUID, quantity: int) -> None:
        held = self._reservation(conn, item, order_id)
        if quantity > held.quantity:
            raise ValueError(
                f"order {order_id} holds {held.quantity} of {item.sku_id}@{item.warehouse_id}; "
                f"{quantity} cannot be taken from it"
            )
        reservations = self.tables["stock_reservations"]
        key = self._reservation_key(item, order_id)
        if quantity == held.quantity:
            conn.execute(delete(reservations).where(key))
        else:
            conn.execute(update(reservations).where(key).values(quantity=reservations.c.quantity - quantity))

    # -- one method per event ----------------------------------------------------------

    def _registered(self, conn: Connection, e: StockItem.Registered) -> None:
        if e.originator_version != 1:
            raise ValueError(f"stock item {e.sku_id}@{e.warehouse_id} registered at version {e.originator_version}")
        conn.execute(
            insert(self.tables["stock_items"]).values(
                sku_id=e.sku_id,
                warehouse_id=e.warehouse_id,
                stock_item_id=str(e.originator_id),
                on_hand=0,
                safety_stock=e.safety_stock,
                reorder_quantity=e.reorder_quantity,
                low_stock=False,
                version=1,
                updated_at=e.timestamp,
            )
        )

    def _received(self, conn: Connection, item: Any, e: StockItem.Received) -> dict[str, Any]:
        return {"on_hand": self.tables["stock_items"].c.on_hand + e.quantity}

    def _reserved(self, conn: Connection, item: Any, e: StockItem.Reserved) -> dict[str, Any]:
        conn.execute(
            insert(self.tables["stock_reservations"]).values(
                sku_id=item.sku_id,
                warehouse_id=item.warehouse_id,
                order_id=str(e.order_id),
                quantity=e.quantity,
                expires_at=e.expires_at,
                confirmed=False,
                reserved_at=e.timestamp,
            )
        )
        return {}

    def _released(self, conn: Connection, item: Any, e: StockItem.ReservationReleased) -> dict[str, Any]:
        self._reduce_reservation(conn, item, e.order_id, e.quantity)
        return {}

    def _confirmed(self, conn: Connection, item: Any, e: StockItem.ReservationConfirmed) -> dict[str, Any]:
        self._reservation(conn, item, e.order_id)
        conn.execute(
            update(self.tables["stock_reservations"])
            .where(self._reservation_key(item, e.order_id))
            .values(confirmed=True, expires_at=None)
        )
        return {}

    def _dispatched(self, conn: Connection, item: Any, e: StockItem.Dispatched) -> dict[str, Any]:
        self._reduce_reservation(conn, item, e.order_id, e.quantity)
        return {"on_hand": self.tables["stock_items"].c.on_hand - e.quantity}

    def _restocked(self, conn: Connection, item: Any, e: StockItem.ReturnRestocked) -> dict[str, Any]:
        return {"on_hand": self.tables["stock_items"].c.on_hand + e.quantity}

    def _return_written_off(self, conn: Connection, item: Any, e: StockItem.ReturnWrittenOff) -> dict[str, Any]:
        return {}  # damaged returned units never entered on-hand stock

    def _written_off(self, conn: Connection, item: Any, e: StockItem.WrittenOff) -> dict[str, Any]:
        return {"on_hand": self.tables["stock_items"].c.on_hand - e.quantity}

    def _counted(self, conn: Connection, item: Any, e: StockItem.Counted) -> dict[str, Any]:
        if e.difference != e.counted_quantity - item.on_hand:
            raise ValueError(
                f"stocktake of {item.sku_id}@{item.warehouse_id} records a difference of {e.difference} "
                f"from {item.on_hand} on hand to {e.counted_quantity} counted: the read model has diverged"
            )
        return {"on_hand": e.counted_quantity}

    def _safety_stock_set(self, conn: Connection, item: Any, e: StockItem.SafetyStockSet) -> dict[str, Any]:
        return {"safety_stock": e.safety_stock, "reorder_quantity": e.reorder_quantity}

    def _low_stock_detected(self, conn: Connection, item: Any, e: StockItem.LowStockDetected) -> dict[str, Any]:
        if item.low_stock:
            raise ValueError(f"stock item {item.sku_id}@{item.warehouse_id} is already flagged low")
        conn.execute(
            insert(self.tables["stock_reorder_suggestions"]).values(
                sku_id=item.sku_id,
                warehouse_id=item.warehouse_id,
                opened_version=e.originator_version,
                suggested_quantity=e.suggested_reorder_quantity,
                available_when_opened=e.available,
                safety_stock=e.safety_stock,
                opened_at=e.timestamp,
                closed_at=None,
                available_when_closed=None,
            )
        )
        return {"low_stock": True}

    def _low_stock_cleared(self, conn: Connection, item: Any, e: StockItem.LowStockCleared) -> dict[str, Any]:
        if not item.low_stock:
            raise ValueError(f"stock item {item.sku_id}@{item.warehouse_id} is not flagged low; nothing to clear")
        suggestions = self.tables["stock_reorder_suggestions"]
        closed = conn.execute(
            update(suggestions)
            .where(
                suggestions.c.sku_id == item.sku_id,
                suggestions.c.warehouse_id == item.warehouse_id,
                suggestions.c.closed_at.is_(None),
            )
            .values(closed_at=e.timestamp, available_when_closed=e.available)
        )
        if closed.rowcount != 1:
            raise ValueError(f"stock item {item.sku_id}@{item.warehouse_id} has {closed.rowcount} open suggestions")
        return {"low_stock": False}

    _handlers: ClassVar[dict[type[DomainEvent], Callable[..., dict[str, Any]]]] = {
        StockItem.Registered: _registered,
        StockItem.Received: _received,
        StockItem.Reserved: _reserved,
        StockItem.ReservationReleased: _released,
        StockItem.ReservationConfirmed: _confirmed,
        StockItem.Dispatched: _dispatched,
        StockItem.ReturnRestocked: _restocked,
        StockItem.ReturnWrittenOff: _return_written_off,
        StockItem.WrittenOff: _written_off,
        StockItem.Counted: _counted,
        StockItem.SafetyStockSet: _safety_stock_set,
        StockItem.LowStockDetected: _low_stock_detected,
        StockItem.LowStockCleared: _low_stock_cleared,
    }
    handles = tuple(_handlers)


# -- queries --------------------------------------------------------------------------------


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


class StockQueries:
    """Read the stock tables; ``now`` decides which reservations are still active."""

    def __init__(self, bind: Engine | Connection, tables: Mapping[str, Table]) -> None:
        self.bind = bind
        self.items = tables["stock_items"]
        self.reservations_table = tables["stock_reservations"]
        self.suggestions = tables["stock_reorder_suggestions"]

    @classmethod
    def live(cls, engine: Engine) -> Self:
        """Queries over the live tables."""
        return cls(engine, StockProjection.define_tables(MetaData(), live_name))

    def _active(self, now: datetime) -> Any:
        r = self.reservations_table
        return or_(r.c.confirmed.is_(True), r.c.expires_at > now)

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
                    and_(r.c.sku_id == i.c.sku_id, r.c.warehouse_id == i.c.warehouse_id, self._active(now)),
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

    def _read(self, query: Any) -> list[Any]:
        if isinstance(self.bind, Connection):
            return list(self.bind.execute(query))
        with self.bind.connect() as conn:
            return list(conn.execute(query))

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
        return [self._level(row) for row in self._read(query)]

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
            for row in self._read(query)
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
            for row in self._read(query)
        ]
