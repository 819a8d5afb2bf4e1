"""A refund explained (spec §3, §6.3, §7): "why was this refund 856 and not 857?".

Per line: what was paid (gross, each discount's share, net) and how each discount was
apportioned — by the largest remainder over its eligible lines, in proportion to what
each line had left after the earlier discounts, ties to the earlier line — then every
refund with the unit-refund formula ``floor(net·(r+k)/n) − floor(net·r/n)`` and what
remains refundable.  Everything is recomputed from the order's history and checked
against what was stored; each difference is named in ``mismatches``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ecomcore import NotFound, RefundKind
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.order import Order, OrderLine
from ecomcore.domain.pricing import PricedItem, apportion, unit_refund
from ecomcore.infrastructure.store import EventStore

APPORTION_RULE = (
    "largest remainder over the eligible lines, in proportion to what each line had left "
    "after the earlier discounts; the units left over after flooring go to the largest "
    "remainders, ties to the earlier line (spec §3)"
)
UNIT_REFUND_RULE = "floor(net·(r+k)/n) − floor(net·r/n): r units refunded before, k now, n on the line (spec §3)"

#: The discounts in the order they apply (spec §5.3), by the line field holding each share.
DISCOUNTS = ("promotion_discount", "merchant_coupon_discount", "platform_coupon_discount")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class LinePaid(Frozen):
    line_no: int
    sku_id: str
    quantity: int
    unit_price: int
    gross: int
    promotion_discount: int
    merchant_coupon_discount: int
    platform_coupon_discount: int
    net: int
    refunded_units: int
    refunded_amount: int
    remaining_units: int
    remaining_refundable: int


class ShareWorked(Frozen):
    """One line's part of a discount: ``total·weight/weights`` floored, its remainder, and
    whether it took one of the units left over."""

    order_id: UUID
    line_no: int
    sku_id: str
    weight: int
    floor: int
    remainder: int
    extra_unit: bool
    recomputed: int
    #: None for a line of another order of the checkout (a platform coupon spans them).
    stored: int | None


class DiscountApportioned(Frozen):
    source: str  # promotion | merchant_coupon | platform_coupon
    discount_id: str | None
    total: int
    weights_total: int
    eligible: str  # how the eligible lines were known
    rule: str
    shares: tuple[ShareWorked, ...]
    reproduced: bool


class LineRefunded(Frozen):
    line_no: int
    units: int
    net: int
    quantity: int
    refunded_before: int
    after: int  # floor(net·(r+k)/n)
    before: int  # floor(net·r/n)
    recomputed: int
    stored: int


class RefundWorked(Frozen):
    refund_id: str
    kind: str
    issued_at: str
    reason: str
    lines: tuple[LineRefunded, ...]
    freight_recomputed: int
    freight_stored: int
    amount_recomputed: int
    amount_stored: int


class RefundExplanation(Frozen):
    order_id: UUID
    checkout_id: UUID
    currency: str
    state: str
    paid: int
    freight: int
    goods_net: int
    refunded: int
    remaining_refundable: int
    lines: tuple[LinePaid, ...]
    discounts: tuple[DiscountApportioned, ...]
    refunds: tuple[RefundWorked, ...]
    apportion_rule: str
    unit_refund_rule: str
    mismatches: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.mismatches

    def as_json(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "consistent": self.consistent}


def explain_refunds(store: EventStore, order_id: UUID) -> RefundExplanation:
    """The order's payment and refunds, recomputed from its history; ``NotFound`` for no such order."""
    events = _events(store, order_id)
    if not events or not isinstance(events[0], Order.Placed):
        raise NotFound(f"no order with id {order_id}")
    mismatches: list[str] = []
    order: Order | None = None
    refunds: list[RefundWorked] = []
    late_unrefunded: list[int] = []
    for event in events:
        if isinstance(event, Order.LatePaymentReceived):
            late_unrefunded.append(event.amount)
        if isinstance(event, Order.RefundIssued):
            assert order is not None
            worked = _refund_worked(order, event, late_unrefunded)
            refunds.append(worked)
            mismatches += _refund_mismatches(worked)
        order = Order.replay([event], start=order)
    assert order is not None

    for line in order.lines:
        shares = line.promotion_discount + line.merchant_coupon_discount + line.platform_coupon_discount
        if line.gross != line.sku.unit_price * line.quantity:
            mismatches.append(f"line {line.line_no}: gross {line.gross} != {line.sku.unit_price} × {line.quantity}")
        if line.net != line.gross - shares:
            mismatches.append(f"line {line.line_no}: net {line.net} != gross {line.gross} − discounts {shares}")
    discounts = _discounts(store, order)
    mismatches += [
        f"{d.source} {d.discount_id}: line {s.line_no} stored {s.stored}, recomputed {s.recomputed}"
        for d in discounts
        for s in d.shares
        if s.stored is not None and s.stored != s.recomputed
    ]
    if order.goods_net + order.freight != order.payable:
        mismatches.append(f"payable {order.payable} != goods {order.goods_net} + freight {order.freight}")

    lines = tuple(
        LinePaid(
            line_no=line.line_no,
            sku_id=line.sku.sku_id,
            quantity=line.quantity,
            unit_price=line.sku.unit_price,
            gross=line.gross,
            promotion_discount=line.promotion_discount,
            merchant_coupon_discount=line.merchant_coupon_discount,
            platform_coupon_discount=line.platform_coupon_discount,
            net=line.net,
            refunded_units=order.refunded_units.get(line.line_no, 0),
            refunded_amount=order.refunded_amounts.get(line.line_no, 0),
            remaining_units=line.quantity - order.refunded_units.get(line.line_no, 0),
            remaining_refundable=line.net - order.refunded_amounts.get(line.line_no, 0),
        )
        for line in order.lines
    )
    stored_refunded = sum(r.amount_stored for r in refunds if r.kind != RefundKind.LATE_PAYMENT.value)
    if stored_refunded != order.refunded:
        mismatches.append(f"refunded total {order.refunded} != the refunds' sum {stored_refunded}")
    if order.refunded > order.paid:
        mismatches.append(f"refunded {order.refunded} exceeds what was paid, {order.paid}")
    return RefundExplanation(
        order_id=order.id,
        checkout_id=cast(UUID, order.checkout_id),
        currency=order.currency,
        state=order.state.value,
        paid=order.paid,
        freight=order.freight,
        goods_net=order.goods_net,
        refunded=order.refunded,
        remaining_refundable=sum(line.remaining_refundable for line in lines) if order.paid else 0,
        lines=lines,
        discounts=discounts,
        refunds=tuple(refunds),
        apportion_rule=APPORTION_RULE,
        unit_refund_rule=UNIT_REFUND_RULE,
        mismatches=tuple(mismatches),
    )


# --------------------------------------------------------------------------- refunds


def _refund_worked(order: Order, event: Order.RefundIssued, late_unrefunded: list[int]) -> RefundWorked:
    """The refund recomputed from the order as it stood just before it."""
    if event.kind is RefundKind.LATE_PAYMENT:
        expected = late_unrefunded.pop(0) if late_unrefunded else 0
        return RefundWorked(
            refund_id=event.refund_id, kind=event.kind.value, issued_at=event.timestamp.isoformat(),
            reason=event.reason, lines=(), freight_recomputed=0, freight_stored=event.freight,
            amount_recomputed=expected, amount_stored=event.amount,
        )
    lines = []
    for line_no, (units, stored) in sorted(event.lines.items()):
        line = order.line(line_no)
        before_units = order.refunded_units.get(line_no, 0)
        after = line.net * (before_units + units) // line.quantity
        before = line.net * before_units // line.quantity
        lines.append(
            LineRefunded(
                line_no=line_no, units=units, net=line.net, quantity=line.quantity, refunded_before=before_units,
                after=after, before=before, recomputed=unit_refund(line.net, line.quantity, before_units, units),
                stored=stored,
            )
        )
    everything = all(
        order.refunded_units.get(line.line_no, 0) + event.lines.get(line.line_no, (0, 0))[0] == line.quantity
        for line in order.lines
    )
    freight = order.freight if everything and not order.ever_dispatched else 0
    return RefundWorked(
        refund_id=event.refund_id, kind=event.kind.value, issued_at=event.timestamp.isoformat(), reason=event.reason,
        lines=tuple(lines), freight_recomputed=freight, freight_stored=event.freight,
        amount_recomputed=sum(line.recomputed for line in lines) + freight, amount_stored=event.amount,
    )


def _refund_mismatches(worked: RefundWorked) -> list[str]:
    found = [
        f"refund {worked.refund_id}: line {line.line_no} stored {line.stored}, recomputed {line.recomputed}"
        for line in worked.lines
        if line.stored != line.recomputed
    ]
    if worked.freight_stored != worked.freight_recomputed:
        found.append(
            f"refund {worked.refund_id}: freight stored {worked.freight_stored}, recomputed {worked.freight_recomputed}"
        )
    if worked.amount_stored != worked.amount_recomputed:
        found.append(
            f"refund {worked.refund_id}: amount stored {worked.amount_stored}, recomputed {worked.amount_recomputed}"
        )
    return found


# --------------------------------------------------------------------------- discounts


def _discounts(store: EventStore, order: Order) -> tuple[DiscountApportioned, ...]:
    found = []
    mine = [(order.id, line) for line in order.lines]
    if any(line.promotion_discount for line in order.lines):
        found.append(_by_shares("promotion", order.promotion_id, mine, "promotion_discount", ()))
    if order.merchant_coupon_id is not None:
        scope = _coupon_scope(store, order.merchant_coupon_id)
        found.append(
            _by_scope("merchant_coupon", order.merchant_coupon_id, mine, "merchant_coupon_discount", 1, scope, order.id)
        )
    if order.platform_coupon_id is not None:
        # A platform coupon applies across the checkout: its lines are every order's, in checkout order.
        checkout = store.load(cast(UUID, order.checkout_id))
        siblings = [
            cast(Order, store.load(oid)) if oid != order.id else order for oid in cast(Checkout, checkout).order_ids
        ]
        every = [(o.id, line) for o in siblings for line in o.lines]
        scope = _coupon_scope(store, order.platform_coupon_id)
        found.append(
            _by_scope(
                "platform_coupon", order.platform_coupon_id, every, "platform_coupon_discount", 2, scope, order.id
            )
        )
    return tuple(found)


def _coupon_scope(store: EventStore, coupon_id: UUID) -> Any:
    coupon = cast(Coupon, store.load(coupon_id))
    return coupon.terms.scope if coupon.terms is not None else None


def _left_before(line: OrderLine, steps: int) -> int:
    """What the line had left before the discount at position ``steps`` of ``DISCOUNTS``."""
    return line.gross - sum(getattr(line, field) for field in DISCOUNTS[:steps])


def _priced(line: OrderLine) -> PricedItem:
    return PricedItem(
        key=str(line.line_no), sku_id=line.sku.sku_id, spu_id=line.sku.spu_id, merchant_id=line.sku.merchant_id,
        category_path=line.sku.category_path, brand_id=line.sku.brand_id, unit_price=line.sku.unit_price,
        quantity=line.quantity, weight_g=line.sku.weight_g,
    )


def _by_scope(
    source: str,
    discount_id: UUID,
    lines: Sequence[tuple[UUID, OrderLine]],
    field: str,
    steps: int,
    scope: Any,
    order_id: UUID,
) -> DiscountApportioned:
    if scope is None:
        return _by_shares(source, str(discount_id), lines, field, ())
    eligible = [(oid, line) for oid, line in lines if scope.covers(_priced(line))]
    weights = [_left_before(line, steps) for _, line in eligible]
    return _worked(source, str(discount_id), eligible, field, weights, "the coupon's scope", order_id)


def _by_shares(
    source: str, discount_id: str | None, lines: Sequence[tuple[UUID, OrderLine]], field: str, _: tuple[()]
) -> DiscountApportioned:
    """Without the terms at hand (a promotion lives in the catalogue): the eligible lines are
    those that got a share, or, if that does not reproduce the shares, every line."""
    order_id = lines[0][0]
    index = DISCOUNTS.index(field)
    sharing = [(oid, line) for oid, line in lines if getattr(line, field)]
    attempt = _worked(
        source, discount_id, sharing, field, [_left_before(line, index) for _, line in sharing],
        "the lines that got a share", order_id,
    )
    if attempt.reproduced:
        return attempt
    return _worked(
        source, discount_id, list(lines), field, [_left_before(line, index) for _, line in lines], "every line",
        order_id,
    )


def _worked(
    source: str,
    discount_id: str | None,
    eligible: Sequence[tuple[UUID, OrderLine]],
    field: str,
    weights: list[int],
    how: str,
    order_id: UUID,
) -> DiscountApportioned:
    total = sum(getattr(line, field) for _, line in eligible)
    weights_total = sum(weights)
    parts = apportion(total, weights) if weights_total else [0] * len(weights)
    shares = []
    for (oid, line), weight, part in zip(eligible, weights, parts, strict=True):
        floor = total * weight // weights_total if weights_total else 0
        shares.append(
            ShareWorked(
                order_id=oid, line_no=line.line_no, sku_id=line.sku.sku_id, weight=weight, floor=floor,
                remainder=total * weight % weights_total if weights_total else 0, extra_unit=part > floor,
                recomputed=part, stored=getattr(line, field) if oid == order_id else None,
            )
        )
    reproduced = all(s.recomputed == getattr(line, field) for s, (_, line) in zip(shares, eligible, strict=True))
    return DiscountApportioned(
        source=source, discount_id=discount_id, total=total, weights_total=weights_total,
        eligible=how, rule=APPORTION_RULE, shares=tuple(shares), reproduced=reproduced,
    )


def _events(store: EventStore, aggregate_id: UUID) -> list[DomainEvent]:
    return list(cast("Iterable[DomainEvent]", store.events.get(aggregate_id)))
