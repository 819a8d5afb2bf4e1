"""Commands: what callers ask the Shop to do, validated before anything is touched.

A command is named for what it asks, imperative and distinct from the aggregates it
acts on: ``PlaceCheckout`` places a ``Checkout``, ``PayCheckout`` pays one. Each is a
frozen :class:`~ecomcore.domain.values.Value` whose fields carry the bounds of
``ecomcore.domain.values``; :func:`validated` builds one from keyword fields or raises
``InvalidCommand``. The ``Shop`` method of the same name (``checkout`` for
``PlaceCheckout``) takes exactly these fields as keyword parameters.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ecomcore.domain.catalogue import Id, require_scope_bounded
from ecomcore.domain.checkout import CancelReason
from ecomcore.domain.coupon import IssueChannel, Validity
from ecomcore.domain.errors import InvalidCommand
from ecomcore.domain.pricing import CouponTerms
from ecomcore.domain.values import (
    LINE_MAX_LENGTH,
    MAX_AMOUNT,
    MAX_CART_LINES,
    MAX_QUANTITY,
    MAX_VALIDITY_DAYS,
    BoundedAmount,
    Line,
    Moment,
    Prose,
    Quantity,
    SingleLineText,
    StockQuantity,
    Value,
    require_moment,
)

V = TypeVar("V", bound=BaseModel)

ExternalId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
LineNo = Annotated[int, Field(ge=1, le=10_000)]
#: Units asked for by order line number, e.g. ``{1: 2, 3: 1}`` (a bounded ``LineUnits``).
RequestedUnits = Annotated[dict[LineNo, Quantity], Field(min_length=1, max_length=MAX_CART_LINES)]
Marked = Annotated[
    dict[LineNo, Annotated[int, Field(ge=0, le=MAX_QUANTITY, strict=True)]], Field(max_length=MAX_CART_LINES)
]
#: A carrier's scan status, e.g. "in transit" (a ``varchar(64)`` column).
TrackingStatus = Annotated[str, Field(min_length=1, max_length=64), SingleLineText]
#: Where a scan happened; may be empty.
TrackingLocation = Annotated[str, Field(max_length=LINE_MAX_LENGTH), SingleLineText]


def _coupon_terms_bounded(terms: CouponTerms) -> CouponTerms:
    """Coupon events record the terms unbounded (history must load): bound them here."""
    for name in ("amount_off", "threshold", "cap"):
        value = getattr(terms, name)
        if value is not None and value > MAX_AMOUNT:
            raise ValueError(f"{name} must be at most {MAX_AMOUNT}, got {value}")
    require_scope_bounded(terms.scope)
    return terms


def _validity_bounded(validity: Validity) -> Validity:
    """Campaign events record the validity as given then (history must load): bound it here."""
    require_moment("valid_from", validity.valid_from)
    require_moment("valid_until", validity.valid_until)
    if validity.days_from_issue is not None and validity.days_from_issue > MAX_VALIDITY_DAYS:
        raise ValueError(f"days_from_issue must be at most {MAX_VALIDITY_DAYS}, got {validity.days_from_issue}")
    return validity


#: Coupon terms a new campaign may have: every amount at most ``MAX_AMOUNT``, scopes bounded.
CampaignTerms = Annotated[CouponTerms, AfterValidator(_coupon_terms_bounded)]
#: A new campaign's validity: aware moments within the bounds, at most ``MAX_VALIDITY_DAYS``.
CampaignValidity = Annotated[Validity, AfterValidator(_validity_bounded)]


class Command(Value):
    """What a caller asks the Shop to do: frozen, unknown fields refused, text stripped."""

    model_config = ConfigDict(str_strip_whitespace=True)


def validated(command_type: type[V], **fields: Any) -> V:
    """``command_type`` (a command or a catalogue value) built from ``fields``.

    Raises ``InvalidCommand`` (code ``invalid_command``) naming every problem, before
    anything is loaded or stored.
    """
    try:
        return command_type.model_validate(fields)
    except ValidationError as error:
        raise InvalidCommand(command_type.__name__, error.errors(include_url=False, include_context=False)) from None


class SetUpStock(Command):
    sku_id: Id
    warehouse_id: Id
    safety_stock: StockQuantity = 0
    reorder_quantity: StockQuantity = 0


class ReceiveStock(Command):
    sku_id: Id
    warehouse_id: Id
    quantity: Quantity
    reference: Line


class CountStock(Command):
    sku_id: Id
    warehouse_id: Id
    counted_quantity: StockQuantity
    reason: Prose = "stocktake"


class WriteOffStock(Command):
    sku_id: Id
    warehouse_id: Id
    quantity: Quantity
    reason: Prose


class CreateCampaign(Command):
    name: Line
    terms: CampaignTerms
    claim_starts_at: Moment
    claim_ends_at: Moment
    validity: CampaignValidity
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


def _lines_bounded(items: tuple[CartItem, ...]) -> tuple[CartItem, ...]:
    """Items of one SKU become one order line: its units are bounded like an item's."""
    units: dict[str, int] = {}
    for item in items:
        units[item.sku_id] = units.get(item.sku_id, 0) + item.quantity
    over = sorted(sku_id for sku_id, n in units.items() if n > MAX_QUANTITY)
    if over:
        raise ValueError(f"at most {MAX_QUANTITY} units of one SKU per cart; too many of {', '.join(over)}")
    return items


#: A cart: 1 to ``MAX_CART_LINES`` items, at most ``MAX_QUANTITY`` units of each SKU.
Cart = Annotated[
    tuple[CartItem, ...], Field(min_length=1, max_length=MAX_CART_LINES), AfterValidator(_lines_bounded)
]


class PlaceCheckout(Command):
    customer_id: Id
    items: Cart
    merchant_coupon_ids: tuple[UUID, ...] = Field((), max_length=50)
    platform_coupon_id: UUID | None = None
    shipping_address: Prose
    #: Retrying a checkout with the same request id returns the first checkout.
    client_request_id: ExternalId | None = None

    @model_validator(mode="after")
    def _distinct_coupons(self) -> PlaceCheckout:
        if len(set(self.merchant_coupon_ids)) != len(self.merchant_coupon_ids):
            raise ValueError("a coupon is listed twice")
        return self


class RecommendCoupons(Command):
    customer_id: Id
    items: Cart


class PayCheckout(Command):
    checkout_id: UUID
    payment_id: ExternalId
    amount: BoundedAmount
    provider_txn: ExternalId


class CancelCheckout(Command):
    checkout_id: UUID
    reason: CancelReason = CancelReason.CUSTOMER


class DispatchShipment(Command):
    shipment_id: UUID
    carrier: Line
    tracking_number: ExternalId


class UpdateTracking(Command):
    shipment_id: UUID
    occurred_at: Moment
    status: TrackingStatus
    location: TrackingLocation = ""


class DeliverShipment(Command):
    shipment_id: UUID


class ReportDeliveryFailure(Command):
    shipment_id: UUID
    reason: Prose


class ConfirmReceipt(Command):
    order_id: UUID
    customer_id: Id


class RefundOnly(Command):
    """仅退款: refund units without goods coming back (not dispatched yet, lost, or missing)."""

    order_id: UUID
    refund_id: ExternalId  # the payment provider's refund id
    lines: RequestedUnits
    reason: Prose
    #: Take the units from this parcel only (e.g. the one that was lost); by default
    #: units not dispatched go first, then lost ones, then delivered ones.
    shipment_id: UUID | None = None


class RequestReturn(Command):
    order_id: UUID
    customer_id: Id
    lines: RequestedUnits
    reason: Prose
    #: Retrying with the same request id names the same return.
    request_id: ExternalId | None = None


class ApproveReturn(Command):
    order_id: UUID
    return_id: UUID


class RejectReturn(Command):
    order_id: UUID
    return_id: UUID
    reason: Prose


class ShipReturn(Command):
    order_id: UUID
    return_id: UUID
    carrier: Line
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

