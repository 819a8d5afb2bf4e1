"""Shipment (发货/物流): one parcel with one waybill.

Outbound: ``planned → dispatched → in_transit → delivered``, or ``→ failed``;
units are withdrawn from a planned parcel, which is ``cancelled`` once empty, when they
are refunded before dispatch.  A return parcel is sent back by the customer after an
approved return: ``dispatched → in_transit → received``, checked in at the warehouse
with each unit marked sellable or damaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID, uuid5

from pydantic import Field

from ecomcore.domain.aggregate import Aggregate, DomainEvent, applies
from ecomcore.domain.errors import IllegalTransition
from ecomcore.domain.parcels import LineUnits
from ecomcore.domain.values import Value

if TYPE_CHECKING:
    from ecomcore.domain.order import OrderLine


class ShipmentState(StrEnum):
    PLANNED = "planned"
    DISPATCHED = "dispatched"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RECEIVED = "received"  # a return parcel, checked in at the warehouse


class ParcelItem(Value):
    line_no: int
    sku_id: str
    quantity: int = Field(gt=0)
    weight_g: int = Field(ge=0)  # of all these units


class ParcelPlan(Value):
    warehouse_id: str
    items: tuple[ParcelItem, ...]

    @property
    def weight_g(self) -> int:
        return sum(item.weight_g for item in self.items)


def plan_parcels(lines: Sequence[OrderLine], weight_limit_g: int) -> list[ParcelPlan]:
    """Second split (发货拆单): group units by the warehouse holding them, then pack
    each group into parcels of at most ``weight_limit_g``.

    Units are packed in line order, first fit into the open parcel; a heavy line's
    units spread over several parcels; a single unit heavier than the limit travels
    alone (a unit cannot be cut).
    """
    by_warehouse: dict[str, list[tuple[OrderLine, int]]] = {}
    for line in lines:
        for allocation in line.allocations:
            by_warehouse.setdefault(allocation.warehouse_id, []).append((line, allocation.quantity))

    plans: list[ParcelPlan] = []
    for warehouse_id, parts in by_warehouse.items():
        parcels: list[dict[int, tuple[OrderLine, int]]] = [{}]
        weights = [0]
        for line, quantity in parts:
            unit_weight = line.sku.weight_g
            for _ in range(quantity):
                if weights[-1] and weights[-1] + unit_weight > weight_limit_g:
                    parcels.append({})
                    weights.append(0)
                current = parcels[-1]
                _, units = current.get(line.line_no, (line, 0))
                current[line.line_no] = (line, units + 1)
                weights[-1] += unit_weight
        for parcel in parcels:
            items = tuple(
                ParcelItem(line_no=no, sku_id=line.sku.sku_id, quantity=units, weight_g=units * line.sku.weight_g)
                for no, (line, units) in parcel.items()
            )
            plans.append(ParcelPlan(warehouse_id=warehouse_id, items=items))
    return plans


def shipment_id_for(order_id: UUID, parcel_no: int) -> UUID:
    return uuid5(order_id, f"parcel:{parcel_no}")


def return_shipment_id_for(order_id: UUID, return_id: UUID) -> UUID:
    return uuid5(order_id, f"return:{return_id}")


class TrackingUpdate(Value):
    occurred_at: datetime
    status: str = Field(min_length=1, max_length=64)
    location: str = Field("", max_length=200)


class Shipment(Aggregate):
    class Planned(DomainEvent):
        order_id: UUID
        checkout_id: UUID
        merchant_id: str
        warehouse_id: str
        items: tuple[ParcelItem, ...] = Field(min_length=1)

    class Dispatched(DomainEvent):
        carrier: str
        tracking_number: str

    class TrackingUpdated(DomainEvent):
        update: TrackingUpdate

    class Delivered(DomainEvent):
        pass

    class Failed(DomainEvent):
        reason: str

    class Cancelled(DomainEvent):
        reason: str

    class UnitsWithdrawn(DomainEvent):
        """Units taken out of a planned parcel (refunded before dispatch).

        ecomcore 0.1 stored it as ``Shipment.Shrunk`` (see ``renames.py``).
        """

        units: LineUnits = Field(min_length=1)
        reason: str

    class ReturnSent(DomainEvent):
        """The customer handed an approved return to a carrier."""

        order_id: UUID
        checkout_id: UUID
        merchant_id: str
        warehouse_id: str
        return_id: UUID
        items: tuple[ParcelItem, ...] = Field(min_length=1)
        carrier: str
        tracking_number: str

    class ReturnCheckedIn(DomainEvent):
        """A return parcel checked in at the warehouse, unit by unit.

        ecomcore 0.1 stored it as ``Shipment.Received`` (see ``renames.py``).
        """

        sellable: LineUnits
        damaged: LineUnits

    def __init__(self, id: UUID) -> None:
        super().__init__(id)
        self.order_id: UUID | None = None
        self.checkout_id: UUID | None = None
        self.merchant_id = ""
        self.warehouse_id = ""
        self.items: tuple[ParcelItem, ...] = ()
        self.state = ShipmentState.PLANNED
        self.carrier = ""
        self.tracking_number = ""
        self.tracking: list[TrackingUpdate] = []
        self.return_id: UUID | None = None
        self.sellable: LineUnits = {}
        self.damaged: LineUnits = {}

    @classmethod
    def plan(cls, shipment_id: UUID, now: datetime, **facts: object) -> Shipment:
        shipment = cls(shipment_id)
        shipment._record(cls.Planned, now, **facts)
        return shipment

    @classmethod
    def send_return(cls, shipment_id: UUID, now: datetime, **facts: object) -> Shipment:
        shipment = cls(shipment_id)
        shipment._record(cls.ReturnSent, now, **facts)
        return shipment

    @property
    def weight_g(self) -> int:
        return sum(item.weight_g for item in self.items)

    @property
    def is_return(self) -> bool:
        return self.return_id is not None

    def dispatch(self, carrier: str, tracking_number: str, now: datetime) -> bool:
        """Hand the parcel to a carrier; False if it already left with this waybill (idempotent)."""
        if self.state is not ShipmentState.PLANNED:
            if (self.carrier, self.tracking_number) == (carrier, tracking_number):
                return False
            raise IllegalTransition(f"shipment {self.id} is {self.state.value}; only a planned one can be dispatched")
        self._record(self.Dispatched, now, carrier=carrier, tracking_number=tracking_number)
        return True

    def track(self, update: TrackingUpdate, now: datetime) -> bool:
        """Append a carrier's update; a duplicate is ignored. True if it was new."""
        if self.state in (ShipmentState.PLANNED, ShipmentState.CANCELLED):
            raise IllegalTransition(f"shipment {self.id} is {self.state.value}; it has no carrier to track it")
        if update in self.tracking:
            return False
        self._record(self.TrackingUpdated, now, update=update)
        return True

    def deliver(self, now: datetime) -> bool:
        self._require_outbound("delivered to the customer")
        if self.state is ShipmentState.DELIVERED:
            return False
        if self.state not in (ShipmentState.DISPATCHED, ShipmentState.IN_TRANSIT):
            raise IllegalTransition(f"shipment {self.id} is {self.state.value}; it cannot be delivered")
        self._record(self.Delivered, now)
        return True

    def fail(self, reason: str, now: datetime) -> bool:
        self._require_outbound("reported failed")
        if self.state is ShipmentState.FAILED:
            return False
        if self.state not in (ShipmentState.DISPATCHED, ShipmentState.IN_TRANSIT):
            raise IllegalTransition(f"shipment {self.id} is {self.state.value}; only a parcel on its way can fail")
        self._record(self.Failed, now, reason=reason)
        return True

    def cancel(self, reason: str, now: datetime) -> None:
        if self.state is not ShipmentState.PLANNED:
            raise IllegalTransition(f"shipment {self.id} is {self.state.value}; only a planned one can be cancelled")
        self._record(self.Cancelled, now, reason=reason)

    def withdraw(self, units: LineUnits, reason: str, now: datetime) -> None:
        """Take refunded units out of a planned parcel; an emptied parcel is cancelled."""
        if self.state is not ShipmentState.PLANNED:
            raise IllegalTransition(f"shipment {self.id} is {self.state.value}; units leave only a planned parcel")
        carried = {item.line_no: item.quantity for item in self.items}
        for line_no, n in units.items():
            if n > carried.get(line_no, 0):
                raise IllegalTransition(
                    f"shipment {self.id} carries {carried.get(line_no, 0)} unit(s) of line {line_no}, not {n}"
                )
        if units == carried:
            self._record(self.Cancelled, now, reason=reason)
        else:
            self._record(self.UnitsWithdrawn, now, units=units, reason=reason)

    def check_in_return(self, sellable: LineUnits, damaged: LineUnits, now: datetime) -> None:
        """Check a return parcel in at the warehouse; every unit is sellable or damaged."""
        if not self.is_return:
            raise IllegalTransition(f"shipment {self.id} goes to a customer; only a return parcel is received")
        if self.state is ShipmentState.RECEIVED:
            raise IllegalTransition(f"return shipment {self.id} was already received")
        self._record(self.ReturnCheckedIn, now, sellable=sellable, damaged=damaged)

    def _require_outbound(self, action: str) -> None:
        if self.is_return:
            raise IllegalTransition(f"shipment {self.id} is a return parcel; it is received, not {action}")

    @applies(Planned)
    def _planned(self, e: Planned) -> None:
        self.order_id, self.checkout_id, self.merchant_id = e.order_id, e.checkout_id, e.merchant_id
        self.warehouse_id, self.items = e.warehouse_id, e.items

    @applies(Dispatched)
    def _dispatched(self, e: Dispatched) -> None:
        self.state, self.carrier, self.tracking_number = ShipmentState.DISPATCHED, e.carrier, e.tracking_number

    @applies(TrackingUpdated)
    def _tracking_updated(self, e: TrackingUpdated) -> None:
        # Kept in the order things happened, whatever order the carrier reported them.
        self.tracking.append(e.update)
        self.tracking.sort(key=lambda u: u.occurred_at)
        if self.state is ShipmentState.DISPATCHED:
            self.state = ShipmentState.IN_TRANSIT

    @applies(Delivered)
    def _delivered(self, e: Delivered) -> None:
        self.state = ShipmentState.DELIVERED

    @applies(Failed)
    def _failed(self, e: Failed) -> None:
        self.state = ShipmentState.FAILED

    @applies(Cancelled)
    def _cancelled(self, e: Cancelled) -> None:
        self.state = ShipmentState.CANCELLED

    @applies(UnitsWithdrawn)
    def _units_withdrawn(self, e: UnitsWithdrawn) -> None:
        items = []
        for item in self.items:
            left = item.quantity - e.units.get(item.line_no, 0)
            if left:
                unit_weight = item.weight_g // item.quantity
                items.append(item.model_copy(update={"quantity": left, "weight_g": unit_weight * left}))
        self.items = tuple(items)

    @applies(ReturnSent)
    def _return_sent(self, e: ReturnSent) -> None:
        self.order_id, self.checkout_id, self.merchant_id = e.order_id, e.checkout_id, e.merchant_id
        self.warehouse_id, self.items, self.return_id = e.warehouse_id, e.items, e.return_id
        self.state, self.carrier, self.tracking_number = ShipmentState.DISPATCHED, e.carrier, e.tracking_number

    @applies(ReturnCheckedIn)
    def _return_checked_in(self, e: ReturnCheckedIn) -> None:
        self.state, self.sellable, self.damaged = ShipmentState.RECEIVED, e.sellable, e.damaged
