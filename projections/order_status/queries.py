"""What the back office asks of the order-status read model, and the shapes of the answers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    func,
    select,
)

from ecomcore.domain.order import OrderState, RefundStatus
from ecomcore.domain.shipment import ShipmentState
from ecomcore.domain.values import Value
from ecomcore_projections.base import (
    Queries,
    require_aware,
)
from ecomcore_projections.order_status.projection import OrderStatusProjection


class OrderLineView(Value):
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


class ParcelItemView(Value):
    line_no: int
    sku_id: str
    quantity: int
    weight_g: int
    sellable: int | None
    damaged: int | None


class TrackingView(Value):
    seq: int
    occurred_at: datetime
    status: str
    location: str


class ShipmentView(Value):
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


class TimelineEntry(Value):
    seq: int
    at: datetime
    event_type: str
    description: str
    shipment_id: UUID | None
    position: int


class OrderSummary(Value):
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
