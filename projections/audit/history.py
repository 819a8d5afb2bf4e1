"""An order's story (spec §7): everything that happened to it, across aggregates, in order.

The related aggregates are found from the order's own events, never by reading the whole
log: its checkout (``Order.Placed.checkout_id``), the stock items its lines reserved
(``stock_item_id(sku, warehouse)`` of each line's allocations; their events are kept when
they name the order), its coupons (kept while they were locked or redeemed for its
checkout) and its parcels, outbound and return (``ShipmentsPlanned``, ``ReturnShipped``).

Steps are in time order; steps of one moment (one transaction) in the order the store
recorded them (notification id), so the story is the same every time it is told.  After
each step comes the order as it stood then: its state, refund status and money.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ecomcore import NotFound
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.order import Order
from ecomcore.domain.shipment import Shipment
from ecomcore.domain.stock_item import StockItem, stock_item_id
from ecomcore.infrastructure.store import EventStore

#: What each aggregate class is called in a step's ``kind`` (``order.Paid``), and its
#: place among the steps of one moment when the store cannot tell their recorded order
#: (the in-memory store): the checkout first, then the order, its coupons, stock, parcels.
AGGREGATE_KINDS: dict[type, tuple[str, int]] = {
    Checkout: ("checkout", 0),
    Order: ("order", 1),
    Coupon: ("coupon", 2),
    StockItem: ("stock", 3),
    Shipment: ("shipment", 4),
}


class Step(BaseModel):
    """One event of the order's story and the order as it stood right after it."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    #: ``<aggregate>.<Event>``, e.g. ``checkout.Placed``, ``stock.Reserved``, ``order.RefundIssued``.
    kind: str
    aggregate_id: UUID
    version: int
    #: Position in the store's log (None on a store that has no log positions to read).
    position: int | None
    detail: str
    #: The order after this step (None before the order itself was placed).
    order_state: str | None
    refund_status: str | None
    paid: int
    refunded: int


class OrderStory(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: UUID
    checkout_id: UUID
    customer_id: str
    merchant_id: str
    currency: str
    payable: int
    as_of: datetime | None
    steps: tuple[Step, ...]
    order_state: str | None
    refund_status: str | None
    paid: int
    refunded: int

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def order_story(store: EventStore, order_id: UUID, as_of: datetime | None = None) -> OrderStory:
    """The order's story up to ``as_of`` (everything when None); ``NotFound`` for no such order."""
    order_events = list(_events(store, order_id))
    if not order_events or not isinstance(order_events[0], Order.Placed):
        raise NotFound(f"no order with id {order_id}")
    placed = order_events[0]
    assert isinstance(placed, Order.Placed)
    if as_of is not None and placed.timestamp > as_of:
        raise NotFound(f"order {order_id} was placed at {placed.timestamp.isoformat()}, after {as_of.isoformat()}")

    related: list[DomainEvent] = list(order_events)
    related += _events(store, placed.checkout_id)
    for coupon_id in (placed.merchant_coupon_id, placed.platform_coupon_id):
        if coupon_id is not None:
            related += _coupon_events(store, coupon_id, placed.checkout_id, order_id)
    stock_ids = {
        stock_item_id(line.sku.sku_id, allocation.warehouse_id)
        for line in placed.lines
        for allocation in line.allocations
    }
    for stock_id in sorted(stock_ids):
        related += (e for e in _events(store, stock_id) if getattr(e, "order_id", None) == order_id)
    for shipment_id in _shipment_ids(order_events):
        related += _events(store, shipment_id)
    if as_of is not None:
        related = [e for e in related if e.timestamp <= as_of]

    positions = notification_positions(store, {e.originator_id for e in related})
    related.sort(key=lambda e: _sort_key(e, positions))

    order: Order | None = None
    steps = []
    for event in related:
        if isinstance(event, _order_event_types()):
            order = Order.replay([event], start=order)
        steps.append(
            Step(
                at=event.timestamp,
                kind=kind_of(event),
                aggregate_id=event.originator_id,
                version=event.originator_version,
                position=positions.get((event.originator_id, event.originator_version)),
                detail=describe(event),
                **_money(order),
            )
        )
    return OrderStory(
        order_id=order_id,
        checkout_id=placed.checkout_id,
        customer_id=placed.customer_id,
        merchant_id=placed.merchant_id,
        currency=placed.currency,
        payable=placed.payable,
        as_of=as_of,
        steps=tuple(steps),
        **_money(order),
    )


# --------------------------------------------------------------------------- finding events


def _events(store: EventStore, aggregate_id: UUID) -> Iterator[DomainEvent]:
    return cast("Iterator[DomainEvent]", iter(store.events.get(aggregate_id)))


def _coupon_events(store: EventStore, coupon_id: UUID, checkout_id: UUID, order_id: UUID) -> list[DomainEvent]:
    """The coupon's events while it was tied to this checkout (a reinstated coupon may be used again)."""
    kept: list[DomainEvent] = []
    ours = False
    for event in _events(store, coupon_id):
        if isinstance(event, Coupon.Locked | Coupon.Redeemed):
            ours = event.checkout_id == checkout_id
            if ours:
                kept.append(event)
        elif isinstance(event, Coupon.OrderRefunded):
            if event.order_id == order_id:
                kept.append(event)
        elif isinstance(event, Coupon.Unlocked | Coupon.Reinstated | Coupon.Expired):
            if ours:
                kept.append(event)
            ours = ours and isinstance(event, Coupon.Expired)
    return kept


def _shipment_ids(order_events: Iterable[DomainEvent]) -> list[UUID]:
    found: list[UUID] = []
    for event in order_events:
        if isinstance(event, Order.ShipmentsPlanned):
            found += (parcel.shipment_id for parcel in event.parcels)
        elif isinstance(event, Order.ReturnShipped):
            found.append(event.shipment_id)
    return list(dict.fromkeys(found))


def notification_positions(store: EventStore, aggregate_ids: Iterable[UUID]) -> dict[tuple[UUID, int], int]:
    """Each event's position in the store's log, by (aggregate id, version), read with one
    query for the given aggregates; empty for a store without SQL tables (in memory)."""
    ids = sorted(set(aggregate_ids))
    recorder: Any = store.recorder
    table = getattr(recorder, "events_table_name", None)
    datastore = getattr(recorder, "datastore", None)
    if not ids or table is None or datastore is None:
        return {}
    if type(datastore).__name__.startswith("Postgres"):
        schema = getattr(datastore, "schema", None)
        from psycopg import sql

        query = sql.SQL(
            "SELECT originator_id, originator_version, notification_id FROM {} WHERE originator_id = ANY(%s)"
        ).format(sql.Identifier(schema, table) if schema else sql.Identifier(table))
        with datastore.get_connection() as connection:
            rows = connection.execute(query, (ids,)).fetchall()
        return {(UUID(str(r["originator_id"])), r["originator_version"]): r["notification_id"] for r in rows}
    found: dict[tuple[UUID, int], int] = {}
    with datastore.transaction(commit=False) as cursor:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor.execute(
                f"SELECT originator_id, originator_version, rowid FROM {table} WHERE originator_id IN ({marks})",
                [i.hex for i in chunk],
            )
            for originator_id, version, rowid in cursor.fetchall():
                found[(UUID(str(originator_id)), version)] = rowid
    return found


def _sort_key(event: DomainEvent, positions: dict[tuple[UUID, int], int]) -> tuple[Any, ...]:
    position = positions.get((event.originator_id, event.originator_version), 0)
    return (event.timestamp, position, _aggregate_of(event)[1], str(event.originator_id), event.originator_version)


# --------------------------------------------------------------------------- describing steps


def _aggregate_of(event: DomainEvent) -> tuple[str, int]:
    owner = type(event).__qualname__.split(".")[0]
    for cls, kind in AGGREGATE_KINDS.items():
        if cls.__name__ == owner:
            return kind
    return owner.lower(), len(AGGREGATE_KINDS)


def kind_of(event: DomainEvent) -> str:
    """``<aggregate>.<Event>``: ``order.Paid``, ``stock.Reserved``, ``shipment.Dispatched``…"""
    return f"{_aggregate_of(event)[0]}.{type(event).__name__}"


def _order_event_types() -> tuple[type, ...]:
    return tuple(value for value in vars(Order).values() if isinstance(value, type) and issubclass(value, DomainEvent))


_ENVELOPE = {"originator_id", "originator_version", "timestamp"}


def describe(event: DomainEvent) -> str:
    """The event's facts in a line a person reads: the ones that say what happened."""
    if isinstance(event, Order.Placed):
        return (
            f"placed {len(event.lines)} line(s), payable {event.payable} {event.currency} "
            f"(freight {event.freight}), pay by {event.payment_deadline.isoformat()}"
        )
    if isinstance(event, Checkout.Placed):
        return f"checkout of {len(event.order_ids)} order(s), payable {event.payable}"
    if isinstance(event, Order.ShipmentsPlanned):
        return f"{len(event.parcels)} parcel(s) planned"
    if isinstance(event, Order.RefundIssued):
        lines = ", ".join(f"line {no}: {units} unit(s) {amount}" for no, (units, amount) in sorted(event.lines.items()))
        freight = f", freight {event.freight}" if event.freight else ""
        return f"refund {event.refund_id} ({event.kind.value}) {event.amount}: {lines or 'no goods'}{freight}"
    if isinstance(event, Shipment.Planned | Shipment.ReturnSent):
        items = ", ".join(f"{item.sku_id}×{item.quantity}" for item in event.items)
        return f"{'return ' if isinstance(event, Shipment.ReturnSent) else ''}parcel from {event.warehouse_id}: {items}"
    if isinstance(event, Shipment.TrackingUpdated):
        u = event.update
        return f"{u.status} {u.location} at {u.occurred_at.isoformat()}".replace("  ", " ")
    if isinstance(event, Coupon.Locked):
        return f"locked for checkout {event.checkout_id}"
    facts = {k: v for k, v in event.model_dump(mode="json").items() if k not in _ENVELOPE}
    if isinstance(event, StockItem.Reserved | StockItem.ReservationReleased | StockItem.ReservationConfirmed
                  | StockItem.Dispatched | StockItem.ReturnRestocked | StockItem.ReturnWrittenOff):
        facts.pop("order_id", None)
    return ", ".join(f"{k} {_short(v)}" for k, v in facts.items())


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _money(order: Order | None) -> dict[str, Any]:
    if order is None:
        return {"order_state": None, "refund_status": None, "paid": 0, "refunded": 0}
    return {
        "order_state": order.state.value,
        "refund_status": order.refund_status.value,
        "paid": order.paid + order.late_payments,
        "refunded": order.refunded + order.late_refunded,
    }
