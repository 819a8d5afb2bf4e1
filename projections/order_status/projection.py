"""The order-status projection: Order and Shipment events folded into orders, lines, parcels,
tracking and a timeline (see the package docstring)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from ecomcore.domain.aggregate import Aggregate, DomainEvent, project
from ecomcore.domain.order import Order
from ecomcore.domain.shipment import Shipment
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import (
    Projection,
    ProjectionInconsistency,
    UtcDateTime,
    handles,
)
from ecomcore_projections.order_status.row_values import (
    item_rows,
    line_values,
    order_values,
    shipment_values,
    tracking_rows,
)
from ecomcore_projections.order_status.timeline import (
    describe_order_event,
    describe_shipment_event,
)
from ecomcore_projections.rows import Batch, Row

A = TypeVar("A", bound=Aggregate)

def _id(column: str, **kw: Any) -> Column[Any]:
    return Column(column, String(36), **kw)


def _money(column: str) -> Column[Any]:
    return Column(column, BigInteger, nullable=False)


#: The Order and Shipment events the read model shows (Checkout events are not needed:
#: every order records its own checkout, deadline, payment, late payment and cancellation).
ORDER_EVENTS: tuple[type[DomainEvent], ...] = (
    Order.Placed,
    Order.Paid,
    Order.LatePaymentReceived,
    Order.RefundIssued,
    Order.Cancelled,
    Order.ShipmentsPlanned,
    Order.ShipmentDispatched,
    Order.ShipmentDelivered,
    Order.ShipmentFailed,
    Order.ReturnRequested,
    Order.ReturnApproved,
    Order.ReturnRejected,
    Order.ReturnShipped,
    Order.ReturnReceived,
    Order.Completed,
)
SHIPMENT_EVENTS: tuple[type[DomainEvent], ...] = (
    Shipment.Planned,
    Shipment.Dispatched,
    Shipment.TrackingUpdated,
    Shipment.Delivered,
    Shipment.Failed,
    Shipment.Cancelled,
    Shipment.UnitsWithdrawn,
    Shipment.ReturnSent,
    Shipment.ReturnCheckedIn,
)
#: Shipment events that create the parcel, and those that change its items.
_SHIPMENT_CREATED = (Shipment.Planned, Shipment.ReturnSent)
_ITEMS_CHANGED = (Shipment.Planned, Shipment.ReturnSent, Shipment.UnitsWithdrawn, Shipment.ReturnCheckedIn)


class OrderStatusProjection(Projection):
    """Orders, lines, parcels, tracking and timeline, folded from Order and Shipment events."""

    name: ClassVar[str] = "order_status"
    schema_version: ClassVar[int] = 2  # 2: 64-bit quantities and versions
    #: How many folded aggregates are kept between events (least recently used go first);
    #: a miss loads the aggregate from the store as it was just before the event.
    cache_size: ClassVar[int] = 5_000

    def __init__(self, tables: Mapping[str, Table], store: EventStore) -> None:
        super().__init__(tables, store)
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        #: Per batch: the last timeline seq and the last parcel seq of each order.
        self._timeline_seq: dict[str, int] = {}
        self._parcel_seq: dict[str, int] = {}

    # ------------------------------------------------------------------ tables

    @classmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        orders_name = table_name("order_status_orders")
        shipments_name = table_name("order_status_shipments")
        timeline_name = table_name("order_status_timeline")
        orders = Table(
            orders_name,
            metadata,
            _id("order_id", primary_key=True),
            _id("checkout_id", nullable=False),
            Column("customer_id", String(64), nullable=False),
            Column("merchant_id", String(64), nullable=False),
            Column("currency", String(3), nullable=False),
            Column("state", String(32), nullable=False),
            Column("refund_status", String(16), nullable=False),
            _money("gross"),
            _money("promotion_discount"),
            _money("merchant_coupon_discount"),
            _money("platform_coupon_discount"),
            _money("freight"),
            _money("payable"),
            _money("paid"),
            _money("refunded"),
            _money("freight_refunded"),
            _money("late_payments"),
            _money("late_refunded"),
            Column("promotion_id", String(64)),
            _id("merchant_coupon_id"),
            _id("platform_coupon_id"),
            Column("payment_id", String(128)),
            Column("shipping_address", Text, nullable=False),
            Column("open_returns", Integer, nullable=False),
            Column("cancel_reason", String(32)),
            Column("completion", String(16)),  # "confirmed" by the customer or "automatic"
            Column("payment_deadline", UtcDateTime, nullable=False),
            Column("placed_at", UtcDateTime, nullable=False),
            Column("paid_at", UtcDateTime),
            Column("cancelled_at", UtcDateTime),
            Column("delivered_at", UtcDateTime),
            Column("completed_at", UtcDateTime),
            Column("closed_at", UtcDateTime),
            Column("updated_at", UtcDateTime, nullable=False),
            Column("version", BigInteger, nullable=False),
            Column("position", BigInteger, nullable=False),
            Index(f"ix_{orders_name}_customer", "customer_id", "placed_at"),
            Index(f"ix_{orders_name}_state", "state", "payment_deadline"),
        )
        lines = Table(
            table_name("order_status_lines"),
            metadata,
            _id("order_id", primary_key=True),
            Column("line_no", Integer, primary_key=True),
            Column("sku_id", String(64), nullable=False),
            Column("title", String(200), nullable=False),
            _money("unit_price"),
            Column("quantity", BigInteger, nullable=False),
            _money("gross"),
            _money("promotion_discount"),
            _money("merchant_coupon_discount"),
            _money("platform_coupon_discount"),
            _money("net"),
            Column("refunded_units", BigInteger, nullable=False),
            _money("refunded_amount"),
        )
        shipments = Table(
            shipments_name,
            metadata,
            _id("shipment_id", primary_key=True),
            _id("order_id", nullable=False),
            # The order's n-th parcel, in the order they were recorded (outbound ones at
            # payment, in the order the shop numbered them; return parcels after).
            Column("seq", Integer, nullable=False),
            Column("merchant_id", String(64), nullable=False),
            Column("warehouse_id", String(64), nullable=False),
            Column("is_return", Boolean, nullable=False),
            _id("return_id"),
            Column("state", String(32), nullable=False),
            Column("carrier", String(200), nullable=False),
            Column("tracking_number", String(128), nullable=False),
            Column("weight_g", BigInteger, nullable=False),
            Column("reason", Text),  # why it failed or was cancelled
            Column("created_at", UtcDateTime, nullable=False),
            Column("dispatched_at", UtcDateTime),
            Column("updated_at", UtcDateTime, nullable=False),
            Column("version", BigInteger, nullable=False),
            Column("position", BigInteger, nullable=False),
            Index(f"ix_{shipments_name}_order", "order_id", "seq", unique=True),
        )
        shipment_items = Table(
            table_name("order_status_shipment_items"),
            metadata,
            _id("shipment_id", primary_key=True),
            Column("line_no", Integer, primary_key=True),
            Column("sku_id", String(64), nullable=False),
            Column("quantity", BigInteger, nullable=False),
            Column("weight_g", BigInteger, nullable=False),
            # Return parcels, once received: how many units were sellable / damaged.
            Column("sellable", BigInteger),
            Column("damaged", BigInteger),
        )
        tracking = Table(
            table_name("order_status_tracking"),
            metadata,
            _id("shipment_id", primary_key=True),
            # Rank in the shipment's tracking, sorted by occurred_at as the aggregate keeps it.
            Column("seq", Integer, primary_key=True),
            Column("occurred_at", UtcDateTime, nullable=False),
            Column("status", String(64), nullable=False),
            Column("location", String(200), nullable=False),
        )
        timeline = Table(
            timeline_name,
            metadata,
            _id("order_id", primary_key=True),
            Column("seq", Integer, primary_key=True),
            Column("at", UtcDateTime, nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("description", Text, nullable=False),
            _id("shipment_id"),
            Column("position", BigInteger, nullable=False),
        )
        return {
            "orders": orders,
            "lines": lines,
            "shipments": shipments,
            "shipment_items": shipment_items,
            "tracking": tracking,
            "timeline": timeline,
        }

    # ------------------------------------------------------------------ applying events

    def prepare(self, batch: Batch, events: Sequence[tuple[int, DomainEvent]]) -> None:
        shipment_events = [e for _, e in events if isinstance(e, SHIPMENT_EVENTS)]
        batch.load("shipments", ((str(e.originator_id),) for e in shipment_events))
        shipments = batch.rows("shipments")
        order_ids = [str(e.originator_id) for _, e in events if isinstance(e, ORDER_EVENTS)]
        for e in shipment_events:
            if isinstance(e, _SHIPMENT_CREATED):
                order_ids.append(str(e.order_id))
            else:
                row = shipments.get((str(e.originator_id),))
                if row is not None:
                    order_ids.append(row["order_id"])
        order_ids = list(dict.fromkeys(order_ids))
        batch.load("orders", ((order_id,) for order_id in order_ids))
        batch.load_all(
            "lines", (str(e.originator_id) for _, e in events if isinstance(e, (Order.Placed, Order.RefundIssued)))
        )
        batch.load_all(
            "shipment_items", (str(e.originator_id) for e in shipment_events if isinstance(e, _ITEMS_CHANGED))
        )
        batch.load_all(
            "tracking", (str(e.originator_id) for e in shipment_events if isinstance(e, Shipment.TrackingUpdated))
        )
        self._timeline_seq = batch.max_by("timeline", "seq", "order_id", order_ids)
        created = (str(e.order_id) for e in shipment_events if isinstance(e, _SHIPMENT_CREATED))
        self._parcel_seq = batch.max_by("shipments", "seq", "order_id", created)

    def forget(self) -> None:
        self._cache.clear()

    def _fold(self, event: DomainEvent, cls: type[A]) -> A:
        """The aggregate just after ``event``, folded by the domain's own handlers."""
        aggregate_id, version = event.originator_id, event.originator_version
        before = self._cache.pop(aggregate_id, None)
        if before is None or before.version != version - 1:
            before = None if version == 1 else self.store.load(aggregate_id, version=version - 1)
            if before is not None and (not isinstance(before, cls) or before.version != version - 1):
                raise ProjectionInconsistency(
                    f"the store gave {type(before).__name__} {aggregate_id} v{before.version} "
                    f"for {cls.__name__} v{version - 1}"
                )
        after = project(before, [event])
        if not isinstance(after, cls) or after.version != version:
            raise ProjectionInconsistency(f"{type(event).__qualname__} does not fold into {cls.__name__}")
        self._cache[aggregate_id] = after
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return after

    @staticmethod
    def _row_before(batch: Batch, table: str, event: DomainEvent) -> Row | None:
        """The row the event changes, checked to be at the version just before it."""
        row = batch.rows(table).get((str(event.originator_id),))
        expected = event.originator_version - 1
        found = 0 if row is None else row["version"]
        if found != expected:
            raise ProjectionInconsistency(
                f"{type(event).__qualname__} v{event.originator_version} of {event.originator_id}: "
                f"the {table} row is at version {found}, not {expected}"
            )
        return row

    @handles(*ORDER_EVENTS)
    def _order_event(self, batch: Batch, event: DomainEvent, position: int) -> None:
        before = self._row_before(batch, "orders", event)
        order = self._fold(event, Order)
        values = order_values(order, event, before, position)
        lines = batch.rows("lines")
        if before is None:
            batch.rows("orders").insert(values)
            for line in order.lines:
                lines.insert(line_values(order, line))
        else:
            before.update(values)
        if isinstance(event, Order.RefundIssued):
            for line_no in sorted(event.lines):
                lines.update(
                    (values["order_id"], line_no),
                    refunded_units=order.refunded_units.get(line_no, 0),
                    refunded_amount=order.refunded_amounts.get(line_no, 0),
                )
        self._add_to_timeline(batch, values["order_id"], event, position, describe_order_event(order, event))

    @handles(*SHIPMENT_EVENTS)
    def _shipment_event(self, batch: Batch, event: DomainEvent, position: int) -> None:
        before = self._row_before(batch, "shipments", event)
        shipment = self._fold(event, Shipment)
        if shipment.order_id is None:
            raise ProjectionInconsistency(f"shipment {shipment.id} belongs to no order")
        values = shipment_values(shipment, event, before, position)
        order_id = values["order_id"]
        if before is None:
            seq = self._parcel_seq.get(order_id, 0) + 1
            self._parcel_seq[order_id] = seq
            batch.rows("shipments").insert({**values, "seq": seq})
        else:
            before.update(values)
        if isinstance(event, _ITEMS_CHANGED):
            batch.rows("shipment_items").replace_children(values["shipment_id"], item_rows(shipment))
        if isinstance(event, Shipment.TrackingUpdated):
            batch.rows("tracking").replace_children(values["shipment_id"], tracking_rows(shipment))
        description = describe_shipment_event(shipment, event)
        self._add_to_timeline(batch, order_id, event, position, description, shipment_id=values["shipment_id"])

    def _add_to_timeline(
        self,
        batch: Batch,
        order_id: str,
        event: DomainEvent,
        position: int,
        description: str | None,
        shipment_id: str | None = None,
    ) -> None:
        if description is None:
            return
        seq = self._timeline_seq.get(order_id, 0) + 1
        self._timeline_seq[order_id] = seq
        batch.rows("timeline").append(
            {
                "order_id": order_id,
                "seq": seq,
                "at": event.timestamp,
                "event_type": type(event).__qualname__,
                "description": description,
                "shipment_id": shipment_id,
                "position": position,
            }
        )
