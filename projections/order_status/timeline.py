"""The timeline's sentences: one per fact, for the people reading an order's story."""

from __future__ import annotations

from datetime import UTC, datetime

from ecomcore.domain.after_sales import RefundKind
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.money import format_amount
from ecomcore.domain.order import CompletionKind, Order
from ecomcore.domain.shipment import Shipment
from ecomcore_projections.base import (
    ProjectionInconsistency,
)


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _units(lines: dict[int, int]) -> str:
    return ", ".join(f"line {no} × {n}" for no, n in sorted(lines.items()))


def describe_order_event(order: Order, event: DomainEvent) -> str | None:
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
            refunded = _units({no: n for no, (n, _) in event.lines.items()})
            freight = f", freight {money(event.freight)} included" if event.freight else ""
            return f"{what}: {money(event.amount)} for {refunded}{freight} (refund {event.refund_id}: {event.reason})"
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


def describe_shipment_event(shipment: Shipment, event: DomainEvent) -> str | None:
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
