"""Commands: what callers ask the Shop to do, validated before anything is touched."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ecomcore.domain.after_sales import RefundKind
from ecomcore.domain.catalogue import Id
from ecomcore.domain.coupon import IssueChannel, Validity
from ecomcore.domain.order import CancelReason, OrderState, RefundStatus
from ecomcore.domain.pricing import CouponTerms

Text = Annotated[str, Field(min_length=1, max_length=200)]
ExternalId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Quantity = Annotated[int, Field(gt=0, le=1_000_000, strict=True)]
LineNo = Annotated[int, Field(ge=1, le=10_000)]
#: Units by order line number, e.g. ``{1: 2, 3: 1}``.
LineUnits = Annotated[dict[LineNo, Quantity], Field(min_length=1, max_length=200)]
Marked = Annotated[dict[LineNo, Annotated[int, Field(ge=0, le=1_000_000, strict=True)]], Field(max_length=200)]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class SetUpStock(Command):
    sku_id: Id
    warehouse_id: Id
    safety_stock: int = Field(0, ge=0, strict=True)
    reorder_quantity: int = Field(0, ge=0, strict=True)


class ReceiveStock(Command):
    sku_id: Id
    warehouse_id: Id
    quantity: Quantity
    reference: Text


class CountStock(Command):
    sku_id: Id
    warehouse_id: Id
    counted_quantity: int = Field(ge=0, strict=True)
    reason: Text = "stocktake"


class WriteOffStock(Command):
    sku_id: Id
    warehouse_id: Id
    quantity: Quantity
    reason: Text


class CreateCampaign(Command):
    name: Text
    terms: CouponTerms
    claim_starts_at: AwareDatetime
    claim_ends_at: AwareDatetime
    validity: Validity
    total_quantity: Quantity
    per_customer_limit: Quantity = 1
    campaign_id: UUID | None = None

    @model_validator(mode="after")
    def _window(self) -> CreateCampaign:
        if self.claim_ends_at <= self.claim_starts_at:
            raise ValueError("claim_ends_at must be after claim_starts_at")
        return self


class IssueCoupon(Command):
    campaign_id: UUID
    customer_id: Id
    channel: IssueChannel = IssueChannel.CLAIM


class CartItem(Command):
    sku_id: Id
    quantity: Quantity


class Checkout(Command):
    customer_id: Id
    items: tuple[CartItem, ...] = Field(min_length=1, max_length=200)
    merchant_coupon_ids: tuple[UUID, ...] = Field((), max_length=50)
    platform_coupon_id: UUID | None = None
    shipping_address: Text
    #: Retrying a checkout with the same request id returns the first checkout.
    client_request_id: ExternalId | None = None

    @model_validator(mode="after")
    def _distinct_coupons(self) -> Checkout:
        if len(set(self.merchant_coupon_ids)) != len(self.merchant_coupon_ids):
            raise ValueError("a coupon is listed twice")
        return self


class RecommendCoupons(Command):
    customer_id: Id
    items: tuple[CartItem, ...] = Field(min_length=1, max_length=200)


class Pay(Command):
    checkout_id: UUID
    payment_id: ExternalId
    amount: int = Field(ge=0, strict=True)
    provider_txn: ExternalId


class Cancel(Command):
    checkout_id: UUID
    reason: CancelReason = CancelReason.CUSTOMER


class Dispatch(Command):
    shipment_id: UUID
    carrier: Text
    tracking_number: ExternalId


class UpdateTracking(Command):
    shipment_id: UUID
    occurred_at: AwareDatetime
    status: Annotated[str, Field(min_length=1, max_length=64)]
    location: Annotated[str, Field(max_length=200)] = ""


class Deliver(Command):
    shipment_id: UUID


class ReportDeliveryFailure(Command):
    shipment_id: UUID
    reason: Text


class ConfirmReceipt(Command):
    order_id: UUID
    customer_id: Id


class RefundOnly(Command):
    """仅退款: refund units without goods coming back (not dispatched yet, lost, or missing)."""

    order_id: UUID
    refund_id: ExternalId  # the payment provider's refund id
    lines: LineUnits
    reason: Text
    #: Take the units from this parcel only (e.g. the one that was lost); by default
    #: units not dispatched go first, then lost ones, then delivered ones.
    shipment_id: UUID | None = None


class RequestReturn(Command):
    order_id: UUID
    customer_id: Id
    lines: LineUnits
    reason: Text
    #: Retrying with the same request id names the same return.
    request_id: ExternalId | None = None


class ApproveReturn(Command):
    order_id: UUID
    return_id: UUID


class RejectReturn(Command):
    order_id: UUID
    return_id: UUID
    reason: Text


class ShipReturn(Command):
    order_id: UUID
    return_id: UUID
    carrier: Text
    tracking_number: ExternalId


class ReceiveReturn(Command):
    """The warehouse checks a return in: every unit is marked sellable or damaged."""

    order_id: UUID
    return_id: UUID
    sellable: Marked = {}
    damaged: Marked = {}


class RefundReturn(Command):
    order_id: UUID
    return_id: UUID
    refund_id: ExternalId


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True)


class CheckoutReceipt(Receipt):
    checkout_id: UUID
    order_ids: tuple[UUID, ...]
    payable: int
    payment_deadline: datetime


class PaymentReceipt(Receipt):
    checkout_id: UUID
    payment_id: str
    amount: int
    #: "paid", or "refunded" when the money came too late and went straight back.
    outcome: str
    order_ids: tuple[UUID, ...]
    shipment_ids: tuple[UUID, ...] = ()


class RefundReceipt(Receipt):
    order_id: UUID
    refund_id: str
    kind: RefundKind
    amount: int
    freight: int
    #: line_no → (units, amount)
    lines: dict[int, tuple[int, int]]
    order_state: OrderState
    refund_status: RefundStatus
    #: Coupons that became available again because this refund completed their orders.
    returned_coupon_ids: tuple[UUID, ...] = ()
