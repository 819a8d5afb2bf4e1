"""Pricing a checkout: promotion, then merchant coupon, then platform coupon, then freight (spec §5.3)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Protocol

from pydantic import Field, model_validator

from ecomcore.domain.errors import CouponNotUsable
from ecomcore.domain.money import Amount
from ecomcore.domain.pricing.arithmetic import apportion
from ecomcore.domain.pricing.terms import CouponTerms, FreightTemplate, PricedItem, PromotionTerms
from ecomcore.domain.values import Value

_Id = Annotated[str, Field(min_length=1)]


# --------------------------------------------------------------------------- checkout input


class AppliedCoupon(Value):
    coupon_id: _Id
    terms: CouponTerms


class AppliedPromotion(Value):
    promotion_id: _Id
    terms: PromotionTerms


class MerchantCart(Value):
    """One merchant's part of a checkout, which becomes one Order."""

    merchant_id: _Id
    items: tuple[PricedItem, ...] = Field(min_length=1)
    promotion: AppliedPromotion | None = None
    coupon: AppliedCoupon | None = None
    freight: FreightTemplate | None = None

    @model_validator(mode="after")
    def _items_belong_here(self) -> MerchantCart:
        foreign = [item.key for item in self.items if item.merchant_id != self.merchant_id]
        if foreign:
            raise ValueError(f"items {foreign} are not sold by merchant {self.merchant_id}")
        _require_unique_keys(self.items)
        return self


class PromotionOffer(Protocol):
    """A promotion as the catalogue offers it (``ecomcore.domain.catalogue.Promotion``)."""

    @property
    def promotion_id(self) -> str: ...
    @property
    def terms(self) -> PromotionTerms: ...
    def is_active(self, now: datetime) -> bool: ...


def best_promotion(
    offers: Iterable[PromotionOffer], items: Sequence[PricedItem], now: datetime
) -> AppliedPromotion | None:
    """At most one automatic promotion per merchant order (spec §5.3): of the offers active
    now, the one worth most on ``items``, ties to the lower id; none if none is worth anything."""
    worth: list[tuple[int, str, PromotionOffer]] = []
    for offer in offers:
        if offer.is_active(now):
            eligible = sum(item.gross for item in items if offer.terms.scope.covers(item))
            discount = offer.terms.discount_on(eligible)
            if discount:
                worth.append((-discount, offer.promotion_id, offer))
    if not worth:
        return None
    _, promotion_id, best = min(worth, key=lambda found: found[:2])
    return AppliedPromotion(promotion_id=promotion_id, terms=best.terms)


class CouponSlots(Value):
    """The coupons a customer chose for a checkout, each in its slot (spec §5.3): per
    merchant order at most one coupon of that merchant, per checkout at most one platform
    coupon.  Whether a coupon's terms let it apply is ``price_checkout``'s to decide."""

    merchant: dict[str, AppliedCoupon] = {}
    platform: AppliedCoupon | None = None

    @classmethod
    def fill(
        cls,
        merchant_coupons: Iterable[AppliedCoupon],
        platform_coupon: AppliedCoupon | None,
        merchants: Collection[str],
    ) -> CouponSlots:
        """Put each merchant coupon in the slot of the merchant that funds it (one of
        ``merchants``, those with goods in the cart) and the platform coupon in its own."""
        slots: dict[str, AppliedCoupon] = {}
        for coupon in merchant_coupons:
            funding = coupon.terms.funding
            if coupon.terms.is_platform:
                raise CouponNotUsable(f"coupon {coupon.coupon_id} is a platform coupon; pass it as platform_coupon_id")
            if funding not in merchants:
                raise CouponNotUsable(
                    f"coupon {coupon.coupon_id} is for merchant {funding}, whose goods are not in the cart"
                )
            if funding in slots:
                raise CouponNotUsable(f"only one coupon of merchant {funding} can be used per order")
            slots[funding] = coupon
        return cls(merchant=slots, platform=platform_coupon)


def _require_unique_keys(items: Iterable[PricedItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise ValueError(f"line key {item.key!r} appears more than once in the checkout")
        seen.add(item.key)


# --------------------------------------------------------------------------- checkout result


class LinePrice(Value):
    """One line's gross, its share of each discount, and what is left to pay for it."""

    key: str
    gross: Amount
    promotion_discount: Amount
    merchant_coupon_discount: Amount
    platform_coupon_discount: Amount
    net: Amount

    @model_validator(mode="after")
    def _net_is_gross_minus_shares(self) -> LinePrice:
        shares = self.promotion_discount + self.merchant_coupon_discount + self.platform_coupon_discount
        if self.net != self.gross - shares:
            raise ValueError(f"line {self.key}: net {self.net} != gross {self.gross} - discounts {shares}")
        return self


class OrderPrice(Value):
    """The price of one merchant order; its totals are the sums of its lines."""

    merchant_id: str
    lines: tuple[LinePrice, ...]
    promotion_id: str | None
    merchant_coupon_id: str | None
    gross: Amount
    promotion_discount: Amount
    merchant_coupon_discount: Amount
    platform_coupon_discount: Amount
    goods_net: Amount
    freight: Amount
    payable: Amount

    @model_validator(mode="after")
    def _totals_match_lines(self) -> OrderPrice:
        for total in ("gross", "promotion_discount", "merchant_coupon_discount",
                      "platform_coupon_discount"):
            if getattr(self, total) != sum(getattr(line, total) for line in self.lines):
                raise ValueError(f"order {self.merchant_id}: {total} is not the sum of its lines")
        if self.goods_net != sum(line.net for line in self.lines):
            raise ValueError(f"order {self.merchant_id}: goods_net is not the sum of line nets")
        if self.payable != self.goods_net + self.freight:
            raise ValueError(f"order {self.merchant_id}: payable != goods_net + freight")
        return self


class CheckoutPrice(Value):
    orders: tuple[OrderPrice, ...]
    platform_coupon_id: str | None
    platform_coupon_discount: Amount
    payable: Amount

    @model_validator(mode="after")
    def _totals_match_orders(self) -> CheckoutPrice:
        if self.platform_coupon_discount != sum(o.platform_coupon_discount for o in self.orders):
            raise ValueError("platform_coupon_discount is not the sum of the orders' shares")
        if self.payable != sum(order.payable for order in self.orders):
            raise ValueError("payable is not the sum of the orders' payables")
        return self


# --------------------------------------------------------------------------- price_checkout

# Shares of one discount, by line key.
_Shares = dict[str, int]


def price_checkout(
    carts: Sequence[MerchantCart], platform_coupon: AppliedCoupon | None = None
) -> CheckoutPrice:
    """Price a checkout: per order the promotion, then the merchant coupon, then the
    platform coupon across all orders; each apportioned over its eligible lines in
    proportion to what those lines have left, so no line goes below zero (spec §3, §5.3).

    Raises ``CouponNotUsable`` when a chosen coupon cannot apply (wrong funding, no
    eligible goods, threshold not reached on the amount left after earlier steps) and
    ``ValueError`` for malformed input (a promotion of another merchant, two carts of one
    merchant, a line key used twice).
    """
    _require_one_cart_per_merchant(carts)
    _require_unique_keys(item for cart in carts for item in cart.items)
    if platform_coupon is not None:
        _require_platform_funded(platform_coupon)

    promotion_shares: _Shares = {}
    merchant_coupon_shares: _Shares = {}
    for cart in carts:
        promotion_shares |= _promotion_shares(cart)
        left_after_promotion = _left_after(cart.items, promotion_shares)
        merchant_coupon_shares |= _merchant_coupon_shares(cart, left_after_promotion)

    every_item = [item for cart in carts for item in cart.items]
    left_for_platform = _left_after(every_item, promotion_shares, merchant_coupon_shares)
    platform_shares = _platform_coupon_shares(every_item, left_for_platform, platform_coupon)

    orders = tuple(
        _order_price(cart, promotion_shares, merchant_coupon_shares, platform_shares)
        for cart in carts
    )
    return CheckoutPrice(
        orders=orders,
        platform_coupon_id=platform_coupon.coupon_id if platform_coupon else None,
        platform_coupon_discount=sum(order.platform_coupon_discount for order in orders),
        payable=sum(order.payable for order in orders),
    )


def _require_one_cart_per_merchant(carts: Sequence[MerchantCart]) -> None:
    merchants = [cart.merchant_id for cart in carts]
    repeated = sorted({m for m in merchants if merchants.count(m) > 1})
    if repeated:
        raise ValueError(f"one cart per merchant; merchants {repeated} appear more than once")


def _left_after(items: Iterable[PricedItem], *earlier: Mapping[str, int]) -> dict[str, int]:
    """What each line still costs after the earlier discounts' shares."""
    return {
        item.key: item.gross - sum(shares.get(item.key, 0) for shares in earlier)
        for item in items
    }


def _share_out(discount: int, eligible: Sequence[PricedItem], left: Mapping[str, int]) -> _Shares:
    """Apportion a discount over eligible lines in proportion to what each has left.

    Because the discount never exceeds the sum of what is left, no share exceeds its
    line's remainder (see ``apportion``), so nets stay non-negative.
    """
    parts = apportion(discount, [left[item.key] for item in eligible])
    return {item.key: part for item, part in zip(eligible, parts, strict=True)}


def _promotion_shares(cart: MerchantCart) -> _Shares:
    if cart.promotion is None:
        return {}
    terms = cart.promotion.terms
    if terms.merchant_id != cart.merchant_id:
        raise ValueError(
            f"promotion {cart.promotion.promotion_id} belongs to merchant {terms.merchant_id}, "
            f"not to merchant {cart.merchant_id}"
        )
    eligible = [item for item in cart.items if terms.scope.covers(item)]
    discount = terms.discount_on(sum(item.gross for item in eligible))
    return _share_out(discount, eligible, {item.key: item.gross for item in eligible})


def _merchant_coupon_shares(cart: MerchantCart, left: Mapping[str, int]) -> _Shares:
    if cart.coupon is None:
        return {}
    coupon = cart.coupon
    if coupon.terms.funding != cart.merchant_id:
        funder = "the platform" if coupon.terms.is_platform else f"merchant {coupon.terms.funding}"
        raise CouponNotUsable(
            f"coupon {coupon.coupon_id} is funded by {funder} and cannot be used on "
            f"merchant {cart.merchant_id}'s order",
            coupon_id=coupon.coupon_id,
            funding=coupon.terms.funding,
            merchant_id=cart.merchant_id,
        )
    return _coupon_shares(coupon, cart.items, left, where=f"merchant {cart.merchant_id}'s order")


def _require_platform_funded(coupon: AppliedCoupon) -> None:
    if not coupon.terms.is_platform:
        raise CouponNotUsable(
            f"coupon {coupon.coupon_id} is funded by merchant {coupon.terms.funding}; only a "
            f"platform coupon can apply across the checkout",
            coupon_id=coupon.coupon_id,
            funding=coupon.terms.funding,
        )


def _platform_coupon_shares(
    items: Sequence[PricedItem], left: Mapping[str, int], coupon: AppliedCoupon | None
) -> _Shares:
    if coupon is None:
        return {}
    return _coupon_shares(coupon, items, left, where="this checkout")


def _coupon_shares(
    coupon: AppliedCoupon, items: Sequence[PricedItem], left: Mapping[str, int], *, where: str
) -> _Shares:
    """Shares of a coupon the customer chose; refuses rather than silently ignoring it."""
    terms = coupon.terms
    eligible = [item for item in items if terms.scope.covers(item)]
    if not eligible:
        raise CouponNotUsable(
            f"coupon {coupon.coupon_id} covers none of the goods in {where}",
            coupon_id=coupon.coupon_id,
        )
    eligible_amount = sum(left[item.key] for item in eligible)
    if eligible_amount == 0 or eligible_amount < terms.threshold:
        raise CouponNotUsable(
            f"coupon {coupon.coupon_id} needs eligible goods of at least "
            f"{max(terms.threshold, 1)} in {where}, but only {eligible_amount} is left "
            f"after earlier discounts",
            coupon_id=coupon.coupon_id,
            threshold=terms.threshold,
            eligible_amount=eligible_amount,
        )
    return _share_out(terms.discount_on(eligible_amount), eligible, left)


def _order_price(
    cart: MerchantCart, promotion: _Shares, merchant_coupon: _Shares, platform: _Shares
) -> OrderPrice:
    lines = tuple(_line_price(item, promotion, merchant_coupon, platform) for item in cart.items)
    goods_net = sum(line.net for line in lines)
    freight = _freight(cart, goods_net)
    promotion_discount = sum(line.promotion_discount for line in lines)
    return OrderPrice(
        merchant_id=cart.merchant_id,
        lines=lines,
        # A promotion that reached no tier did nothing for this order: record none.
        promotion_id=cart.promotion.promotion_id if cart.promotion and promotion_discount else None,
        merchant_coupon_id=cart.coupon.coupon_id if cart.coupon else None,
        gross=sum(line.gross for line in lines),
        promotion_discount=promotion_discount,
        merchant_coupon_discount=sum(line.merchant_coupon_discount for line in lines),
        platform_coupon_discount=sum(line.platform_coupon_discount for line in lines),
        goods_net=goods_net,
        freight=freight,
        payable=goods_net + freight,
    )


def _line_price(
    item: PricedItem, promotion: _Shares, merchant_coupon: _Shares, platform: _Shares
) -> LinePrice:
    promotion_share = promotion.get(item.key, 0)
    merchant_share = merchant_coupon.get(item.key, 0)
    platform_share = platform.get(item.key, 0)
    return LinePrice(
        key=item.key,
        gross=item.gross,
        promotion_discount=promotion_share,
        merchant_coupon_discount=merchant_share,
        platform_coupon_discount=platform_share,
        net=item.gross - promotion_share - merchant_share - platform_share,
    )


def _freight(cart: MerchantCart, goods_net: int) -> int:
    if cart.freight is None:
        return 0
    return cart.freight.fee(
        weight_g=sum(item.weight_g * item.quantity for item in cart.items),
        item_count=sum(item.quantity for item in cart.items),
        goods_after_discounts=goods_net,
    )
