"""The stock projection: every StockItem event applied to items, reservations and reorder suggestions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    MetaData,
    String,
    Table,
)

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.stock_item import StockItem
from ecomcore_projections.base import (
    Projection,
    ProjectionInconsistency,
    UtcDateTime,
    handles,
)
from ecomcore_projections.rows import Batch, Row

#: Events that name an order's reservation of the item.
_RESERVATION_EVENTS = (
    StockItem.Reserved,
    StockItem.ReservationReleased,
    StockItem.ReservationConfirmed,
    StockItem.Dispatched,
)


class StockProjection(Projection):
    """One row per stock item, its reservations, and its reorder suggestions (open and past).

    Rows are keyed by the StockItem's id (events name their item only by id); SKU and
    warehouse are kept beside it for the queries.
    """

    name = "stock"
    schema_version = 2  # 2: keyed by stock item id, 64-bit quantities

    @classmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        items_name = table_name("stock_items")
        items = Table(
            items_name,
            metadata,
            Column("stock_item_id", String(36), primary_key=True),
            Column("sku_id", String(64), nullable=False),
            Column("warehouse_id", String(64), nullable=False),
            Column("on_hand", BigInteger, nullable=False),
            Column("safety_stock", BigInteger, nullable=False),
            Column("reorder_quantity", BigInteger, nullable=False),
            Column("low_stock", Boolean, nullable=False),
            # The open reorder suggestion's opened_version while low_stock, else null.
            Column("alert_version", BigInteger, nullable=True),
            # The last applied version: a gap or a repeat means events were lost or doubled.
            Column("version", BigInteger, nullable=False),
            Column("updated_at", UtcDateTime, nullable=False),
            Index(f"ix_{items_name}_sku", "sku_id", "warehouse_id", unique=True),
        )
        reservations_name = table_name("stock_reservations")
        reservations = Table(
            reservations_name,
            metadata,
            Column("stock_item_id", String(36), primary_key=True),
            Column("order_id", String(36), primary_key=True),
            Column("sku_id", String(64), nullable=False),
            Column("warehouse_id", String(64), nullable=False),
            Column("quantity", BigInteger, nullable=False),
            Column("expires_at", UtcDateTime, nullable=True),  # null once confirmed: paid units never expire
            Column("confirmed", Boolean, nullable=False),
            Column("reserved_at", UtcDateTime, nullable=False),
            Index(f"ix_{reservations_name}_sku", "sku_id", "warehouse_id"),
        )
        suggestions = Table(
            table_name("stock_reorder_suggestions"),
            metadata,
            Column("stock_item_id", String(36), primary_key=True),
            Column("opened_version", BigInteger, primary_key=True),
            Column("sku_id", String(64), nullable=False),
            Column("warehouse_id", String(64), nullable=False),
            Column("suggested_quantity", BigInteger, nullable=False),
            Column("available_when_opened", BigInteger, nullable=False),
            Column("safety_stock", BigInteger, nullable=False),
            Column("opened_at", UtcDateTime, nullable=False),
            Column("closed_at", UtcDateTime, nullable=True),  # null while open
            Column("available_when_closed", BigInteger, nullable=True),
        )
        return {"stock_items": items, "stock_reservations": reservations, "stock_reorder_suggestions": suggestions}

    def prepare(self, batch: Batch, events: Sequence[tuple[int, DomainEvent]]) -> None:
        batch.load("stock_items", ((str(e.originator_id),) for _, e in events))
        batch.load(
            "stock_reservations",
            ((str(e.originator_id), str(e.order_id)) for _, e in events if isinstance(e, _RESERVATION_EVENTS)),
        )
        items = batch.rows("stock_items")
        open_alerts = []
        for _, e in events:
            if isinstance(e, StockItem.LowStockCleared):
                row = items.get((str(e.originator_id),))
                if row is not None and row["alert_version"] is not None:
                    open_alerts.append((row["stock_item_id"], row["alert_version"]))
        batch.load("stock_reorder_suggestions", open_alerts)

    def apply(self, batch: Batch, event: DomainEvent, position: int) -> None:
        if isinstance(event, StockItem.Registered):
            super().apply(batch, event, position)
            return
        item = self._item(batch, event)
        super().apply(batch, event, position)
        item.update(version=event.originator_version, updated_at=event.timestamp)

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _item(batch: Batch, event: DomainEvent) -> Row:
        row = batch.rows("stock_items").get((str(event.originator_id),))
        if row is None:
            raise ProjectionInconsistency(f"stock item {event.originator_id} was never registered")
        if event.originator_version != row["version"] + 1:
            raise ProjectionInconsistency(
                f"stock item {row['sku_id']}@{row['warehouse_id']} is at version {row['version']}; "
                f"the next event must be version {row['version'] + 1}, got {event.originator_version}"
            )
        return row

    @staticmethod
    def _held(batch: Batch, event: DomainEvent, order_id: UUID) -> Row:
        row = batch.rows("stock_reservations").get((str(event.originator_id), str(order_id)))
        if row is None:
            raise ProjectionInconsistency(f"order {order_id} holds no reservation of stock item {event.originator_id}")
        return row

    def _take_from_reservation(self, batch: Batch, event: DomainEvent, order_id: UUID, quantity: int) -> None:
        held = self._held(batch, event, order_id)
        if quantity > held["quantity"]:
            raise ProjectionInconsistency(
                f"order {order_id} holds {held['quantity']} of {held['sku_id']}@{held['warehouse_id']}; "
                f"{quantity} cannot be taken from it"
            )
        key = (held["stock_item_id"], held["order_id"])
        if quantity == held["quantity"]:
            batch.rows("stock_reservations").delete(key)
        else:
            held["quantity"] -= quantity

    @staticmethod
    def _row(batch: Batch, event: DomainEvent) -> Row:
        row = batch.rows("stock_items").get((str(event.originator_id),))
        assert row is not None  # checked by apply
        return row

    # -- one method per event ----------------------------------------------------------

    @handles(StockItem.Registered)
    def _registered(self, batch: Batch, e: StockItem.Registered, position: int) -> None:
        if e.originator_version != 1:
            raise ProjectionInconsistency(
                f"stock item {e.sku_id}@{e.warehouse_id} registered at version {e.originator_version}"
            )
        batch.rows("stock_items").insert(
            {
                "stock_item_id": str(e.originator_id),
                "sku_id": e.sku_id,
                "warehouse_id": e.warehouse_id,
                "on_hand": 0,
                "safety_stock": e.safety_stock,
                "reorder_quantity": e.reorder_quantity,
                "low_stock": False,
                "alert_version": None,
                "version": 1,
                "updated_at": e.timestamp,
            }
        )

    @handles(StockItem.Received, StockItem.ReturnRestocked)
    def _received(self, batch: Batch, e: StockItem.Received | StockItem.ReturnRestocked, position: int) -> None:
        self._row(batch, e)["on_hand"] += e.quantity

    @handles(StockItem.Reserved)
    def _reserved(self, batch: Batch, e: StockItem.Reserved, position: int) -> None:
        item = self._row(batch, e)
        batch.rows("stock_reservations").insert(
            {
                "stock_item_id": item["stock_item_id"],
                "order_id": str(e.order_id),
                "sku_id": item["sku_id"],
                "warehouse_id": item["warehouse_id"],
                "quantity": e.quantity,
                "expires_at": e.expires_at,
                "confirmed": False,
                "reserved_at": e.timestamp,
            }
        )

    @handles(StockItem.ReservationReleased)
    def _released(self, batch: Batch, e: StockItem.ReservationReleased, position: int) -> None:
        self._take_from_reservation(batch, e, e.order_id, e.quantity)

    @handles(StockItem.ReservationConfirmed)
    def _confirmed(self, batch: Batch, e: StockItem.ReservationConfirmed, position: int) -> None:
        self._held(batch, e, e.order_id).update(confirmed=True, expires_at=None)

    @handles(StockItem.Dispatched)
    def _dispatched(self, batch: Batch, e: StockItem.Dispatched, position: int) -> None:
        self._take_from_reservation(batch, e, e.order_id, e.quantity)
        self._row(batch, e)["on_hand"] -= e.quantity

    @handles(StockItem.ReturnWrittenOff)
    def _return_written_off(self, batch: Batch, e: StockItem.ReturnWrittenOff, position: int) -> None:
        """Damaged returned units never entered on-hand stock: only the version moves."""

    @handles(StockItem.WrittenOff)
    def _written_off(self, batch: Batch, e: StockItem.WrittenOff, position: int) -> None:
        self._row(batch, e)["on_hand"] -= e.quantity

    @handles(StockItem.Counted)
    def _counted(self, batch: Batch, e: StockItem.Counted, position: int) -> None:
        item = self._row(batch, e)
        if e.difference != e.counted_quantity - item["on_hand"]:
            raise ProjectionInconsistency(
                f"stocktake of {item['sku_id']}@{item['warehouse_id']} records a difference of {e.difference} "
                f"from {item['on_hand']} on hand to {e.counted_quantity} counted: the read model has diverged"
            )
        item["on_hand"] = e.counted_quantity

    @handles(StockItem.SafetyStockSet)
    def _safety_stock_set(self, batch: Batch, e: StockItem.SafetyStockSet, position: int) -> None:
        self._row(batch, e).update(safety_stock=e.safety_stock, reorder_quantity=e.reorder_quantity)

    @handles(StockItem.LowStockDetected)
    def _low_stock_detected(self, batch: Batch, e: StockItem.LowStockDetected, position: int) -> None:
        item = self._row(batch, e)
        if item["low_stock"]:
            raise ProjectionInconsistency(f"stock item {item['sku_id']}@{item['warehouse_id']} is already flagged low")
        batch.rows("stock_reorder_suggestions").insert_new(
            {
                "stock_item_id": item["stock_item_id"],
                "opened_version": e.originator_version,
                "sku_id": item["sku_id"],
                "warehouse_id": item["warehouse_id"],
                "suggested_quantity": e.suggested_reorder_quantity,
                "available_when_opened": e.available,
                "safety_stock": e.safety_stock,
                "opened_at": e.timestamp,
                "closed_at": None,
                "available_when_closed": None,
            }
        )
        item.update(low_stock=True, alert_version=e.originator_version)

    @handles(StockItem.LowStockCleared)
    def _low_stock_cleared(self, batch: Batch, e: StockItem.LowStockCleared, position: int) -> None:
        item = self._row(batch, e)
        if not item["low_stock"]:
            raise ProjectionInconsistency(
                f"stock item {item['sku_id']}@{item['warehouse_id']} is not flagged low; nothing to clear"
            )
        batch.rows("stock_reorder_suggestions").update(
            (item["stock_item_id"], item["alert_version"]), closed_at=e.timestamp, available_when_closed=e.available
        )
        item.update(low_stock=False, alert_version=None)
