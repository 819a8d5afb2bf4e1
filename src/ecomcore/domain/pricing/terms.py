"""What coupons, promotions and freight templates say: their terms, scopes and the goods they apply to."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import Field, PositiveInt, model_validator

from ecomcore.domain.money import Amount
from ecomcore.domain.pricing.arithmetic import percent_of
from ecomcore.domain.values import BoundedAmount, PositiveBoundedAmount, Value

#: ``CouponTerms.funding`` of a coupon the platform pays for (平台券).
PLATFORM = "platform"

# Strict ints keep floats (and bools) out of money and percentages even where a field
# may be negative or absent before the model validator has had its say.
_StrictInt = Annotated[int, Field(strict=True)]
_Id = Annotated[str, Field(min_length=1)]


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
