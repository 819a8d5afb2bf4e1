"""Coupon recommendation: which of a customer's coupons to use at checkout (spec §5.3).

``recommend`` is the pure core of ``recommend_coupons(customer, cart, now)``: the caller
has already picked the customer's coupons that are usable now (state ``available``, within
their validity) and priced the carts with their automatic promotions; this module only
decides which combination to use.  It never reimplements a money rule: savings come
from ``price_checkout``, so thresholds on what is left after earlier steps, caps,
apportionment and freight are exactly as at checkout.

Decisions (each one is tested in ``tests/unit/test_recommendation.py``):

* **What is ranked.**  A combination's *saving* is the checkout's payable without any
  coupon minus its payable with the combination.  That is what the customer actually
  saves: a coupon discount that drops an order below its free-freight threshold costs
  the freight back, so a smaller coupon that keeps the freight free can save more than
  a bigger one.  ``Recommendation.coupon_discount`` still reports the coupons' own
  discount for display.
* **No coupon for nothing.**  Every chosen coupon *adds value*: removing it alone from
  the combination would make the saving strictly smaller.  Otherwise a zero-value
  coupon (or one whose discount is eaten by freight) would be locked and redeemed for
  nothing.  A combination with a coupon that adds nothing is replaced by the same
  combination without it, which saves at least as much.
* **Ties.**  Among the combinations that add value and save the most, the one whose
  coupons, each written as ``(valid_until, coupon_id)`` and sorted ascending, form the
  smallest tuple wins (lexicographic order): the combination using the coupon that
  expires first, then the lower id, then the same for the next coupon.  A tuple that is
  a prefix of another is smaller, so the empty combination wins any tie at saving 0 and
  the recommendation never spends coupons to save nothing.
* **Search.**  Exhaustive over one option per merchant (no coupon or one of its coupons)
  times one platform option (none or one platform coupon), which is exact.  Only when
  that product exceeds ``max_combinations`` is it trimmed, and this is the only place
  the search is not exhaustive: the slot with the most options repeatedly loses its
  coupon with the smallest standalone saving (saving with that coupon alone) until the
  product fits; a slot cut down to a single option keeps its best coupon rather than
  none (it is dropped again if it adds nothing).  ``Recommendation.exhaustive`` says
  whether this happened.  Two exact shortcuts keep the exhaustive search cheap: a
  combination whose upper bound (its coupons' discounts when each is used alone) is
  below the best saving found is skipped unpriced, and orders a platform coupon does
  not touch are priced once per merchant coupon rather than once per combination
  (see ``_Pricer``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated

from pydantic import AwareDatetime, Field

from ecomcore.domain.errors import CouponNotUsable
from ecomcore.domain.money import Amount
from ecomcore.domain.pricing import AppliedCoupon, CheckoutPrice, CouponTerms, MerchantCart, price_checkout
from ecomcore.domain.values import Value

__all__ = ["DEFAULT_MAX_COMBINATIONS", "CandidateCoupon", "Recommendation", "recommend"]

#: How many combinations ``recommend`` searches at most before it trims the search.
DEFAULT_MAX_COMBINATIONS = 20_000

_Id = Annotated[str, Field(min_length=1)]


class CandidateCoupon(Value):
    """One coupon the customer could use now: its terms and when it stops being valid."""

    coupon_id: _Id
    terms: CouponTerms
    valid_until: AwareDatetime

    @property
    def expiry_key(self) -> tuple[AwareDatetime, str]:
        """Sort key of the tie-break: expires first, then lower id."""
        return (self.valid_until, self.coupon_id)

    def applied(self) -> AppliedCoupon:
        return AppliedCoupon(coupon_id=self.coupon_id, terms=self.terms)


class Recommendation(Value):
    """The coupons to use and what the checkout costs with them."""

    merchant_coupons: dict[str, str]  # merchant_id -> coupon_id
    platform_coupon: str | None
    #: Payable without coupons minus payable with these (freight changes included).
    discount: Amount
    #: The coupons' own discounts (merchant coupons plus the platform coupon).
    coupon_discount: Amount
    payable: Amount
    price: CheckoutPrice
    #: False when the search had to be trimmed to ``max_combinations`` (see module doc).
    exhaustive: bool

    @property
    def coupon_ids(self) -> tuple[str, ...]:
        """Every recommended coupon id: merchant coupons in cart order, then the platform one."""
        platform = (self.platform_coupon,) if self.platform_coupon else ()
        return (*self.merchant_coupons.values(), *platform)


_Combination = frozenset[CandidateCoupon]
#: One slot's options: ``None`` is "no coupon here".
_Options = list[CandidateCoupon | None]


def recommend(
    carts: Sequence[MerchantCart],
    candidates: Iterable[CandidateCoupon],
    *,
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
) -> Recommendation:
    """The combination of ``candidates`` that saves the most on ``carts`` (see module doc).

    ``carts`` are the checkout's merchant carts with their promotions and no coupon.
    Candidates of merchants without a cart here are ignored, and so are coupons that
    cannot apply to this checkout at all.  Raises ``ValueError`` for a cart that already
    carries a coupon, a coupon id given twice, or a ``max_combinations`` below 1.
    """
    if max_combinations < 1:
        raise ValueError(f"max_combinations must be at least 1, got {max_combinations}")
    _require_no_coupons(carts)
    pricer = _Pricer(carts)
    slots = _ranked_slots(carts, _unique(candidates), pricer)
    options, exhaustive = _fit(slots, max_combinations)
    best = _best_combination(options, pricer)
    return _recommendation(best, pricer, carts, exhaustive=exhaustive)


# --------------------------------------------------------------------------- input


def _require_no_coupons(carts: Sequence[MerchantCart]) -> None:
    with_coupon = [cart.merchant_id for cart in carts if cart.coupon is not None]
    if with_coupon:
        raise ValueError(f"carts to recommend coupons for must carry none; {with_coupon} do")


def _unique(candidates: Iterable[CandidateCoupon]) -> list[CandidateCoupon]:
    candidates = list(candidates)
    ids = [candidate.coupon_id for candidate in candidates]
    repeated = sorted({coupon_id for coupon_id in ids if ids.count(coupon_id) > 1})
    if repeated:
        raise ValueError(f"coupon ids {repeated} are given more than once")
    return candidates


# --------------------------------------------------------------------------- pricing


class _Pricer:
    """Savings of combinations, each coupled part priced once with ``price_checkout``.

    A combination holds at most one coupon per merchant and one platform coupon, so
    each coupon's ``terms.funding`` says where it goes.

    Without a platform coupon the merchant orders are priced independently (promotion,
    merchant coupon and freight all stay within one order), and a platform coupon only
    touches the orders holding a line in its scope.  So a combination's saving is the
    saving of the *coupled part* (the platform coupon with the merchant coupons of the
    orders it covers, priced together) plus each other merchant coupon's saving alone.
    This prices far fewer checkouts than the combinations searched; the final choice is
    priced whole, and the property tests compare against pricing every combination whole.
    """

    def __init__(self, carts: Sequence[MerchantCart]) -> None:
        self._carts = tuple(carts)
        self._prices: dict[_Combination, CheckoutPrice | None] = {}
        self._covered: dict[CandidateCoupon, frozenset[str]] = {}
        baseline = self.price(frozenset())
        assert baseline is not None  # no coupon cannot be refused
        self._baseline_payable = baseline.payable

    def price(self, combination: _Combination) -> CheckoutPrice | None:
        """The checkout priced with these coupons, or None if one of them cannot apply."""
        if combination not in self._prices:
            self._prices[combination] = self._price_checkout(combination)
        return self._prices[combination]

    def saving(self, combination: _Combination) -> int | None:
        """Payable without coupons minus payable with these; None if they cannot apply."""
        platform = next((c for c in combination if c.terms.is_platform), None)
        covered = self._merchants_covered_by(platform)
        coupled = frozenset(c for c in combination if c is platform or c.terms.funding in covered)
        total = 0
        for part in (coupled, *(frozenset({c}) for c in combination - coupled)):
            saving = self.whole_saving(part)
            if saving is None:
                return None
            total += saving
        return total

    def upper_bound(self, combination: _Combination) -> int:
        """What the combination could save at most: its coupons' discounts when used alone.

        A merchant coupon's discount depends only on its own order; a platform coupon's
        can only shrink when merchant coupons leave less for it (every kind of discount
        grows with the eligible amount); and discounts can only add freight, never remove
        it (free freight is a threshold on the goods left).
        """
        return sum(self._alone_discount(coupon) for coupon in combination)

    def _alone_discount(self, coupon: CandidateCoupon) -> int:
        price = self.price(frozenset({coupon}))
        if price is None:
            return 0  # cannot apply; the search never offers such a coupon
        if coupon.terms.is_platform:
            return price.platform_coupon_discount
        return sum(order.merchant_coupon_discount for order in price.orders)

    def whole_saving(self, combination: _Combination) -> int | None:
        """Like ``saving``, but from pricing the whole checkout with the combination."""
        price = self.price(combination)
        return None if price is None else self._baseline_payable - price.payable

    def _merchants_covered_by(self, platform: CandidateCoupon | None) -> frozenset[str]:
        if platform is None:
            return frozenset()
        if platform not in self._covered:
            scope = platform.terms.scope
            self._covered[platform] = frozenset(
                cart.merchant_id for cart in self._carts if any(scope.covers(i) for i in cart.items)
            )
        return self._covered[platform]

    def _price_checkout(self, combination: _Combination) -> CheckoutPrice | None:
        merchant = {c.terms.funding: c.applied() for c in combination if not c.terms.is_platform}
        platform = [c.applied() for c in combination if c.terms.is_platform]
        carts = [
            cart.model_copy(update={"coupon": merchant[cart.merchant_id]})
            if cart.merchant_id in merchant else cart
            for cart in self._carts
        ]
        try:
            return price_checkout(carts, platform[0] if platform else None)
        except CouponNotUsable:
            return None


# --------------------------------------------------------------------------- search space


def _ranked_slots(
    carts: Sequence[MerchantCart], candidates: Sequence[CandidateCoupon], pricer: _Pricer
) -> list[list[CandidateCoupon]]:
    """Per merchant in cart order, then for the platform: its applicable coupons, best first.

    A coupon that cannot apply alone cannot apply in any combination: a merchant coupon
    sees only its own order, and merchant coupons only lower what a platform coupon's
    threshold is tested on.  So dropping those here loses nothing.
    """
    funders = [cart.merchant_id for cart in carts]
    slots = [
        [c for c in candidates if not c.terms.is_platform and c.terms.funding == merchant_id]
        for merchant_id in funders
    ]
    slots.append([c for c in candidates if c.terms.is_platform])
    ranked = (_by_standalone_saving(slot, pricer) for slot in slots)
    return [slot for slot in ranked if slot]


def _by_standalone_saving(coupons: Sequence[CandidateCoupon], pricer: _Pricer) -> list[CandidateCoupon]:
    """The coupons that can apply alone, largest standalone saving first, ties by expiry."""
    savings: dict[CandidateCoupon, int] = {}
    for coupon in coupons:
        saving = pricer.saving(frozenset({coupon}))
        if saving is not None:
            savings[coupon] = saving
    return sorted(savings, key=lambda coupon: (-savings[coupon], coupon.expiry_key))


def _fit(slots: list[list[CandidateCoupon]], limit: int) -> tuple[list[_Options], bool]:
    """Each slot's options, trimmed so that their product stays within ``limit``.

    Option counts include "no coupon".  While the product is too big, the slot with the
    most options (the earlier one on ties) loses its lowest-ranked coupon.  A slot cut to
    one option keeps its best coupon: forcing "no coupon" on a slot would throw away its
    best coupon for sure, while a forced coupon that adds nothing is dropped later.
    """
    counts = [len(slot) + 1 for slot in slots]
    while math.prod(counts) > limit:
        widest = max(range(len(counts)), key=lambda i: (counts[i], -i))
        counts[widest] -= 1
    # Best coupons first, so that the search meets good combinations early and its
    # bound (see ``_best_combination``) skips more of the rest.
    options: list[_Options] = [
        [slot[0]] if count == 1 else [*slot[: count - 1], None]
        for slot, count in zip(slots, counts, strict=True)
    ]
    exhaustive = all(count == len(slot) + 1 for slot, count in zip(slots, counts, strict=True))
    return options, exhaustive


def _combinations(options: list[_Options]) -> Iterator[_Combination]:
    for choice in itertools.product(*options):
        yield frozenset(coupon for coupon in choice if coupon is not None)


# --------------------------------------------------------------------------- search


def _tie_key(combination: _Combination) -> tuple[tuple[AwareDatetime, str], ...]:
    """Smaller wins a tie: coupons sorted by expiry then id, compared lexicographically."""
    return tuple(sorted(coupon.expiry_key for coupon in combination))


def _best_combination(options: list[_Options], pricer: _Pricer) -> _Combination:
    """The most saving combination whose coupons all add value; ties by ``_tie_key``."""
    best: _Combination = frozenset()
    best_saving = 0
    for combination in _combinations(options):
        if pricer.upper_bound(combination) < best_saving:
            continue  # cannot win, and neither can any part of it (its bound is lower still)
        if pricer.saving(combination) is None:
            continue  # the platform coupon's threshold is not reached after merchant coupons
        # Reduce even a combination that saves too little: dropping a coupon whose
        # discount costs freight back can raise the saving, and after trimming the
        # reduced combination may not be among the enumerated ones.
        combination = _without_useless_coupons(combination, pricer)
        saving = pricer.saving(combination)
        assert saving is not None  # a subset of an applicable combination applies
        if (-saving, _tie_key(combination)) < (-best_saving, _tie_key(best)):
            best, best_saving = combination, saving
    return best


def _without_useless_coupons(combination: _Combination, pricer: _Pricer) -> _Combination:
    """Drop coupons whose removal does not lower the saving, until each one adds value.

    Dropping a coupon never makes the others inapplicable (merchant coupons are
    independent, and without one the platform coupon has more left to test its
    threshold on).  The latest-expiring coupon is tried first, so that when either of
    two coupons could go, the one expiring sooner is kept.
    """
    saving = pricer.saving(combination)
    assert saving is not None
    removable = True
    while removable:
        removable = False
        for coupon in sorted(combination, key=lambda c: c.expiry_key, reverse=True):
            without = combination - {coupon}
            saving_without = pricer.saving(without)
            if saving_without is not None and saving_without >= saving:
                combination, saving, removable = without, saving_without, True
                break
    return combination


# --------------------------------------------------------------------------- result


def _recommendation(
    combination: _Combination, pricer: _Pricer, carts: Sequence[MerchantCart], *, exhaustive: bool
) -> Recommendation:
    price = pricer.price(combination)
    assert price is not None
    saving = pricer.whole_saving(combination)
    assert saving is not None and saving == pricer.saving(combination), "the coupled pricing must agree"
    by_merchant = {c.terms.funding: c.coupon_id for c in combination if not c.terms.is_platform}
    platform = [c.coupon_id for c in combination if c.terms.is_platform]
    return Recommendation(
        merchant_coupons={cart.merchant_id: by_merchant[cart.merchant_id]
                          for cart in carts if cart.merchant_id in by_merchant},
        platform_coupon=platform[0] if platform else None,
        discount=saving,
        coupon_discount=price.platform_coupon_discount
        + sum(order.merchant_coupon_discount for order in price.orders),
        payable=price.payable,
        price=price,
        exhaustive=exhaustive,
    )
