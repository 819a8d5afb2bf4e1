"""After-sales (售后): refunds, returns, and the unit ledger they are priced from.

Refunds stay inside the Order's consistency boundary: the Order records every refund
and return event.  The rules live here, in :class:`UnitLedger`, a view over one order's
facts that counts its units line by line (planned, on the way, delivered, lost,
refunded, claimed by a return) and prices a refund by the unit-refund formula of spec §3.
Everything is computed from the order's own history, so replaying the same events
always gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from pydantic import Field

from ecomcore.domain.errors import IllegalTransition, NotFound, RefundRefused, ReturnRefused
from ecomcore.domain.parcels import LineUnits, ParcelUnits, ShipmentProgress
from ecomcore.domain.pricing import unit_refund
from ecomcore.domain.values import Value

if TYPE_CHECKING:
    from ecomcore.domain.order import OrderLine


class RefundKind(StrEnum):
    REFUND_ONLY = "refund_only"  # 仅退款: no goods come back
    RETURN = "return"  # 退货退款: after the goods came back
    LATE_PAYMENT = "late_payment"  # money that arrived after cancellation or the deadline


class ReturnStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    SHIPPED = "shipped"  # the customer handed the goods to a carrier
    RECEIVED = "received"  # the warehouse checked every unit
    REFUNDED = "refunded"


class RefundRecord(Value):
    """One refund in an order's history, as the payment provider issued it."""

    refund_id: str
    kind: RefundKind
    amount: int
    reason: str
    #: line_no → (units, amount) of goods refunded; empty for a late payment.
    lines: dict[int, tuple[int, int]]
    freight: int
    return_id: UUID | None
    issued_at: datetime


class ReturnCase(Value):
    """A return request (退货) and how far it got."""

    return_id: UUID
    lines: LineUnits
    reason: str
    status: ReturnStatus
    requested_at: datetime
    shipment_id: UUID | None = None
    sellable: LineUnits = {}
    damaged: LineUnits = {}
    refund_id: str | None = None
    rejection: str | None = None

    @property
    def is_open(self) -> bool:
        """Still waiting on someone: not rejected and not refunded yet."""
        return self.status not in (ReturnStatus.REJECTED, ReturnStatus.REFUNDED)

    def require(self, status: ReturnStatus, action: str) -> None:
        """Refuse ``action`` unless the return is at ``status``."""
        if self.status is not status:
            raise IllegalTransition(
                f"return {self.return_id} is {self.status.value}; only a {status.value} return can {action}"
            )


class RefundPlan(Value):
    """What a refund would give back, and which units it settles, before it is issued."""

    kind: RefundKind
    lines: dict[int, tuple[int, int]]
    freight: int = 0
    #: Units taken out of parcels that have not left (their reservations are released).
    withdrawn: ParcelUnits = {}
    #: Units of parcels reported lost or refused.
    lost: ParcelUnits = {}
    #: Delivered units the customer keeps (e.g. a missing item).
    kept: LineUnits = {}
    return_id: UUID | None = None

    @property
    def amount(self) -> int:
        return sum(amount for _, amount in self.lines.values()) + self.freight


class LineRefundable(Value):
    """One line's money and units, from the order's history."""

    line_no: int
    sku_id: str
    quantity: int
    net: int
    refunded_units: int
    refunded_amount: int
    #: Units that a refund-only can settle now: not dispatched, lost, or delivered and kept.
    refundable_now: int = Field(ge=0)
    not_dispatched: int
    on_the_way: int
    lost: int
    #: Delivered units that can still be returned or refunded.
    delivered: int
    returning: int

    @property
    def refundable_amount(self) -> int:
        """What is still owed back for this line if every remaining unit is refunded."""
        return self.net - self.refunded_amount


class RefundableSummary(Value):
    order_id: UUID
    paid: int
    refunded: int
    freight: int
    freight_refunded: int
    lines: tuple[LineRefundable, ...]

    @property
    def refundable_amount(self) -> int:
        """Goods money not refunded yet (freight comes back only with a whole refund before dispatch)."""
        return sum(line.refundable_amount for line in self.lines)


class OrderFacts(Protocol):
    """What the unit ledger reads of an order: the Order aggregate's state."""

    id: UUID
    lines: tuple[OrderLine, ...]
    freight: int
    paid: int
    refunded: int
    freight_refunded: int
    delivered_at: datetime | None
    #: How far each planned parcel got, and what it still carries.
    shipments: dict[UUID, ShipmentProgress]
    parcels: ParcelUnits
    refunded_units: LineUnits
    refunded_amounts: dict[int, int]
    #: Units of lost parcels, and delivered units kept, that were refunded.
    lost_refunded: ParcelUnits
    kept_refunded: LineUnits
    returns: dict[UUID, ReturnCase]
    refunds: dict[str, RefundRecord]

    @property
    def ever_dispatched(self) -> bool: ...

    def line(self, line_no: int) -> OrderLine: ...


class UnitLedger:
    """An order's units, line by line and parcel by parcel, and what refunding them costs."""

    def __init__(self, order: OrderFacts) -> None:
        self.order = order

    # -- counting units --------------------------------------------------------------

    def parcels_in(self, line_no: int, progress: ShipmentProgress) -> list[tuple[UUID, int]]:
        """The line's units by parcel, in the parcels that got to ``progress``."""
        o = self.order
        return [
            (sid, units[line_no])
            for sid, units in o.parcels.items()
            if o.shipments[sid] is progress and units.get(line_no)
        ]

    def units_in(self, line_no: int, progress: ShipmentProgress) -> int:
        return sum(units for _, units in self.parcels_in(line_no, progress))

    def lost_open(self, line_no: int) -> list[tuple[UUID, int]]:
        """Units of lost parcels not refunded yet, by parcel."""
        found = []
        for sid, units in self.parcels_in(line_no, ShipmentProgress.FAILED):
            left = units - self.order.lost_refunded.get(sid, {}).get(line_no, 0)
            if left:
                found.append((sid, left))
        return found

    def delivered_open(self, line_no: int) -> int:
        """Delivered units neither refunded while kept nor claimed by a return (rejected ones excepted)."""
        o = self.order
        claimed = sum(
            case.lines.get(line_no, 0) for case in o.returns.values() if case.status is not ReturnStatus.REJECTED
        )
        return self.units_in(line_no, ShipmentProgress.DELIVERED) - o.kept_refunded.get(line_no, 0) - claimed

    def returning(self, line_no: int) -> int:
        """Units of the line in returns still open (requested up to received)."""
        return sum(case.lines.get(line_no, 0) for case in self.order.returns.values() if case.is_open)

    def refundable_now(self, line_no: int) -> int:
        planned = self.units_in(line_no, ShipmentProgress.PLANNED)
        return planned + sum(n for _, n in self.lost_open(line_no)) + self.delivered_open(line_no)

    def summary(self) -> RefundableSummary:
        """Each line's net paid, refunded and still refundable."""
        o = self.order
        return RefundableSummary(
            order_id=o.id,
            paid=o.paid,
            refunded=o.refunded,
            freight=o.freight,
            freight_refunded=o.freight_refunded,
            lines=tuple(
                LineRefundable(
                    line_no=line.line_no,
                    sku_id=line.sku.sku_id,
                    quantity=line.quantity,
                    net=line.net,
                    refunded_units=o.refunded_units.get(line.line_no, 0),
                    refunded_amount=o.refunded_amounts.get(line.line_no, 0),
                    refundable_now=self.refundable_now(line.line_no),
                    not_dispatched=self.units_in(line.line_no, ShipmentProgress.PLANNED),
                    on_the_way=self.units_in(line.line_no, ShipmentProgress.DISPATCHED),
                    lost=sum(units for _, units in self.lost_open(line.line_no)),
                    delivered=self.delivered_open(line.line_no),
                    returning=self.returning(line.line_no),
                )
                for line in o.lines
            ),
        )

    # -- refunds -----------------------------------------------------------------------

    def earlier_refund(
        self, refund_id: str, kind: RefundKind, units: LineUnits, return_id: UUID | None = None
    ) -> RefundRecord | None:
        """The refund already issued under ``refund_id``, if this is the same request again.

        The same id for different units is a mistake the provider would not make:
        it is refused rather than silently answered with the old refund.
        """
        record = self.order.refunds.get(refund_id)
        if record is None:
            return None
        same = (
            record.kind is kind
            and {no: n for no, (n, _) in record.lines.items()} == units
            and record.return_id == return_id
        )
        if not same:
            raise RefundRefused(f"refund {refund_id} was already issued on order {self.order.id} for other units")
        return record

    def plan_refund_only(self, units: LineUnits, from_shipment: UUID | None = None) -> RefundPlan:
        """Refund only (仅退款): price ``units`` by line and decide which units they settle.

        Units still in parcels that have not left are taken first (the last parcel
        first, so earlier parcels stay whole), then units of lost parcels, then
        delivered units the customer keeps.  ``from_shipment`` takes them from that one
        parcel only (say, the parcel that was lost).  Units on their way cannot be
        refunded until they are delivered or reported lost.
        """
        if from_shipment is not None and from_shipment not in self.order.shipments:
            raise RefundRefused(f"shipment {from_shipment} does not belong to order {self.order.id}")

        def only_chosen(parcels: list[tuple[UUID, int]]) -> list[tuple[UUID, int]]:
            return [(sid, n) for sid, n in parcels if from_shipment in (None, sid)]

        withdrawn: ParcelUnits = {}
        lost: ParcelUnits = {}
        kept: LineUnits = {}
        shortfalls = []
        for line_no in sorted(units):
            self._line_or(RefundRefused, line_no)
            wanted = units[line_no]
            planned_last_first = reversed(only_chosen(self.parcels_in(line_no, ShipmentProgress.PLANNED)))
            for sid, n in _take(planned_last_first, wanted):
                withdrawn.setdefault(sid, {})[line_no] = n
                wanted -= n
            for sid, n in _take(only_chosen(self.lost_open(line_no)), wanted):
                lost.setdefault(sid, {})[line_no] = n
                wanted -= n
            keepable = self.delivered_open(line_no)
            if from_shipment is not None:
                in_parcel = only_chosen(self.parcels_in(line_no, ShipmentProgress.DELIVERED))
                keepable = min(keepable, sum(n for _, n in in_parcel))
            if kept_units := min(wanted, keepable):
                kept[line_no] = kept_units
                wanted -= kept_units
            if wanted:
                shortfalls.append(self._shortfall(line_no, units[line_no], from_shipment))
        if shortfalls:
            raise RefundRefused("; ".join(shortfalls), order_id=str(self.order.id))
        return self._priced(RefundKind.REFUND_ONLY, units, withdrawn=withdrawn, lost=lost, kept=kept)

    def plan_return_refund(self, case: ReturnCase) -> RefundPlan:
        """The refund of a received return: its units, priced from the order's history."""
        if case.status is not ReturnStatus.RECEIVED:
            raise RefundRefused(
                f"return {case.return_id} is {case.status.value}; it is refunded once the warehouse has received it"
            )
        return self._priced(RefundKind.RETURN, case.lines, return_id=case.return_id)

    def require_issuable(self, refund_id: str, plan: RefundPlan) -> None:
        """A refund id is issued once, and refunds never exceed what was paid."""
        o = self.order
        if refund_id in o.refunds:
            raise RefundRefused(f"refund {refund_id} was already issued on order {o.id}")
        if o.refunded + plan.amount > o.paid:
            raise RefundRefused(
                f"order {o.id} was paid {o.paid} and has refunded {o.refunded}; "
                f"{plan.amount} more would exceed what was paid"
            )

    def _priced(self, kind: RefundKind, units: LineUnits, **settles: Any) -> RefundPlan:
        """Price units by the unit-refund formula; freight only for a whole refund before dispatch."""
        o = self.order
        lines = {}
        for line_no in sorted(units):
            line = o.line(line_no)
            before = o.refunded_units.get(line_no, 0)
            lines[line_no] = (units[line_no], unit_refund(line.net, line.quantity, before, units[line_no]))
        refunds_everything = all(
            o.refunded_units.get(line.line_no, 0) + units.get(line.line_no, 0) == line.quantity for line in o.lines
        )
        freight = o.freight if refunds_everything and not o.ever_dispatched else 0
        return RefundPlan(kind=kind, lines=lines, freight=freight, **settles)

    def _shortfall(self, line_no: int, wanted: int, from_shipment: UUID | None) -> str:
        line = self.order.line(line_no)
        left = line.quantity - self.order.refunded_units.get(line_no, 0)
        where = f" from shipment {from_shipment}" if from_shipment else ""
        message = (
            f"line {line_no} (sku {line.sku.sku_id}): {wanted} unit(s) requested{where}, "
            f"{self.refundable_now(line_no)} can be refunded now ({left} of {line.quantity} not refunded yet"
        )
        on_the_way = self.units_in(line_no, ShipmentProgress.DISPATCHED)
        returning = self.returning(line_no)
        if on_the_way:
            message += f"; {on_the_way} on the way, refundable once delivered or reported lost"
        if returning:
            message += f"; {returning} in an open return, refunded when it is received"
        return message + ")"

    # -- returns -----------------------------------------------------------------------

    def require_returnable(self, units: LineUnits, window: timedelta, now: datetime) -> None:
        """Only delivered units not claimed yet can be returned, within the after-sales window."""
        o = self.order
        if o.delivered_at is not None and now >= o.delivered_at + window:
            raise ReturnRefused(
                f"the after-sales window of order {o.id} ended at {o.delivered_at + window:%Y-%m-%d %H:%M}"
            )
        shortfalls = []
        for line_no in sorted(units):
            line = self._line_or(ReturnRefused, line_no)
            returnable = self.delivered_open(line_no)
            if units[line_no] > returnable:
                shortfalls.append(
                    f"line {line_no} (sku {line.sku.sku_id}) has {returnable} delivered unit(s) that can be "
                    f"returned, {units[line_no]} requested"
                    f" ({self.units_in(line_no, ShipmentProgress.PLANNED)} not dispatched, "
                    f"{self.units_in(line_no, ShipmentProgress.DISPATCHED)} on the way)"
                )
        if shortfalls:
            raise ReturnRefused("; ".join(shortfalls), order_id=str(o.id))

    def return_parcel(self, case: ReturnCase) -> UUID:
        """The parcel a return goes back through: the first delivered parcel carrying any of
        its lines.  The goods go back to the warehouse that sent that parcel."""
        o = self.order
        for sid, units in o.parcels.items():
            if o.shipments[sid] is ShipmentProgress.DELIVERED and any(no in units for no in case.lines):
                return sid
        # A return is requested only for delivered units, so this is never reached.
        raise NotFound(f"return {case.return_id} names no delivered parcel of order {o.id}")

    def _line_or(self, refusal: type[RefundRefused | ReturnRefused], line_no: int) -> OrderLine:
        try:
            return self.order.line(line_no)
        except IllegalTransition:
            raise refusal(f"order {self.order.id} has no line {line_no}") from None


def _take(sources: Iterable[tuple[UUID, int]], wanted: int) -> list[tuple[UUID, int]]:
    """Units from the sources in order, until ``wanted`` are taken."""
    taken = []
    for sid, units in sources:
        if wanted <= 0:
            break
        n = min(units, wanted)
        taken.append((sid, n))
        wanted -= n
    return taken
