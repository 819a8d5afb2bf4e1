"""Shipping: the warehouses hand parcels to the carriers in waves until each one's last
truck, carriers report tracking, parcels are delivered (one is lost), and customers
confirm receipt."""

from __future__ import annotations

from uuid import UUID

from ecomcore.domain.order import OrderState
from ecomcore.simulation.after_sales import refund_lost_parcel
from ecomcore.simulation.catalogue import CARRIERS, LAST_TRUCK
from ecomcore.simulation.day import Day


def dispatch_wave(day: Day, day_fraction: float) -> None:
    """Hand the packed parcels to the carriers, from warehouses whose last truck has not left."""
    parcels = day.parcels
    leaving = [sid for sid in parcels.awaiting_truck if LAST_TRUCK[parcels.warehouse_of[sid]] >= day_fraction]
    for shipment_id in leaving:
        warehouse_id = parcels.warehouse_of[shipment_id]
        carrier = CARRIERS[warehouse_id]
        day.shop.dispatch(shipment_id=shipment_id, carrier=carrier, tracking_number=day.ids.waybill(carrier))
        _track(day, shipment_id, "collected", warehouse_id)
        parcels.awaiting_truck.remove(shipment_id)
        parcels.on_the_road.append(shipment_id)


def next_day_deliveries(day: Day) -> None:
    """Parcels reach the hubs; most are delivered, one is lost (and refunded)."""
    parcels = day.parcels
    day.wait_until(1, 7)
    for shipment_id in parcels.on_the_road:
        _track(day, shipment_id, "arrived_at_hub", "regional sorting centre")
    parcels.first_deliveries_at = day.wait_until(1, 10)
    road = list(parcels.on_the_road)
    day.rng.shuffle(road)
    if road:
        failed = road.pop()
        day.shop.report_delivery_failure(shipment_id=failed, reason="lost by the carrier")
        parcels.on_the_road.remove(failed)
        refund_lost_parcel(day, failed)
    for shipment_id in road[: round(len(road) * 0.7)]:
        _deliver(day, shipment_id)


def customers_confirm_receipt(day: Day) -> None:
    """Day 2 in the evening some customers confirm receipt; the others leave it to the sweeper."""
    day.wait_until(2, 20)
    for order_id in day.paid_orders:
        order = day.shop.order(order_id)
        if order.state is OrderState.DELIVERED and day.rng.random() < 0.3:
            day.shop.confirm_receipt(order_id=order_id, customer_id=order.customer_id)


def later_deliveries(day: Day) -> None:
    """Two days later the slower parcels arrive; a few are still on their way."""
    day.wait_until(3, 15)
    on_the_road = day.parcels.on_the_road
    for shipment_id in on_the_road[: round(len(on_the_road) * 0.6)]:
        _deliver(day, shipment_id)


def _deliver(day: Day, shipment_id: UUID) -> None:
    _track(day, shipment_id, "out_for_delivery", "local station")
    day.shop.deliver(shipment_id=shipment_id)
    day.parcels.on_the_road.remove(shipment_id)


def _track(day: Day, shipment_id: UUID, status: str, location: str) -> None:
    day.shop.update_tracking(shipment_id=shipment_id, occurred_at=day.clock.now(), status=status, location=location)
