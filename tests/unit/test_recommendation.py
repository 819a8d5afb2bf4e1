"""Unit and property tests of coupon recommendation (spec §5.3)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import T0

import ecomcore.domain.recommendation as recommendation_module
from ecomcore.domain.errors import CouponNotUsable
from ecomcore.domain.pricing import (
    PLATFORM,
    AppliedPromotion,
    CouponKind,
    CouponTerms,
    FreightTemplate,
    MerchantCart,
    PricedItem,
    PromotionTerms,
    PromotionTier,
    Scope,
    price_checkout,
)
from ecomcore.domain.recommendation import CandidateCoupon, Recommendation, recommend

# --------------------------------------------------------------------------- builders


def item(key: str, unit_price: int, quantity: int = 1, *, category: str = "food", weight_g: int = 500) -> PricedItem:
    merchant_id = key.split(":")[0]
    return PricedItem(
        key=key,
        sku_id=key.split(":")[1],
        spu_id=f"spu-{key}",
        merchant_id=merchant_id,
        category_path=(category,),
        brand_id="brand-1",
        unit_price=unit_price,
        quantity=quantity,
        weight_g=weight_g,
    )


def cart(merchant_id: str, *items: PricedItem, promotion_tiers=(), freight: FreightTemplate | None = None):
    promotion = None
    if promotion_tiers:
        promotion = AppliedPromotion(
            promotion_id=f"promo-{merchant_id}",
            terms=PromotionTerms(
                merchant_id=merchant_id,
                tiers=tuple(PromotionTier(threshold=t, amount_off=a) for t, a in promotion_tiers),
            ),
        )
    return MerchantCart(merchant_id=merchant_id, items=items, promotion=promotion, freight=freight)


def candidate(coupon_id: str, terms: CouponTerms, expires_in_days: int = 30) -> CandidateCoupon:
    return CandidateCoupon(coupon_id=coupon_id, terms=terms, valid_until=T0 + timedelta(days=expires_in_days))


def cash(amount_off: int, funding: str = PLATFORM, scope: Scope = Scope()) -> CouponTerms:
    return CouponTerms(kind=CouponKind.CASH, amount_off=amount_off, funding=funding, scope=scope)


def spend_get(threshold: int, amount_off: int, funding: str = PLATFORM, scope: Scope = Scope()) -> CouponTerms:
    return CouponTerms(
        kind=CouponKind.THRESHOLD, threshold=threshold, amount_off=amount_off, funding=funding, scope=scope
    )


def percent(bp: int, cap: int | None = None, funding: str = PLATFORM, scope: Scope = Scope()) -> CouponTerms:
    return CouponTerms(kind=CouponKind.PERCENTAGE, percent_off_bp=bp, cap=cap, funding=funding, scope=scope)


def free_from(threshold: int, fee: int = 600) -> FreightTemplate:
    """Freight of ``fee`` for a light parcel, free when the order's goods reach ``threshold``."""
    return FreightTemplate(first_fee=fee, additional_fee=100, free_threshold=threshold)


def chosen(recommendation: Recommendation) -> set[str]:
    return set(recommendation.coupon_ids)


# --------------------------------------------------------------------------- worked example


def worked_example() -> tuple[list[MerchantCart], list[CandidateCoupon]]:
    """Spec §3's lines at m1 with a promotion, and a book at m2 whose freight is free from 3000."""
    carts = [
        cart("m1", item("m1:L1", 2990, 2), item("m1:L2", 4500), promotion_tiers=((10_000, 300),)),
        cart("m2", item("m2:B1", 3000, category="books"), freight=free_from(3000)),
    ]
    food = Scope(category_ids=("food",))
    candidates = [
        candidate("A", spend_get(10_000, 1500, funding="m1")),  # reached: 10480 - 300 = 10180 left
        candidate("B", cash(500, funding="m1")),
        candidate("X", spend_get(20_000, 3000, funding="m1")),  # threshold never reached
        candidate("C", cash(300, funding="m2")),  # useless: its 300 costs the 600 freight back
        candidate("P", percent(1000, cap=900, scope=food)),  # 10% of food, at most 900
        candidate("Q", cash(200)),
    ]
    return carts, candidates


def test_worked_example_in_exact_cents():
    """Two merchants: threshold coupon A then 10% platform coupon P on what is left; C is not chosen."""
    carts, candidates = worked_example()
    result = recommend(carts, candidates)

    # Without coupons: m1 10480 - 300 promotion = 10180, m2 3000 with free freight.
    assert price_checkout(carts).payable == 13_180
    # A takes 1500 off 10180, leaving 8680; P takes 10% of 8680 = 868 (under its cap of 900).
    assert result.merchant_coupons == {"m1": "A"}
    assert result.platform_coupon == "P"
    assert result.coupon_discount == 1500 + 868
    assert result.discount == 2368
    assert result.payable == 13_180 - 2368 == 10_812
    assert result.exhaustive
    m1, m2 = result.price.orders
    assert (m1.merchant_coupon_discount, m1.platform_coupon_discount, m1.payable) == (1500, 868, 7812)
    assert (m2.merchant_coupon_discount, m2.freight, m2.payable) == (0, 0, 3000)
    assert result.price == price_checkout(
        [carts[0].model_copy(update={"coupon": candidates[0].applied()}), carts[1]], candidates[4].applied()
    )


def test_worked_example_useless_coupon_would_only_cost_freight():
    """Adding C to the recommendation saves 300 on goods but adds 600 freight: 2068 < 2368."""
    carts, candidates = worked_example()
    by_id = {c.coupon_id: c for c in candidates}
    with_c = price_checkout(
        [
            carts[0].model_copy(update={"coupon": by_id["A"].applied()}),
            carts[1].model_copy(update={"coupon": by_id["C"].applied()}),
        ],
        by_id["P"].applied(),
    )
    assert with_c.orders[1].freight == 600
    assert 13_180 - with_c.payable == 2068
    assert "C" not in chosen(recommend(carts, candidates))


def test_worked_example_cap_applies_when_more_is_left():
    """Without A, 10% of 10180 = 1018 is capped at 900, and with B it is 968 capped at 900."""
    carts, candidates = worked_example()
    without_a = [c for c in candidates if c.coupon_id != "A"]
    result = recommend(carts, without_a)
    assert chosen(result) == {"B", "P"}
    assert result.coupon_discount == 500 + 900
    assert result.price.platform_coupon_discount == 900


# --------------------------------------------------------------------------- ranking


def test_ranks_by_payable_not_by_coupon_discount():
    """A bigger coupon that loses free freight saves less than a smaller one that keeps it."""
    carts = [cart("m1", item("m1:s1", 3000), freight=free_from(2500))]
    big = candidate("big", cash(800, funding="m1"))  # 2200 + 600 freight = 2800: saves 200
    small = candidate("small", cash(500, funding="m1"))  # 2500, freight still free: saves 500
    result = recommend(carts, [big, small])
    assert chosen(result) == {"small"}
    assert (result.discount, result.coupon_discount, result.payable) == (500, 500, 2500)


def test_coupon_that_only_costs_freight_is_not_recommended():
    """A coupon whose saving is eaten (or more) by freight leaves the recommendation empty."""
    carts = [cart("m1", item("m1:s1", 3000), freight=free_from(3000))]
    result = recommend(carts, [candidate("c", cash(300, funding="m1"))])  # 2700 + 600 freight
    assert chosen(result) == set()
    assert (result.discount, result.payable) == (0, 3000)


def test_zero_value_coupon_is_not_consumed():
    """A 1% coupon that rounds to 0 on a tiny cart saves nothing, so it is not chosen."""
    carts = [cart("m1", item("m1:s1", 10))]
    result = recommend(carts, [candidate("p", percent(100))])  # 0.1 rounds to 0
    assert result.platform_coupon is None
    assert result.discount == 0


def test_merchant_coupon_made_pointless_by_platform_coupon_is_dropped():
    """When the platform coupon alone already takes everything, a merchant coupon adds nothing."""
    carts = [cart("m1", item("m1:s1", 1000))]
    result = recommend(
        carts, [candidate("m", cash(300, funding="m1"), 1), candidate("p", cash(5000), 2)]
    )
    assert chosen(result) == {"p"}
    assert result.payable == 0


def test_merchant_coupon_can_lock_out_the_platform_threshold():
    """A merchant coupon that drops the goods below the platform threshold is weighed against it."""
    carts = [cart("m1", item("m1:s1", 10_000))]
    merchant = candidate("m", cash(300, funding="m1"))
    platform = candidate("p", spend_get(10_000, 1000))  # needs all 10000 left
    result = recommend(carts, [merchant, platform])
    assert chosen(result) == {"p"}
    assert result.discount == 1000


# --------------------------------------------------------------------------- ties


def test_tie_goes_to_the_coupon_expiring_first():
    """Two equal coupons: the one that expires earlier is recommended, whatever the ids."""
    carts = [cart("m1", item("m1:s1", 5000))]
    later = candidate("a-later", cash(500, funding="m1"), expires_in_days=9)
    sooner = candidate("z-sooner", cash(500, funding="m1"), expires_in_days=3)
    assert recommend(carts, [later, sooner]).merchant_coupons == {"m1": "z-sooner"}
    assert recommend(carts, [sooner, later]).merchant_coupons == {"m1": "z-sooner"}


def test_tie_on_expiry_goes_to_the_lower_id():
    """Equal coupons expiring at the same moment: the lower coupon id wins."""
    carts = [cart("m1", item("m1:s1", 5000))]
    coupons = [candidate(coupon_id, cash(200)) for coupon_id in ("p2", "p10", "p1")]
    assert recommend(carts, coupons).platform_coupon == "p1"


def test_tie_between_combinations_compares_sorted_expiries():
    """Equal savings: the combination holding the earliest-expiring coupon wins, even with more coupons."""
    carts = [cart("m1", item("m1:s1", 5000)), cart("m2", item("m2:s1", 5000))]
    candidates = [
        candidate("m1a", cash(300, funding="m1"), expires_in_days=2),
        candidate("m2a", cash(300, funding="m2"), expires_in_days=8),
        candidate("q", cash(600), expires_in_days=5),
    ]
    # With room to spare all three stack: 300 + 300 + 600.
    assert chosen(recommend(carts, candidates)) == {"m1a", "m2a", "q"}
    # With 300 of goods per order at most 600 can be saved: {q} ties {m1a, m2a}
    # ({m1a, q} saves 600 too, but m1a adds nothing to q there).
    small = [cart("m1", item("m1:s1", 300)), cart("m2", item("m2:s1", 300))]
    assert chosen(recommend(small, candidates)) == {"m1a", "m2a"}  # day 2 beats day 5
    sooner_q = [c if c.coupon_id != "q" else candidate("q", cash(600), expires_in_days=1) for c in candidates]
    assert chosen(recommend(small, sooner_q)) == {"q"}  # day 1 beats day 2


# --------------------------------------------------------------------------- input handling


def test_no_candidates_gives_the_empty_recommendation():
    """Without coupons the recommendation is empty, saves 0 and prices the checkout as is."""
    carts, _ = worked_example()
    result = recommend(carts, [])
    assert result.merchant_coupons == {}
    assert result.platform_coupon is None
    assert result.coupon_ids == ()
    assert (result.discount, result.coupon_discount) == (0, 0)
    assert result.price == price_checkout(carts)
    assert result.payable == 13_180


def test_coupons_of_merchants_not_in_the_cart_are_ignored():
    """A merchant coupon funded by a merchant without a cart here is never recommended."""
    carts = [cart("m1", item("m1:s1", 5000))]
    result = recommend(carts, [candidate("other", cash(4000, funding="m9")), candidate("own", cash(100, funding="m1"))])
    assert result.merchant_coupons == {"m1": "own"}


def test_coupons_that_cannot_apply_are_ignored():
    """Coupons whose scope covers nothing or whose threshold is never reached are skipped, not raised."""
    carts = [cart("m1", item("m1:s1", 5000))]
    result = recommend(
        carts,
        [
            candidate("elsewhere", cash(100, scope=Scope(category_ids=("books",)))),
            candidate("too-high", spend_get(9000, 1000, funding="m1")),
        ],
    )
    assert chosen(result) == set()


def test_refuses_carts_already_carrying_a_coupon():
    """Carts must come without coupons: the recommendation chooses them."""
    carts, candidates = worked_example()
    with_coupon = carts[0].model_copy(update={"coupon": candidates[0].applied()})
    with pytest.raises(ValueError, match="carry none"):
        recommend([with_coupon], candidates)


def test_refuses_a_coupon_id_given_twice():
    """The same coupon id twice is a caller error, not two coupons."""
    carts, _ = worked_example()
    twice = [candidate("A", cash(100)), candidate("A", cash(200, funding="m1"))]
    with pytest.raises(ValueError, match="more than once"):
        recommend(carts, twice)


def test_refuses_naive_expiry_and_bad_limit():
    """Expiry must be timezone-aware (to compare safely) and the search limit positive."""
    with pytest.raises(ValidationError):
        CandidateCoupon(coupon_id="c", terms=cash(100), valid_until=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="max_combinations"):
        recommend(worked_example()[0], [], max_combinations=0)


def test_recommended_combination_can_be_checked_out():
    """Pricing the carts with the recommended coupons reproduces the recommendation's price."""
    carts, candidates = worked_example()
    result = recommend(carts, candidates)
    by_id = {c.coupon_id: c for c in candidates}
    with_coupons = [
        c.model_copy(update={"coupon": by_id[result.merchant_coupons[c.merchant_id]].applied()})
        if c.merchant_id in result.merchant_coupons else c
        for c in carts
    ]
    platform = by_id[result.platform_coupon].applied() if result.platform_coupon else None
    assert price_checkout(with_coupons, platform) == result.price


# --------------------------------------------------------------------------- trimming


def many_coupons() -> tuple[list[MerchantCart], list[CandidateCoupon]]:
    """Three merchants with 9 coupons each and 9 platform coupons: 10^4 combinations."""
    carts = [cart(m, item(f"{m}:s1", 10_000)) for m in ("m1", "m2", "m3")]
    candidates = [
        candidate(f"{m}-{n}", cash(100 * n, funding=m), expires_in_days=n)
        for m in ("m1", "m2", "m3") for n in range(1, 10)
    ]
    candidates += [candidate(f"p-{n}", cash(50 * n), expires_in_days=n) for n in range(1, 10)]
    return carts, candidates


def test_trimmed_search_keeps_the_best_standalone_coupons():
    """Over the limit, each slot keeps its best coupons; here that still finds the optimum."""
    carts, candidates = many_coupons()
    full = recommend(carts, candidates)
    trimmed = recommend(carts, candidates, max_combinations=16)  # 2 options per slot: none or best
    assert full.exhaustive and not trimmed.exhaustive
    assert chosen(full) == chosen(trimmed) == {"m1-9", "m2-9", "m3-9", "p-9"}
    assert trimmed.discount == full.discount == 3 * 900 + 450


def test_bound_skips_combinations_that_cannot_win(monkeypatch):
    """10^4 combinations are searched exactly, yet only a few dozen checkouts are priced."""
    priced = []

    def counting_price_checkout(*args, **kwargs):
        priced.append(args)
        return price_checkout(*args, **kwargs)

    monkeypatch.setattr(recommendation_module, "price_checkout", counting_price_checkout)
    carts, candidates = many_coupons()
    result = recommend(carts, candidates)
    assert result.exhaustive
    assert chosen(result) == {"m1-9", "m2-9", "m3-9", "p-9"}
    assert len(priced) < 100


def test_search_limited_to_one_combination_forces_best_coupons_then_drops_useless_ones():
    """A limit of 1 prices the best coupon of every slot, and still drops one that adds nothing."""
    carts = [cart("m1", item("m1:s1", 1000)), cart("m2", item("m2:s1", 3000), freight=free_from(3000))]
    candidates = [
        candidate("m1-good", cash(300, funding="m1")),
        candidate("m2-bad", cash(100, funding="m2")),  # 2900 + 600 freight: saves -500
        candidate("p", cash(200, scope=Scope(category_ids=("books",)))),  # covers nothing
    ]
    result = recommend(carts, candidates, max_combinations=1)
    assert not result.exhaustive
    assert chosen(result) == {"m1-good"}
    assert result.discount == 300


# --------------------------------------------------------------------------- properties

MERCHANTS = ("m1", "m2", "m3")
CATEGORIES = ("food", "books")


@st.composite
def coupon_terms(draw: st.DrawFn, funding: str) -> CouponTerms:
    scope = draw(st.sampled_from([Scope(), Scope(category_ids=("food",)), Scope(category_ids=("books",))]))
    kind = draw(st.sampled_from(CouponKind))
    if kind is CouponKind.CASH:
        return cash(draw(st.integers(1, 3000)), funding, scope)
    if kind is CouponKind.THRESHOLD:
        threshold = draw(st.integers(1, 8000))
        return spend_get(threshold, draw(st.integers(1, threshold)), funding, scope)
    cap = draw(st.none() | st.integers(1, 2000))
    return percent(draw(st.integers(1, 10_000)), cap, funding, scope)


@st.composite
def checkouts(draw: st.DrawFn) -> tuple[list[MerchantCart], list[CandidateCoupon]]:
    """1–3 merchant carts (promotions, freight) and coupons with few distinct expiry days (to tie)."""
    merchants = draw(st.lists(st.sampled_from(MERCHANTS), min_size=1, max_size=3, unique=True))
    carts = []
    for merchant_id in merchants:
        items = [
            item(
                f"{merchant_id}:s{n}",
                draw(st.integers(1, 4000)),
                draw(st.integers(1, 3)),
                category=draw(st.sampled_from(CATEGORIES)),
            )
            for n in range(draw(st.integers(1, 3)))
        ]
        tiers = draw(st.sampled_from([(), ((3000, 300),), ((2000, 200), (6000, 800))]))
        freight = draw(st.none() | st.builds(free_from, st.integers(500, 9000), st.integers(1, 900)))
        carts.append(cart(merchant_id, *items, promotion_tiers=tiers, freight=freight))
    fundings = st.sampled_from([*merchants, "m9", PLATFORM, PLATFORM])
    count = draw(st.integers(0, 7))
    candidates = [
        candidate(f"c{n}", draw(fundings.flatmap(coupon_terms)), draw(st.integers(1, 3)))
        for n in range(count)
    ]
    return carts, candidates


def brute_force(carts: list[MerchantCart], candidates: list[CandidateCoupon]) -> dict[frozenset[str], int]:
    """The saving of every combination allowed by the stacking rules that checkout accepts."""
    by_slot: dict[str, list[CandidateCoupon]] = {}
    for coupon in candidates:
        by_slot.setdefault(coupon.terms.funding, []).append(coupon)
    slots = [by_slot.get(c.merchant_id, []) for c in carts] + [by_slot.get(PLATFORM, [])]
    baseline = price_checkout(carts).payable
    savings = {}
    for choice in itertools.product(*([None, *slot] for slot in slots)):
        *merchant_choice, platform = choice
        priced = [
            c.model_copy(update={"coupon": coupon.applied()}) if coupon else c
            for c, coupon in zip(carts, merchant_choice, strict=True)
        ]
        try:
            price = price_checkout(priced, platform.applied() if platform else None)
        except CouponNotUsable:
            continue
        savings[frozenset(coupon.coupon_id for coupon in choice if coupon)] = baseline - price.payable
    return savings


def adds_value(combination: frozenset[str], savings: dict[frozenset[str], int]) -> bool:
    return all(savings[combination - {coupon}] < savings[combination] for coupon in combination)


@settings(max_examples=200, deadline=None)
@given(checkouts())
def test_recommendation_matches_brute_force(case):
    """Same maximal saving as trying everything, every chosen coupon adds value, and ties pick the earliest expiries."""
    carts, candidates = case
    result = recommend(carts, candidates)
    savings = brute_force(carts, candidates)
    chosen_ids = frozenset(result.coupon_ids)

    assert result.exhaustive
    assert result.discount == max(savings.values()) == savings[chosen_ids]
    assert adds_value(chosen_ids, savings)
    assert result.payable == price_checkout(carts).payable - result.discount

    expiry = {c.coupon_id: (c.valid_until, c.coupon_id) for c in candidates}
    best = min(
        (combination for combination in savings if adds_value(combination, savings)),
        key=lambda combination: (-savings[combination], sorted(expiry[c] for c in combination)),
    )
    assert chosen_ids == best
    assert all(expiry[c] for c in chosen_ids)  # only given coupons, never a foreign merchant's
    assert set(result.merchant_coupons) <= {c.merchant_id for c in carts}


@settings(max_examples=100, deadline=None)
@given(checkouts(), st.integers(1, 30))
def test_trimmed_recommendation_is_still_sound(case, limit):
    """With a small search limit the result may save less, but it is valid and every coupon adds value."""
    carts, candidates = case
    result = recommend(carts, candidates, max_combinations=limit)
    savings = brute_force(carts, candidates)
    chosen_ids = frozenset(result.coupon_ids)
    assert savings[chosen_ids] == result.discount >= 0
    assert result.discount <= max(savings.values())
    assert adds_value(chosen_ids, savings)
