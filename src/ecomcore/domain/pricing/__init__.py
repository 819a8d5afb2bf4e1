"""Pure money rules of a checkout: apportionment, coupons, promotions, freight.

No I/O and no floats: amounts are ints in minor units (fen, cents), percentages are
basis points (1500 = 15%).  Everything here is deterministic so that the amounts an
order records can be explained and re-checked exactly later (spec §3, §5.3, §5.4).
"""

from __future__ import annotations

from ecomcore.domain.pricing.arithmetic import apportion, percent_of, unit_refund
from ecomcore.domain.pricing.checkout import (
    AppliedCoupon,
    AppliedPromotion,
    CheckoutPrice,
    CouponSlots,
    LinePrice,
    MerchantCart,
    OrderPrice,
    best_promotion,
    price_checkout,
)
from ecomcore.domain.pricing.terms import (
    PLATFORM,
    CouponKind,
    CouponTerms,
    FreightBasis,
    FreightTemplate,
    PricedItem,
    PromotionTerms,
    PromotionTier,
    Scope,
)

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
