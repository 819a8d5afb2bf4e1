"""Shipping: parcels leave the warehouse, are tracked, and are delivered or fail."""

from __future__ import annotations

from ecomcore.application.commands import DeliverShipment, DispatchShipment, ReportDeliveryFailure, UpdateTracking
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.order import Order
from ecomcore.domain.shipment import Shipment, TrackingUpdate
from ecomcore.domain.stock_item import StockItem, stock_item_id


def dispatch_shipment(uow: UnitOfWork, c: DispatchShipment) -> None:
    """The parcel leaves the warehouse (出库): its units leave stock."""
    shipment = uow.get(Shipment, c.shipment_id, "shipment")
    if not shipment.dispatch(c.carrier, c.tracking_number, uow.now):
        return
    assert shipment.order_id is not None
    order = uow.get(Order, shipment.order_id)
    for item in shipment.items:
        stock = uow.get(StockItem, stock_item_id(item.sku_id, shipment.warehouse_id))
        stock.dispatch(order.id, shipment.id, item.quantity, uow.now)
    order.shipment_dispatched(shipment.id, uow.now)


def update_tracking(uow: UnitOfWork, c: UpdateTracking) -> bool:
    update = TrackingUpdate(occurred_at=c.occurred_at, status=c.status, location=c.location)
    return uow.get(Shipment, c.shipment_id, "shipment").track(update, uow.now)


def deliver_shipment(uow: UnitOfWork, c: DeliverShipment) -> None:
    shipment = uow.get(Shipment, c.shipment_id, "shipment")
    if shipment.deliver(uow.now):
        assert shipment.order_id is not None
        uow.get(Order, shipment.order_id).shipment_delivered(shipment.id, uow.now)


def report_delivery_failure(uow: UnitOfWork, c: ReportDeliveryFailure) -> None:
    shipment = uow.get(Shipment, c.shipment_id, "shipment")
    if shipment.fail(c.reason, uow.now):
        assert shipment.order_id is not None
        uow.get(Order, shipment.order_id).shipment_failed(shipment.id, c.reason, uow.now)
