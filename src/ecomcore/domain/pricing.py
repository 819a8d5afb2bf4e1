"""Pure money rules of a checkout: apportionment, coupons, promotions, freight.

No I/O and no floats: amounts are ints in minor units (fen, cents), percentages are
basis points (1500 = 15%).  Everything here is deterministic so that the amounts an
order records can be explained and re-checked exactly later (spec §3, §5.3, §5.4).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import Field, PositiveInt, model_validator

from ecomcore.domain.errors import CouponNotUsable
from ecomcore.domain.money import Amount
from ecomcore.domain.values import BoundedAmount, PositiveBoundedAmount, Value

#: ``CouponTerms.funding`` of a coupon the platform pays for (平台券).
PLATFORM = "platform"

# Strict ints keep floats (and bools) out of money and percentages even where a field
# may be negative or absent before the model validator has had its say.
_StrictInt = Annotated[int, Field(strict=True)]
_Id = Annotated[str, Field(min_length=1)]

__all__ = [
    "PLATFORM",
    "AppliedCoupon",
    "AppliedPromotion",
    "CheckoutPrice",
    "CouponKind",
    "CouponSlots",
    "CouponTerms",
    "FreightBasis",
    "FreightTemplate",
    "LinePrice",
    "MerchantCart",
    "OrderPrice",
    "PricedItem",
    "PromotionTerms",
    "PromotionTier",
    "Scope",
    "apportion",
    "best_promotion",
    "percent_of",
    "price_checkout",
    "unit_refund",
]


# --------------------------------------------------------------------------- arithmetic


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` by the largest remainder method.

    The parts always sum exactly to ``total``; the units left over after flooring go to
    the largest remainders, ties to the earlier index.  Each part lies between the
    floor and the ceiling of its exact share, so a part never exceeds its weight when
    ``total <= sum(weights)``.
    """
    if total < 0:
        raise ValueError(f"cannot apportion a negative total ({total})")
    if any(weight < 0 for weight in weights):
        raise ValueError(f"apportionment weights must be non-negative, got {list(weights)}")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total != 0:
            raise ValueError(f"cannot apportion {total} over weights that sum to zero")
        return [0] * len(weights)

    # Exact shares are total*w/W; comparing the integer remainders total*w % W ranks
    # the fractional parts exactly, which floats could not do for large amounts.
    floors = [total * weight // weight_sum for weight in weights]
    remainders = [total * weight % weight_sum for weight in weights]
    left_over = total - sum(floors)
    by_largest_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for index in by_largest_remainder[:left_over]:
        floors[index] += 1
    return floors


def percent_of(amount: int, basis_points: int) -> int:
    """``amount × basis_points / 10000``, rounded half up to the minor unit."""
    if amount < 0 or basis_points < 0:
        raise ValueError(f"percent_of needs non-negative inputs, got {amount} and {basis_points} bp")
    return (amount * basis_points * 2 + 10_000) // 20_000


def unit_refund(net: int, units: int, refunded_before: int, refunding: int) -> int:
    """What refunding ``refunding`` more of a line's ``units`` gives back (spec §3).

    ``floor(net·(r+k)/n) − floor(net·r/n)``: any sequence of partial refunds that ends
    with every unit refunded sums exactly to the line's net amount.
    """
    if units <= 0:
        raise ValueError(f"a line has at least one unit, got {units}")
    if net < 0 or refunded_before < 0 or refunding < 0:
        raise ValueError(
            f"unit_refund needs non-negative amounts, got net={net}, "
            f"refunded_before={refunded_before}, refunding={refunding}"
        )
    if refunded_before + refunding > units:
        raise ValueError(
            f"cannot refund {refunding} more of {units} units, {refunded_before} already refunded"
        )
    refunded_after = refunded_before + refunding
    return net * refunded_after // units - net * refunded_before // units


# --------------------------------------------------------------------------- goods


class Scope(Value):
    """Which goods a coupon or promotion applies to: all goods, or listed ones minus exclusions."""

    sku_ids: tuple[str, ...] = ()
    spu_ids: tuple[str, ...] = ()
    category_ids: tuple[str, ...] = ()
    brand_ids: tuple[str, ...] = ()
    excluded_sku_ids: tuple[str, ...] = ()
    excluded_spu_ids: tuple[str, ...] = ()
    excluded_category_ids: tuple[str, ...] = ()
    excluded_brand_ids: tuple[str, ...] = ()

    @property
    def is_all_goods(self) -> bool:
        return not (self.sku_ids or self.spu_ids or self.category_ids or self.brand_ids)

    def covers(self, item: PricedItem) -> bool:
        if self._excludes(item):
            return False
        return self.is_all_goods or self._includes(item)

    def overlaps(self, other: Scope) -> bool:
        """Whether some item could be covered by both; True unless provably disjoint."""
        if self.is_all_goods or other.is_all_goods:
            return True
        if self._lists_only_skus() and other._lists_only_skus():
            shared = set(self.sku_ids) & set(other.sku_ids)
            return bool(shared - set(self.excluded_sku_ids) - set(other.excluded_sku_ids))
        # SPUs, categories and brands cannot be compared without the catalogue.
        return True

    def _includes(self, item: PricedItem) -> bool:
        return _lists(item, self.sku_ids, self.spu_ids, self.brand_ids, self.category_ids)

    def _excludes(self, item: PricedItem) -> bool:
        return _lists(
            item, self.excluded_sku_ids, self.excluded_spu_ids, self.excluded_brand_ids, self.excluded_category_ids
        )

    def _lists_only_skus(self) -> bool:
        return bool(self.sku_ids) and not (self.spu_ids or self.category_ids or self.brand_ids)


def _lists(
    item: PricedItem,
    sku_ids: tuple[str, ...],
    spu_ids: tuple[str, ...],
    brand_ids: tuple[str, ...],
    category_ids: tuple[str, ...],
) -> bool:
    """Whether the item is named by SKU, SPU, brand or category in these lists.

    category_path runs root..leaf, so naming a parent category names its descendants.
    """
    return (
        item.sku_id in sku_ids
        or item.spu_id in spu_ids
        or item.brand_id in brand_ids
        or any(category in category_ids for category in item.category_path)
    )


class PricedItem(Value):
    """One cart line as pricing sees it: a snapshot of the SKU and the quantity bought."""

    key: _Id
    sku_id: _Id
    spu_id: _Id
    merchant_id: _Id
    category_path: tuple[str, ...]
    brand_id: str
    unit_price: Amount
    quantity: PositiveInt
    weight_g: Amount

    @property
    def gross(self) -> int:
        return self.unit_price * self.quantity


# --------------------------------------------------------------------------- coupons


class CouponKind(StrEnum):
    CASH = "cash"  # 现金券: fixed amount off, no threshold
    THRESHOLD = "threshold"  # 满减券: spend X, get Y off
    PERCENTAGE = "percentage"  # 折扣券: Z% off, optional cap


class CouponTerms(Value):
    """What a coupon gives, on which goods, and who pays for it.

    Coupon events record these terms, so their amounts are bounded where a campaign is
    created (``CreateCampaign``), not here: recorded history must always load.
    """

    kind: CouponKind
    amount_off: _StrictInt | None = None
    threshold: _StrictInt = 0
    percent_off_bp: _StrictInt | None = None
    cap: _StrictInt | None = None
    scope: Scope = Scope()
    funding: _Id = PLATFORM

    @model_validator(mode="after")
    def _terms_fit_kind(self) -> CouponTerms:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"inconsistent {self.kind} coupon terms: " + "; ".join(problems))
        return self

    def _problems(self) -> Iterable[str]:
        if self.threshold < 0:
            yield f"threshold must be >= 0, got {self.threshold}"
        if self.kind is CouponKind.PERCENTAGE:
            yield from self._percentage_problems()
            return
        if self.amount_off is None or self.amount_off <= 0:
            yield f"amount_off must be > 0, got {self.amount_off}"
        if self.percent_off_bp is not None or self.cap is not None:
            yield "percent_off_bp and cap belong to percentage coupons only"
        if self.kind is CouponKind.CASH and self.threshold != 0:
            yield f"a cash coupon has no threshold, got {self.threshold}"
        if self.kind is CouponKind.THRESHOLD and self.threshold <= 0:
            yield f"a threshold coupon needs a threshold > 0, got {self.threshold}"

    def _percentage_problems(self) -> Iterable[str]:
        if self.amount_off is not None:
            yield "a percentage coupon has no amount_off"
        if self.percent_off_bp is None or not 1 <= self.percent_off_bp <= 10_000:
            yield f"percent_off_bp must be within 1..10000, got {self.percent_off_bp}"
        if self.cap is not None and self.cap <= 0:
            yield f"cap must be > 0 when given, got {self.cap}"

    @property
    def is_platform(self) -> bool:
        return self.funding == PLATFORM

    def discount_on(self, eligible_amount: int) -> int:
        """The discount on ``eligible_amount``; never more than the amount itself."""
        if eligible_amount < 0:
            raise ValueError(f"eligible amount cannot be negative, got {eligible_amount}")
        if eligible_amount == 0 or eligible_amount < self.threshold:
            return 0
        if self.kind is CouponKind.PERCENTAGE:
            assert self.percent_off_bp is not None  # guaranteed by the validator
            discount = percent_of(eligible_amount, self.percent_off_bp)
            if self.cap is not None:
                discount = min(discount, self.cap)
        else:
            assert self.amount_off is not None  # guaranteed by the validator
            discount = self.amount_off
        return min(discount, eligible_amount)


# --------------------------------------------------------------------------- promotions


class PromotionTier(Value):
    threshold: PositiveBoundedAmount
    amount_off: PositiveBoundedAmount


class PromotionTerms(Value):
    """A merchant's automatic tiered spend-threshold promotion (满减); the best tier wins."""

    merchant_id: _Id
    tiers: tuple[PromotionTier, ...] = Field(min_length=1)
    scope: Scope = Scope()
    exclusive: bool = True

    def discount_on(self, eligible_amount: int) -> int:
        if eligible_amount < 0:
            raise ValueError(f"eligible amount cannot be negative, got {eligible_amount}")
        reached = [tier.amount_off for tier in self.tiers if tier.threshold <= eligible_amount]
        return min(max(reached, default=0), eligible_amount)


# --------------------------------------------------------------------------- freight


class FreightBasis(StrEnum):
    WEIGHT = "weight"
    COUNT = "count"


class FreightTemplate(Value):
    """A merchant's freight template (运费模板): a first unit, then per started extra unit."""

    basis: FreightBasis = FreightBasis.WEIGHT
    first_unit: PositiveInt = 1000
    first_fee: BoundedAmount
    additional_unit: PositiveInt = 1000
    additional_fee: BoundedAmount
    free_threshold: BoundedAmount | None = None

    def fee(self, *, weight_g: int, item_count: int, goods_after_discounts: int) -> int:
        if weight_g < 0 or item_count < 0:
            raise ValueError(f"weight and item count cannot be negative ({weight_g} g, {item_count})")
        if item_count == 0 or self._is_free_at(goods_after_discounts):
            return 0
        measure = weight_g if self.basis is FreightBasis.WEIGHT else item_count
        beyond_first = max(0, measure - self.first_unit)
        started_units = -(-beyond_first // self.additional_unit)  # ceiling: a part counts whole
        return self.first_fee + started_units * self.additional_fee

    def _is_free_at(self, goods_after_discounts: int) -> bool:
        return self.free_threshold is not None and goods_after_discounts >= self.free_threshold


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
