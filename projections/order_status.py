"""Order status (spec §6 item 1): one row per order, its lines, its parcels with their
tracking, and a timeline of what happened — with the queries the back office asks.

State, refund status and money are never worked out again here: each Order and
Shipment event is folded into the aggregate with the domain's own handlers (a bounded
cache holds the latest version of recently seen aggregates; anything else is loaded
from the store as it was just before the event), and the rows are written from the
folded aggregate.  Every row carries the aggregate version it shows, and an event
whose version does not follow it is refused, so a gap or a repeat cannot pass unseen.

Timestamps are stored as naive UTC and read back timezone-aware (:class:`UtcDateTime`),
the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from ecomcore_projections.base import (
    Projection,
    ProjectionInconsistency,
    Queries,
    UtcDateTime,
    handles,
    require_aware,
)
from ecomcore_projections.rows import Batch, Row
from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
)

from ecomcore.domain.after_sales import RefundKind
from ecomcore.domain.aggregate import Aggregate, DomainEvent, project
from ecomcore.domain.money import format_amount
from ecomcore.domain.order import CompletionKind, Order, OrderState, RefundStatus
from ecomcore.domain.shipment import Shipment, ShipmentState
from ecomcore.infrastructure.store import EventStore

A = TypeVar("A", bound=Aggregate)

__all__ = [
    "OrderDetail",
    "OrderLineView",
        "OrderStatusProjection",
    "OrderStatusQueries",
    "OrderSummary",
    "ParcelItemView",
    "ShipmentView",
    "TimelineEntry",
    "TrackingView",
]


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
        batch.load_all("shipment_items", (str(e.originator_id) for e in shipment_events if isinstance(e, _ITEMS_CHANGED)))
        batch.load_all(
            "tracking", (str(e.originator_id) for e in shipment_events if isinstance(e, Shipment.TrackingUpdated))
        )
        self._timeline_seq = batch.max_by("timeline", "seq", "order_id", order_ids)
        self._parcel_seq = batch.max_by(
            "shipments", "seq", "order_id", (str(e.order_id) for e in shipment_events if isinstance(e, _SHIPMENT_CREATED))
        )

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
        values = _order_values(order, event, before, position)
        lines = batch.rows("lines")
        if before is None:
            batch.rows("orders").insert(values)
            for line in order.lines:
                lines.insert(_line_values(order, line))
        else:
            before.update(values)
        if isinstance(event, Order.RefundIssued):
            for line_no in sorted(event.lines):
                lines.update(
                    (values["order_id"], line_no),
                    refunded_units=order.refunded_units.get(line_no, 0),
                    refunded_amount=order.refunded_amounts.get(line_no, 0),
                )
        self._add_to_timeline(batch, values["order_id"], event, position, _describe_order_event(order, event))

    @handles(*SHIPMENT_EVENTS)
    def _shipment_event(self, batch: Batch, event: DomainEvent, position: int) -> None:
        before = self._row_before(batch, "shipments", event)
        shipment = self._fold(event, Shipment)
        if shipment.order_id is None:
            raise ProjectionInconsistency(f"shipment {shipment.id} belongs to no order")
        values = _shipment_values(shipment, event, before, position)
        order_id = values["order_id"]
        if before is None:
            seq = self._parcel_seq.get(order_id, 0) + 1
            self._parcel_seq[order_id] = seq
            batch.rows("shipments").insert({**values, "seq": seq})
        else:
            before.update(values)
        if isinstance(event, _ITEMS_CHANGED):
            batch.rows("shipment_items").replace_children(values["shipment_id"], _item_rows(shipment))
        if isinstance(event, Shipment.TrackingUpdated):
            batch.rows("tracking").replace_children(values["shipment_id"], _tracking_rows(shipment))
        description = _describe_shipment_event(shipment, event)
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


def _item_rows(shipment: Shipment) -> list[Row]:
    received = shipment.state is ShipmentState.RECEIVED
    return [
        {
            "shipment_id": str(shipment.id),
            "line_no": item.line_no,
            "sku_id": item.sku_id,
            "quantity": item.quantity,
            "weight_g": item.weight_g,
            "sellable": shipment.sellable.get(item.line_no, 0) if received else None,
            "damaged": shipment.damaged.get(item.line_no, 0) if received else None,
        }
        for item in shipment.items
    ]


def _tracking_rows(shipment: Shipment) -> list[Row]:
    """The whole tracking list again, ranked as the aggregate sorts it (by occurred_at,
    ties in the order reported): a late report of an earlier scan moves the rest down."""
    return [
        {
            "shipment_id": str(shipment.id),
            "seq": seq,
            "occurred_at": scan.occurred_at,
            "status": scan.status,
            "location": scan.location,
        }
        for seq, scan in enumerate(shipment.tracking, start=1)
    ]


def _str(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _order_values(order: Order, event: DomainEvent, before: Row | None, position: int) -> dict[str, Any]:
    def kept(column: str) -> Any:
        return None if before is None else before[column]

    cancelled = isinstance(event, Order.Cancelled)
    completed = isinstance(event, Order.Completed)
    closed_at = kept("closed_at")
    if order.state is OrderState.CLOSED and closed_at is None:
        closed_at = event.timestamp
    return {
        "order_id": str(order.id),
        "checkout_id": str(order.checkout_id),
        "customer_id": order.customer_id,
        "merchant_id": order.merchant_id,
        "currency": order.currency,
        "state": order.state.value,
        "refund_status": order.refund_status.value,
        "gross": order.gross,
        "promotion_discount": sum(line.promotion_discount for line in order.lines),
        "merchant_coupon_discount": sum(line.merchant_coupon_discount for line in order.lines),
        "platform_coupon_discount": sum(line.platform_coupon_discount for line in order.lines),
        "freight": order.freight,
        "payable": order.payable,
        "paid": order.paid,
        "refunded": order.refunded,
        "freight_refunded": order.freight_refunded,
        "late_payments": order.late_payments,
        "late_refunded": order.late_refunded,
        "promotion_id": order.promotion_id,
        "merchant_coupon_id": _str(order.merchant_coupon_id),
        "platform_coupon_id": _str(order.platform_coupon_id),
        "payment_id": order.payment_id,
        "shipping_address": order.shipping_address,
        "open_returns": sum(1 for case in order.returns.values() if case.is_open),
        "cancel_reason": event.reason.value if cancelled else kept("cancel_reason"),
        "completion": event.how.value if completed else kept("completion"),
        "payment_deadline": order.payment_deadline,
        "placed_at": order.created_on,
        "paid_at": order.paid_at,
        "cancelled_at": event.timestamp if cancelled else kept("cancelled_at"),
        "delivered_at": order.delivered_at,
        "completed_at": event.timestamp if completed else kept("completed_at"),
        "closed_at": closed_at,
        "updated_at": event.timestamp,
        "version": order.version,
        "position": position,
    }


def _line_values(order: Order, line: Any) -> dict[str, Any]:
    return {
        "order_id": str(order.id),
        "line_no": line.line_no,
        "sku_id": line.sku.sku_id,
        "title": line.sku.title,
        "unit_price": line.sku.unit_price,
        "quantity": line.quantity,
        "gross": line.gross,
        "promotion_discount": line.promotion_discount,
        "merchant_coupon_discount": line.merchant_coupon_discount,
        "platform_coupon_discount": line.platform_coupon_discount,
        "net": line.net,
        "refunded_units": order.refunded_units.get(line.line_no, 0),
        "refunded_amount": order.refunded_amounts.get(line.line_no, 0),
    }


def _shipment_values(shipment: Shipment, event: DomainEvent, before: Row | None, position: int) -> dict[str, Any]:
    def kept(column: str) -> Any:
        return None if before is None else before[column]

    leaves = isinstance(event, (Shipment.Dispatched, Shipment.ReturnSent))
    ends = isinstance(event, (Shipment.Failed, Shipment.Cancelled))
    return {
        "shipment_id": str(shipment.id),
        "order_id": str(shipment.order_id),
        "merchant_id": shipment.merchant_id,
        "warehouse_id": shipment.warehouse_id,
        "is_return": shipment.is_return,
        "return_id": _str(shipment.return_id),
        "state": shipment.state.value,
        "carrier": shipment.carrier,
        "tracking_number": shipment.tracking_number,
        "weight_g": shipment.weight_g,
        "reason": event.reason if ends else kept("reason"),
        "created_at": shipment.created_on,
        "dispatched_at": event.timestamp if leaves else kept("dispatched_at"),
        "updated_at": event.timestamp,
        "version": shipment.version,
        "position": position,
    }


# ---------------------------------------------------------------------- timeline text


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _units(lines: dict[int, int]) -> str:
    return ", ".join(f"line {no} × {n}" for no, n in sorted(lines.items()))


def _describe_order_event(order: Order, event: DomainEvent) -> str | None:
    """A sentence for the timeline, or None where the shipment's own event tells the same
    fact with more in it (carrier and waybill, failure reason): one entry per fact."""

    def money(amount: int) -> str:
        return format_amount(amount, order.currency)

    match event:
        case Order.Placed():
            units = sum(line.quantity for line in event.lines)
            return (
                f"placed: {len(event.lines)} line(s), {units} unit(s), payable {money(event.payable)}, "
                f"to be paid by {_at(event.payment_deadline)}"
            )
        case Order.Paid():
            return f"paid {money(event.amount)} (payment {event.payment_id}, provider {event.provider_txn})"
        case Order.LatePaymentReceived():
            return f"late payment of {money(event.amount)} received (payment {event.payment_id}); refunded in full"
        case Order.RefundIssued():
            if event.kind is RefundKind.LATE_PAYMENT:
                return f"late payment refunded: {money(event.amount)} (refund {event.refund_id})"
            what = "refund only" if event.kind is RefundKind.REFUND_ONLY else "return refunded"
            units = _units({no: n for no, (n, _) in event.lines.items()})
            freight = f", freight {money(event.freight)} included" if event.freight else ""
            return f"{what}: {money(event.amount)} for {units}{freight} (refund {event.refund_id}: {event.reason})"
        case Order.Cancelled():
            return f"cancelled ({event.reason.value})"
        case Order.ShipmentsPlanned():
            return f"{len(event.parcels)} parcel(s) planned"
        case Order.ShipmentDispatched() | Order.ShipmentDelivered() | Order.ShipmentFailed() | Order.ReturnShipped():
            return None
        case Order.ReturnRequested():
            return f"return requested: {_units(event.lines)} ({event.reason})"
        case Order.ReturnApproved():
            return "return approved"
        case Order.ReturnRejected():
            return f"return rejected ({event.reason})"
        case Order.ReturnReceived():
            parts = [
                f"{_units(event.sellable)} sellable" if event.sellable else "",
                f"{_units(event.damaged)} damaged" if event.damaged else "",
            ]
            return "return received: " + ", ".join(p for p in parts if p)
        case Order.Completed():
            if event.how is CompletionKind.CONFIRMED:
                return "completed: receipt confirmed"
            return "completed after the after-sales window"
    raise ProjectionInconsistency(f"no timeline text for {type(event).__qualname__}")


def _describe_shipment_event(shipment: Shipment, event: DomainEvent) -> str | None:
    """A sentence for the timeline, or None where the order's event already tells it
    (parcels planned, units withdrawn by a refund, a return checked in)."""
    match event:
        case Shipment.Planned() | Shipment.UnitsWithdrawn() | Shipment.Cancelled() | Shipment.ReturnCheckedIn():
            return None
        case Shipment.Dispatched():
            return (
                f"parcel dispatched from {shipment.warehouse_id} with {event.carrier}, "
                f"waybill {event.tracking_number}"
            )
        case Shipment.TrackingUpdated():
            where = f" at {event.update.location}" if event.update.location else ""
            scan = f"{event.update.status}{where} ({_at(event.update.occurred_at)})"
            return f"tracking {shipment.tracking_number}: {scan}"
        case Shipment.Delivered():
            return f"parcel {shipment.tracking_number} delivered"
        case Shipment.Failed():
            return f"parcel {shipment.tracking_number} failed: {event.reason}"
        case Shipment.ReturnSent():
            return f"return parcel sent to {event.warehouse_id} with {event.carrier}, waybill {event.tracking_number}"
    raise ProjectionInconsistency(f"no timeline text for {type(event).__qualname__}")


# ---------------------------------------------------------------------- queries


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OrderLineView(_View):
    line_no: int
    sku_id: str
    title: str
    unit_price: int
    quantity: int
    gross: int
    promotion_discount: int
    merchant_coupon_discount: int
    platform_coupon_discount: int
    net: int
    refunded_units: int
    refunded_amount: int


class ParcelItemView(_View):
    line_no: int
    sku_id: str
    quantity: int
    weight_g: int
    sellable: int | None
    damaged: int | None


class TrackingView(_View):
    seq: int
    occurred_at: datetime
    status: str
    location: str


class ShipmentView(_View):
    shipment_id: UUID
    order_id: UUID
    seq: int
    merchant_id: str
    warehouse_id: str
    is_return: bool
    return_id: UUID | None
    state: ShipmentState
    carrier: str
    tracking_number: str
    weight_g: int
    reason: str | None
    created_at: datetime
    dispatched_at: datetime | None
    updated_at: datetime
    version: int
    position: int
    items: tuple[ParcelItemView, ...]
    #: In the order things happened (occurred_at), as the Shipment keeps them.
    tracking: tuple[TrackingView, ...]


class TimelineEntry(_View):
    seq: int
    at: datetime
    event_type: str
    description: str
    shipment_id: UUID | None
    position: int


class OrderSummary(_View):
    """One order's row: who, state, refund status, money by source, deadlines and timestamps."""

    order_id: UUID
    checkout_id: UUID
    customer_id: str
    merchant_id: str
    currency: str
    state: OrderState
    refund_status: RefundStatus
    gross: int
    promotion_discount: int
    merchant_coupon_discount: int
    platform_coupon_discount: int
    freight: int
    payable: int
    paid: int
    refunded: int
    freight_refunded: int
    late_payments: int
    late_refunded: int
    promotion_id: str | None
    merchant_coupon_id: UUID | None
    platform_coupon_id: UUID | None
    payment_id: str | None
    shipping_address: str
    open_returns: int
    cancel_reason: str | None
    completion: str | None
    payment_deadline: datetime
    placed_at: datetime
    paid_at: datetime | None
    cancelled_at: datetime | None
    delivered_at: datetime | None
    completed_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    version: int
    position: int


class OrderDetail(OrderSummary):
    """An order with its lines, its parcels (outbound and return, with tracking) and its timeline."""

    lines: tuple[OrderLineView, ...]
    shipments: tuple[ShipmentView, ...]
    timeline: tuple[TimelineEntry, ...]


class OrderStatusQueries(Queries):
    """What the back office asks of the order-status read model."""

    projection = OrderStatusProjection

    def __init__(self, bind: Engine | Connection, tables: Mapping[str, Table]) -> None:
        super().__init__(bind, tables)
        self._t = self.tables

    def order(self, order_id: UUID | str) -> OrderDetail | None:
        """One order with everything about it; None if the read model has no such order."""
        key = str(UUID(str(order_id)))
        t = self._t
        with self.connection() as conn:
            row = conn.execute(select(t["orders"]).where(t["orders"].c.order_id == key)).one_or_none()
            if row is None:
                return None
            lines = conn.execute(
                select(t["lines"]).where(t["lines"].c.order_id == key).order_by(t["lines"].c.line_no)
            ).all()
            shipments = conn.execute(
                select(t["shipments"])
                .where(t["shipments"].c.order_id == key)
                .order_by(t["shipments"].c.seq)
            ).all()
            shipment_ids = [s.shipment_id for s in shipments]
            items: dict[str, list[ParcelItemView]] = {sid: [] for sid in shipment_ids}
            tracking: dict[str, list[TrackingView]] = {sid: [] for sid in shipment_ids}
            if shipment_ids:
                it, tr = t["shipment_items"], t["tracking"]
                for r in conn.execute(
                    select(it).where(it.c.shipment_id.in_(shipment_ids)).order_by(it.c.shipment_id, it.c.line_no)
                ):
                    fields = dict(r._mapping)
                    items[fields.pop("shipment_id")].append(ParcelItemView(**fields))
                for r in conn.execute(
                    select(tr).where(tr.c.shipment_id.in_(shipment_ids)).order_by(tr.c.shipment_id, tr.c.seq)
                ):
                    fields = dict(r._mapping)
                    tracking[fields.pop("shipment_id")].append(TrackingView(**fields))
            timeline = conn.execute(
                select(t["timeline"]).where(t["timeline"].c.order_id == key).order_by(t["timeline"].c.seq)
            ).all()
        return OrderDetail(
            **dict(row._mapping),
            lines=tuple(OrderLineView(**_without(r, "order_id")) for r in lines),
            shipments=tuple(
                ShipmentView(
                    **dict(s._mapping),
                    items=tuple(items[s.shipment_id]),
                    tracking=tuple(tracking[s.shipment_id]),
                )
                for s in shipments
            ),
            timeline=tuple(TimelineEntry(**_without(r, "order_id")) for r in timeline),
        )

    def customer_orders(self, customer_id: str, *, limit: int | None = None) -> tuple[OrderSummary, ...]:
        """A customer's orders, newest first."""
        orders = self._t["orders"]
        return self._summaries(
            select(orders)
            .where(orders.c.customer_id == customer_id)
            .order_by(orders.c.placed_at.desc(), orders.c.order_id)
            .limit(limit)
        )

    def orders_by_state(self, state: OrderState | str, *, limit: int | None = None) -> tuple[OrderSummary, ...]:
        """Orders in one state, oldest first; an unknown state is an error, not an empty list."""
        orders = self._t["orders"]
        return self._summaries(
            select(orders)
            .where(orders.c.state == OrderState(state).value)
            .order_by(orders.c.placed_at, orders.c.order_id)
            .limit(limit)
        )

    def unpaid_past_deadline(self, now: datetime, *, limit: int | None = None) -> tuple[OrderSummary, ...]:
        """Orders still pending payment whose deadline is at or before ``now`` (the sweeper's work list)."""
        require_aware(now)
        orders = self._t["orders"]
        return self._summaries(
            select(orders)
            .where(orders.c.state == OrderState.PENDING_PAYMENT.value, orders.c.payment_deadline <= now)
            .order_by(orders.c.payment_deadline, orders.c.order_id)
            .limit(limit)
        )

    def count_by_state(self) -> dict[OrderState, int]:
        """How many orders are in each state (states with none are left out), in lifecycle order."""
        orders = self._t["orders"]
        with self.connection() as conn:
            counts = dict(conn.execute(select(orders.c.state, func.count()).group_by(orders.c.state)).all())
        return {state: counts[state.value] for state in OrderState if counts.get(state.value)}

    def _summaries(self, query: Any) -> tuple[OrderSummary, ...]:
        with self.connection() as conn:
            return tuple(OrderSummary(**dict(r._mapping)) for r in conn.execute(query))


def _without(row: Any, *columns: str) -> dict[str, Any]:
    return {k: v for k, v in row._mapping.items() if k not in columns}
