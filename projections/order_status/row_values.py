"""The rows of the order-status tables, as a folded aggregate and its latest event give them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.order import Order, OrderState
from ecomcore.domain.shipment import Shipment, ShipmentState
from ecomcore_projections.rows import Row


def item_rows(shipment: Shipment) -> list[Row]:
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


def tracking_rows(shipment: Shipment) -> list[Row]:
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


def order_values(order: Order, event: DomainEvent, before: Row | None, position: int) -> dict[str, Any]:
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
        "cancel_reason": event.reason.value if isinstance(event, Order.Cancelled) else kept("cancel_reason"),
        "completion": event.how.value if isinstance(event, Order.Completed) else kept("completion"),
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


def line_values(order: Order, line: Any) -> dict[str, Any]:
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


def shipment_values(shipment: Shipment, event: DomainEvent, before: Row | None, position: int) -> dict[str, Any]:
    def kept(column: str) -> Any:
        return None if before is None else before[column]

    leaves = isinstance(event, (Shipment.Dispatched, Shipment.ReturnSent))
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
        "reason": event.reason if isinstance(event, (Shipment.Failed, Shipment.Cancelled)) else kept("reason"),
        "created_at": shipment.created_on,
        "dispatched_at": event.timestamp if leaves else kept("dispatched_at"),
        "updated_at": event.timestamp,
        "version": shipment.version,
        "position": position,
    }
