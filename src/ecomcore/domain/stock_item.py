"""StockItem (库存): the stock of one SKU in one warehouse.

``available = on_hand − Σ active reservations``; a reservation is active while it
is confirmed (its order is paid) or its expiry is still in the future, so an
expired reservation stops counting at once, before any sweeper records it.

Low stock follows availability as each command sees it: one ``LowStockDetected`` per fall
to or below the safety stock; an open alert is cleared (``LowStockCleared``) as soon as a
command finds availability above the safety stock again, whether a receipt, a release or
only the passing of time (an expiry) lifted it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import Field

from ecomcore.domain.aggregate import Aggregate, DomainEvent, applies
from ecomcore.domain.errors import IllegalTransition, InsufficientStock
from ecomcore.domain.values import Value

_NAMESPACE = uuid5(NAMESPACE_URL, "https://ecomcore/stock-item")


def stock_item_id(sku_id: str, warehouse_id: str) -> UUID:
    """The same (SKU, warehouse) always names the same StockItem."""
    return uuid5(_NAMESPACE, f"{sku_id}\x1f{warehouse_id}")


class ReleaseReason(StrEnum):
    """Why an order's reserved units were given back."""

    CANCELLED = "cancelled"  # by the customer or operations, before payment
    EXPIRED = "expired"  # the payment deadline passed
    REFUNDED = "refunded"  # refunded before they were dispatched


class Reservation(Value):
    quantity: int
    expires_at: datetime | None  # None once confirmed: a paid order's units never expire
    confirmed: bool = False

    def is_active(self, now: datetime) -> bool:
        return self.confirmed or (self.expires_at is not None and self.expires_at > now)


class Reservations(Mapping[UUID, Reservation]):
    """The units held for each order, with running totals so that availability costs the
    same however many orders hold units.

    Confirmed units always count. Unconfirmed units count until their expiry: while no
    expiry has passed (``now`` before the earliest one), all of them count, and that is a
    sum kept as they change; only when some have expired but nobody released them yet
    (the sweeper will) are the unconfirmed ones looked at one by one.
    """

    def __init__(self) -> None:
        self._held: dict[UUID, Reservation] = {}
        self._unconfirmed: dict[UUID, Reservation] = {}
        self._confirmed_units = 0
        self._unconfirmed_units = 0
        #: No unconfirmed reservation expires before this (None: there are none).
        self._earliest_expiry: datetime | None = None

    def __getitem__(self, order_id: UUID) -> Reservation:
        return self._held[order_id]

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"Reservations({self._held!r})"

    def reserved(self, now: datetime) -> int:
        """Units held at ``now``: every confirmed one, and every unconfirmed one not expired."""
        if self._earliest_expiry is None or now < self._earliest_expiry:
            return self._confirmed_units + self._unconfirmed_units
        return self._confirmed_units + sum(r.quantity for r in self._unconfirmed.values() if r.is_active(now))

    def set(self, order_id: UUID, reservation: Reservation) -> None:
        """Hold ``reservation`` for the order, in place of what it held before."""
        self.remove(order_id)
        self._held[order_id] = reservation
        if reservation.confirmed:
            self._confirmed_units += reservation.quantity
        else:
            self._unconfirmed[order_id] = reservation
            self._unconfirmed_units += reservation.quantity
            if reservation.expires_at is not None and (
                self._earliest_expiry is None or reservation.expires_at < self._earliest_expiry
            ):
                self._earliest_expiry = reservation.expires_at

    def remove(self, order_id: UUID) -> None:
        held = self._held.pop(order_id, None)
        if held is None:
            return
        if held.confirmed:
            self._confirmed_units -= held.quantity
        else:
            del self._unconfirmed[order_id]
            self._unconfirmed_units -= held.quantity
            if not self._unconfirmed_units:
                self._earliest_expiry = None  # (else it stays a lower bound)


class StockItem(Aggregate):
    contended = True  # every buyer of the SKU reserves on it

    class Registered(DomainEvent):
        sku_id: str
        warehouse_id: str
        safety_stock: int = Field(ge=0)
        reorder_quantity: int = Field(ge=0)

    class Received(DomainEvent):
        quantity: int = Field(gt=0)
        reference: str

    class Reserved(DomainEvent):
        order_id: UUID
        quantity: int = Field(gt=0)
        expires_at: datetime

    class ReservationReleased(DomainEvent):
        order_id: UUID
        quantity: int = Field(gt=0)
        #: A ``ReleaseReason`` value; kept a string, as every release ever stored was.
        reason: str

    class ReservationConfirmed(DomainEvent):
        order_id: UUID

    class Dispatched(DomainEvent):
        order_id: UUID
        shipment_id: UUID
        quantity: int = Field(gt=0)

    class ReturnRestocked(DomainEvent):
        order_id: UUID
        quantity: int = Field(gt=0)

    class ReturnWrittenOff(DomainEvent):
        """Returned units found damaged: recorded, never back in sellable stock."""

        order_id: UUID
        quantity: int = Field(gt=0)
        reason: str

    class WrittenOff(DomainEvent):
        quantity: int = Field(gt=0)
        reason: str

    class Counted(DomainEvent):
        counted_quantity: int = Field(ge=0)
        difference: int
        shortage: int = Field(ge=0)
        reason: str

    class SafetyStockSet(DomainEvent):
        safety_stock: int = Field(ge=0)
        reorder_quantity: int = Field(ge=0)

    class LowStockDetected(DomainEvent):
        available: int
        safety_stock: int
        suggested_reorder_quantity: int = Field(ge=0)

    class LowStockCleared(DomainEvent):
        available: int

    def __init__(self, id: UUID) -> None:
        super().__init__(id)
        self.sku_id = ""
        self.warehouse_id = ""
        self.on_hand = 0
        self.reservations = Reservations()
        self.safety_stock = 0
        self.reorder_quantity = 0
        self.low_stock_flagged = False

    # -- queries -----------------------------------------------------------------

    def reserved(self, now: datetime) -> int:
        return self.reservations.reserved(now)

    def available(self, now: datetime) -> int:
        return self.on_hand - self.reserved(now)

    def reservation_for(self, order_id: UUID) -> Reservation | None:
        return self.reservations.get(order_id)

    # -- commands ----------------------------------------------------------------

    @classmethod
    def register(
        cls, sku_id: str, warehouse_id: str, now: datetime, *, safety_stock: int = 0, reorder_quantity: int = 0
    ) -> StockItem:
        item = cls(stock_item_id(sku_id, warehouse_id))
        item._record(
            cls.Registered,
            now,
            sku_id=sku_id,
            warehouse_id=warehouse_id,
            safety_stock=safety_stock,
            reorder_quantity=reorder_quantity,
        )
        return item

    @classmethod
    def set_up(
        cls, sku_id: str, warehouse_id: str, now: datetime, *, safety_stock: int = 0, reorder_quantity: int = 0
    ) -> StockItem:
        """Register a SKU's stock in a warehouse with its safety stock.

        A new item has nothing on hand, so it is at or below any safety stock: low stock
        is flagged at once, with a reorder suggestion.
        """
        item = cls.register(sku_id, warehouse_id, now, safety_stock=safety_stock, reorder_quantity=reorder_quantity)
        item._watch_low_stock(now)
        return item

    def receive(self, quantity: int, reference: str, now: datetime) -> None:
        self._record_change(self.Received, now, quantity=quantity, reference=reference)

    def reserve(self, order_id: UUID, quantity: int, expires_at: datetime, now: datetime) -> None:
        existing = self.reservations.get(order_id)
        if existing is not None:
            if existing.quantity != quantity:
                raise IllegalTransition(
                    f"order {order_id} already holds {existing.quantity} of sku {self.sku_id} "
                    f"in warehouse {self.warehouse_id}; cannot reserve {quantity} again"
                )
            return  # idempotent
        available = self.available(now)
        if available < quantity:
            shortage = {"sku_id": self.sku_id, "warehouse_id": self.warehouse_id}
            raise InsufficientStock([shortage | {"available": available, "requested": quantity}])
        self._record_change(self.Reserved, now, order_id=order_id, quantity=quantity, expires_at=expires_at)

    def release(self, order_id: UUID, reason: ReleaseReason, now: datetime, quantity: int | None = None) -> int:
        """Give back an order's reserved units (all of them unless ``quantity``); returns how many."""
        reservation = self.reservations.get(order_id)
        if reservation is None:
            return 0  # nothing held: releasing twice is harmless
        quantity = reservation.quantity if quantity is None else min(quantity, reservation.quantity)
        if quantity <= 0:
            return 0
        self._record_change(self.ReservationReleased, now, order_id=order_id, quantity=quantity, reason=reason)
        return quantity

    def confirm(self, order_id: UUID, now: datetime) -> None:
        reservation = self.reservations.get(order_id)
        if reservation is None:
            raise IllegalTransition(
                f"order {order_id} holds no reservation of sku {self.sku_id} in warehouse {self.warehouse_id}"
            )
        if reservation.confirmed:
            return
        if not reservation.is_active(now):
            # Its units may already be promised to another order: reviving it would oversell.
            raise IllegalTransition(
                f"the reservation of order {order_id} on sku {self.sku_id} in warehouse {self.warehouse_id} "
                f"expired at {reservation.expires_at:%Y-%m-%d %H:%M}"
            )
        # Confirming changes nothing available: no fall to watch for after it.
        self._record_change(self.ReservationConfirmed, now, watch=False, order_id=order_id)

    def dispatch(self, order_id: UUID, shipment_id: UUID, quantity: int, now: datetime) -> None:
        reservation = self.reservations.get(order_id)
        held = reservation.quantity if reservation and reservation.confirmed else 0
        if held < quantity:
            raise IllegalTransition(
                f"cannot dispatch {quantity} of sku {self.sku_id} from warehouse {self.warehouse_id} "
                f"for order {order_id}: {held} confirmed for it"
            )
        if quantity > self.on_hand:
            # A stocktake found fewer units than were promised: operations must
            # resolve the shortage (receive or re-count) before these can leave.
            raise IllegalTransition(
                f"cannot dispatch {quantity} of sku {self.sku_id} from warehouse {self.warehouse_id}: "
                f"only {self.on_hand} on hand after the last stocktake"
            )
        self._record_change(self.Dispatched, now, order_id=order_id, shipment_id=shipment_id, quantity=quantity)

    def restock_return(self, order_id: UUID, quantity: int, now: datetime) -> None:
        self._record_change(self.ReturnRestocked, now, order_id=order_id, quantity=quantity)

    def write_off_return(self, order_id: UUID, quantity: int, reason: str, now: datetime) -> None:
        """Damaged returned units: written off on arrival, so on-hand never counted them."""
        self._record_change(
            self.ReturnWrittenOff, now, watch=False, order_id=order_id, quantity=quantity, reason=reason
        )

    def write_off(self, quantity: int, reason: str, now: datetime) -> None:
        if quantity > self.on_hand:
            raise IllegalTransition(
                f"cannot write off {quantity} of sku {self.sku_id} in warehouse {self.warehouse_id}: "
                f"{self.on_hand} on hand"
            )
        self._record_change(self.WrittenOff, now, quantity=quantity, reason=reason)

    def count(self, counted_quantity: int, reason: str, now: datetime) -> None:
        # Reality cannot be refused: a count below what is reserved is recorded with
        # the shortage, which operations must resolve.
        shortage = max(0, self.reserved(now) - counted_quantity)
        self._record_change(
            self.Counted,
            now,
            counted_quantity=counted_quantity,
            difference=counted_quantity - self.on_hand,
            shortage=shortage,
            reason=reason,
        )

    def set_safety_stock(self, safety_stock: int, reorder_quantity: int, now: datetime) -> bool:
        """Change the safety stock and reorder quantity; False (nothing recorded) if they are unchanged."""
        if (safety_stock, reorder_quantity) == (self.safety_stock, self.reorder_quantity):
            return False
        self._record_change(self.SafetyStockSet, now, safety_stock=safety_stock, reorder_quantity=reorder_quantity)
        return True

    def _record_change(self, event_type: type[DomainEvent], now: datetime, *, watch: bool = True, **facts: Any) -> None:
        """Record a command's own change (its checks passed), watching low stock around it.

        Availability also changes with time alone: an unconfirmed reservation stops counting
        at its expiry, before any release is recorded. So before the change an open alert is
        cleared if availability *now* is above the safety stock, and after it a fall to or
        below the safety stock alerts again: one alert per fall, whatever made it rise.
        """
        self._lift_low_stock_alert(now)
        self._record(event_type, now, **facts)
        if watch:
            self._watch_low_stock(now)

    def _lift_low_stock_alert(self, now: datetime) -> None:
        """Clear an open alert if availability now (expiries counted) is above the safety stock."""
        if self.low_stock_flagged:
            available = self.available(now)
            if available > self.safety_stock:
                self._record(self.LowStockCleared, now, available=available)

    def _watch_low_stock(self, now: datetime) -> None:
        """One alert when available falls to the safety stock, none again until it rises above."""
        available = self.available(now)
        if not self.low_stock_flagged and available <= self.safety_stock:
            suggested = max(self.reorder_quantity, self.safety_stock - available + 1)
            self._record(
                self.LowStockDetected,
                now,
                available=available,
                safety_stock=self.safety_stock,
                suggested_reorder_quantity=suggested,
            )
        elif self.low_stock_flagged and available > self.safety_stock:
            self._record(self.LowStockCleared, now, available=available)

    # -- state changes -------------------------------------------------------------

    @applies(Registered)
    def _registered(self, e: Registered) -> None:
        self.sku_id, self.warehouse_id = e.sku_id, e.warehouse_id
        self.safety_stock, self.reorder_quantity = e.safety_stock, e.reorder_quantity

    @applies(Received)
    def _received(self, e: Received) -> None:
        self.on_hand += e.quantity

    @applies(Reserved)
    def _reserved(self, e: Reserved) -> None:
        self.reservations.set(e.order_id, Reservation(quantity=e.quantity, expires_at=e.expires_at))

    @applies(ReservationReleased)
    def _released(self, e: ReservationReleased) -> None:
        self._reduce_reservation(e.order_id, e.quantity)

    @applies(ReservationConfirmed)
    def _confirmed(self, e: ReservationConfirmed) -> None:
        held = self.reservations[e.order_id]
        self.reservations.set(e.order_id, Reservation(quantity=held.quantity, expires_at=None, confirmed=True))

    @applies(Dispatched)
    def _dispatched(self, e: Dispatched) -> None:
        self.on_hand -= e.quantity
        self._reduce_reservation(e.order_id, e.quantity)

    @applies(ReturnRestocked)
    def _restocked(self, e: ReturnRestocked) -> None:
        self.on_hand += e.quantity

    @applies(ReturnWrittenOff)
    def _return_written_off(self, e: ReturnWrittenOff) -> None:
        pass  # the units never entered on-hand stock; the event is for the books

    @applies(WrittenOff)
    def _written_off(self, e: WrittenOff) -> None:
        self.on_hand -= e.quantity

    @applies(Counted)
    def _counted(self, e: Counted) -> None:
        self.on_hand = e.counted_quantity

    @applies(SafetyStockSet)
    def _safety_stock_set(self, e: SafetyStockSet) -> None:
        self.safety_stock, self.reorder_quantity = e.safety_stock, e.reorder_quantity

    @applies(LowStockDetected)
    def _low_stock_detected(self, e: LowStockDetected) -> None:
        self.low_stock_flagged = True

    @applies(LowStockCleared)
    def _low_stock_cleared(self, e: LowStockCleared) -> None:
        self.low_stock_flagged = False

    def _reduce_reservation(self, order_id: UUID, quantity: int) -> None:
        held = self.reservations[order_id]
        left = held.quantity - quantity
        if left > 0:
            self.reservations.set(order_id, held.model_copy(update={"quantity": left}))
        else:
            self.reservations.remove(order_id)

    # -- snapshots (a busy item has a long stream) ----------------------------------

    def snapshot_state(self) -> dict[str, Any]:
        return {
            "sku_id": self.sku_id,
            "warehouse_id": self.warehouse_id,
            "on_hand": self.on_hand,
            "reservations": {str(k): v.model_dump(mode="json") for k, v in self.reservations.items()},
            "safety_stock": self.safety_stock,
            "reorder_quantity": self.reorder_quantity,
            "low_stock_flagged": self.low_stock_flagged,
            "created_on": self.created_on.isoformat() if self.created_on else None,
        }

    def restore_snapshot_state(self, state: dict[str, Any]) -> None:
        self.sku_id = state["sku_id"]
        self.warehouse_id = state["warehouse_id"]
        self.on_hand = state["on_hand"]
        self.reservations = Reservations()
        for order_id, reservation in state["reservations"].items():
            self.reservations.set(UUID(order_id), Reservation.model_validate(reservation))
        self.safety_stock = state["safety_stock"]
        self.reorder_quantity = state["reorder_quantity"]
        self.low_stock_flagged = state["low_stock_flagged"]
        self.created_on = datetime.fromisoformat(state["created_on"]) if state["created_on"] else None
