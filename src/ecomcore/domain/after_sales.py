"""After-sales (售后) values: refunds, return cases and what is still refundable.

The Order aggregate keeps these as its state; everything here is computed from the
order's own history, so replaying the same events always gives the same numbers.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

#: Units by line number.
LineUnits = dict[int, int]
#: Units by shipment, then by line number.
ParcelUnits = dict[UUID, LineUnits]


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


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RefundRecord(_Value):
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


class ReturnCase(_Value):
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


class RefundPlan(_Value):
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


class LineRefundable(_Value):
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


class RefundableSummary(_Value):
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
