"""Unit and property tests of the pure money rules (spec §3, §5.3, §5.4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ecomcore.domain.catalogue import Promotion
from ecomcore.domain.errors import CouponNotUsable, DomainError
from ecomcore.domain.pricing import (
    PLATFORM,
    AppliedCoupon,
    AppliedPromotion,
    CheckoutPrice,
    CouponKind,
    CouponSlots,
    CouponTerms,
    FreightBasis,
    FreightTemplate,
    LinePrice,
    MerchantCart,
    PricedItem,
    PromotionTerms,
    PromotionTier,
    Scope,
    apportion,
    best_promotion,
    percent_of,
    price_checkout,
    unit_refund,
)

# --------------------------------------------------------------------------- builders


def item(
    key: str = "m1:sku-1",
    *,
    unit_price: int = 1000,
    quantity: int = 1,
    merchant_id: str = "m1",
    sku_id: str | None = None,
    spu_id: str = "spu-1",
    category_path: tuple[str, ...] = ("food", "snacks"),
    brand_id: str = "brand-1",
    weight_g: int = 500,
) -> PricedItem:
    return PricedItem(
        key=key,
        sku_id=sku_id or key.split(":")[-1],
        spu_id=spu_id,
        merchant_id=merchant_id,
        category_path=category_path,
        brand_id=brand_id,
        unit_price=unit_price,
        quantity=quantity,
        weight_g=weight_g,
    )


def cash(amount_off: int, funding: str = PLATFORM, scope: Scope = Scope()) -> CouponTerms:
    return CouponTerms(kind=CouponKind.CASH, amount_off=amount_off, funding=funding, scope=scope)


def spend_get(threshold: int, amount_off: int, funding: str = PLATFORM, scope: Scope = Scope()):
    return CouponTerms(
        kind=CouponKind.THRESHOLD, threshold=threshold, amount_off=amount_off,
        funding=funding, scope=scope,
    )


def promotion(merchant_id: str = "m1", tiers=((200, 20),), scope: Scope = Scope(), pid="p1"):
    return AppliedPromotion(
        promotion_id=pid,
        terms=PromotionTerms(
            merchant_id=merchant_id,
            tiers=tuple(PromotionTier(threshold=t, amount_off=a) for t, a in tiers),
            scope=scope,
        ),
    )


def coupon(terms: CouponTerms, coupon_id: str = "c1") -> AppliedCoupon:
    return AppliedCoupon(coupon_id=coupon_id, terms=terms)


def spec_lines() -> tuple[PricedItem, PricedItem]:
    """L1 = 2 × 2990 and L2 = 1 × 4500 from the worked example of spec §3."""
    return (
        item("m1:L1", unit_price=2990, quantity=2, weight_g=800),
        item("m1:L2", unit_price=4500, quantity=1, weight_g=700),
    )


def by_key(order) -> dict[str, LinePrice]:
    return {line.key: line for line in order.lines}


# --------------------------------------------------------------------------- apportion


def test_apportion_spec_example_gives_left_over_unit_to_larger_remainder():
    """Spec §3: 1500 over 5980 and 4500 gives 856 and 644 (855.9 beats 644.08)."""
    assert apportion(1500, [5980, 4500]) == [856, 644]


def test_apportion_ties_go_to_earlier_index():
    """Equal remainders: the left-over units go to the earlier lines."""
    assert apportion(1, [1, 1]) == [1, 0]
    assert apportion(2, [5, 5, 5]) == [1, 1, 0]


def test_apportion_larger_remainder_wins_over_earlier_index():
    """A later line with a larger remainder gets the unit before an earlier smaller one."""
    # exact shares 1/4 and 3/4
    assert apportion(1, [1, 3]) == [0, 1]


def test_apportion_zero_weight_line_never_gets_a_unit():
    """A line with nothing left receives no share."""
    assert apportion(1, [0, 1, 1]) == [0, 1, 0]


def test_apportion_zero_weights_require_zero_total():
    """All-zero weights apportion only zero; anything else is refused."""
    assert apportion(0, [0, 0]) == [0, 0]
    assert apportion(0, []) == []
    with pytest.raises(ValueError):
        apportion(1, [0, 0])
    with pytest.raises(ValueError):
        apportion(1, [])


def test_apportion_refuses_negative_inputs():
    """Negative totals or weights are not apportionable."""
    with pytest.raises(ValueError):
        apportion(-1, [1])
    with pytest.raises(ValueError):
        apportion(1, [2, -1])


def test_apportion_is_exact_integer_arithmetic_on_huge_amounts():
    """Integers beyond float precision are still split exactly (no floats)."""
    big = 10**30 + 1
    assert apportion(big, [1, 1]) == [5 * 10**29 + 1, 5 * 10**29]
    # remainders differing by less than float epsilon are still ranked correctly
    assert apportion(1, [10**20, 10**20 + 1]) == [0, 1]


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=12).filter(
        lambda ws: sum(ws) > 0
    ),
)
def test_apportion_properties(total, weights):
    """Parts sum exactly to the total, are never negative and lie within floor/ceil of the exact share."""
    parts = apportion(total, weights)
    weight_sum = sum(weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert part >= 0
        floor_share = total * weight // weight_sum
        ceil_share = -(-total * weight // weight_sum)
        assert floor_share <= part <= ceil_share


@settings(max_examples=100, deadline=None)
@given(weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=10))
def test_apportion_never_gives_a_part_more_than_its_weight(weights):
    """Apportioning at most the weight sum keeps every part within its weight (no negative nets)."""
    parts = apportion(sum(weights), weights)
    assert parts == weights
    if sum(weights) > 0:
        parts = apportion(sum(weights) - 1, weights)
        assert all(part <= weight for part, weight in zip(parts, weights, strict=True))


# --------------------------------------------------------------------------- percent_of


def test_percent_of_spec_example_rounds_half_up():
    """Spec §3: 15% of 12345 = 1851.75 rounds to 1852."""
    assert percent_of(12345, 1500) == 1852


@pytest.mark.parametrize(
    ("amount", "bp", "expected"),
    [(10, 500, 1), (30, 500, 2), (1, 4999, 0), (1, 5000, 1), (0, 1500, 0), (999, 10_000, 999)],
)
def test_percent_of_rounds_half_up_exactly(amount, bp, expected):
    """Exact halves round up, anything below half rounds down."""
    assert percent_of(amount, bp) == expected


def test_percent_of_is_exact_beyond_float_precision():
    """Large amounts keep every minor unit (no float rounding)."""
    assert percent_of(10**20 + 1, 5000) == 5 * 10**19 + 1


# --------------------------------------------------------------------------- unit_refund


def test_unit_refund_spec_example():
    """Spec §3: refunding L1's units one by one gives 2562 then 2562."""
    first = unit_refund(5124, 2, 0, 1)
    second = unit_refund(5124, 2, 1, 1)
    assert (first, second) == (2562, 2562)


def test_unit_refund_floors_so_the_last_unit_takes_the_remainder():
    """Uneven nets: earlier units are floored, the total is still exact."""
    assert [unit_refund(100, 3, r, 1) for r in range(3)] == [33, 33, 34]


@pytest.mark.parametrize(
    ("net", "units", "before", "refunding"),
    [(100, 2, 1, 2), (100, 0, 0, 0), (100, -1, 0, 1), (-1, 2, 0, 1), (100, 2, -1, 1), (100, 2, 0, -1)],
)
def test_unit_refund_refuses_impossible_requests(net, units, before, refunding):
    """Refunding more units than remain, or negative inputs, raise ValueError."""
    with pytest.raises(ValueError):
        unit_refund(net, units, before, refunding)


@settings(max_examples=200, deadline=None)
@given(net=st.integers(min_value=0, max_value=10**9), units=st.integers(min_value=1, max_value=50))
def test_unit_refunds_one_by_one_sum_to_net(net, units):
    """Refunding every unit one at a time gives back exactly the net."""
    refunds = [unit_refund(net, units, r, 1) for r in range(units)]
    assert sum(refunds) == net
    assert all(refund >= 0 for refund in refunds)


@settings(max_examples=200, deadline=None)
@given(
    net=st.integers(min_value=0, max_value=10**9),
    chunks=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=10),
)
def test_unit_refunds_in_random_chunks_sum_to_net(net, chunks):
    """Any sequence of partial refunds covering all units gives back exactly the net."""
    units = sum(chunks)
    refunded = total = 0
    for chunk in chunks:
        total += unit_refund(net, units, refunded, chunk)
        refunded += chunk
    assert total == net


# --------------------------------------------------------------------------- Scope


def test_empty_scope_covers_all_goods():
    """A scope listing nothing covers every item."""
    assert Scope().covers(item())


@pytest.mark.parametrize(
    ("scope", "covered"),
    [
        (Scope(sku_ids=("sku-1",)), True),
        (Scope(sku_ids=("sku-2",)), False),
        (Scope(spu_ids=("spu-1",)), True),
        (Scope(spu_ids=("spu-9",)), False),
        (Scope(brand_ids=("brand-1",)), True),
        (Scope(brand_ids=("brand-9",)), False),
        (Scope(sku_ids=("sku-9",), brand_ids=("brand-1",)), True),
    ],
)
def test_scope_includes_an_item_matching_any_include_list(scope, covered):
    """An item is covered when its SKU, SPU or brand is listed in any include list."""
    assert scope.covers(item("m1:sku-1")) is covered


def test_scope_on_parent_category_covers_descendants():
    """A category scope covers items whose category path passes through it."""
    leaf_item = item(category_path=("food", "snacks", "nuts"))
    assert Scope(category_ids=("food",)).covers(leaf_item)
    assert Scope(category_ids=("nuts",)).covers(leaf_item)
    assert not Scope(category_ids=("drinks",)).covers(leaf_item)


def test_scope_on_child_category_does_not_cover_parent_or_sibling():
    """A leaf-category scope does not cover goods of its parent or a sibling."""
    scope = Scope(category_ids=("nuts",))
    assert not scope.covers(item(category_path=("food", "snacks")))
    assert not scope.covers(item(category_path=("food", "snacks", "chips")))


@pytest.mark.parametrize(
    "exclusion",
    [
        {"excluded_sku_ids": ("sku-1",)},
        {"excluded_spu_ids": ("spu-1",)},
        {"excluded_brand_ids": ("brand-1",)},
        {"excluded_category_ids": ("food",)},
    ],
)
def test_scope_exclusions_win_over_inclusions(exclusion):
    """An excluded item is not covered even if an include list (or all goods) matches it."""
    target = item("m1:sku-1")
    assert not Scope(**exclusion).covers(target)
    assert not Scope(sku_ids=("sku-1",), category_ids=("food",), **exclusion).covers(target)


def test_scope_refuses_unknown_fields():
    """A typo in a scope field is an error, not a silently wider scope."""
    with pytest.raises(ValidationError):
        Scope(sku_id=("sku-1",))


def test_scope_overlap_all_goods_overlaps_everything():
    """An all-goods scope conservatively overlaps any scope."""
    assert Scope().overlaps(Scope(sku_ids=("a",)))
    assert Scope(brand_ids=("b",)).overlaps(Scope())


def test_scope_overlap_of_sku_lists_is_their_intersection():
    """Two SKU-only scopes overlap exactly when they share a SKU not excluded by either."""
    assert Scope(sku_ids=("a", "b")).overlaps(Scope(sku_ids=("b", "c")))
    assert not Scope(sku_ids=("a",)).overlaps(Scope(sku_ids=("b",)))
    assert not Scope(sku_ids=("a", "b")).overlaps(Scope(sku_ids=("b",), excluded_sku_ids=("b",)))


def test_scope_overlap_is_conservative_for_other_lists():
    """Scopes that would need the catalogue to compare are assumed to overlap."""
    assert Scope(brand_ids=("x",)).overlaps(Scope(brand_ids=("y",)))
    assert Scope(sku_ids=("a",)).overlaps(Scope(category_ids=("food",)))


# --------------------------------------------------------------------------- PricedItem


def test_priced_item_gross_is_unit_price_times_quantity():
    """gross = unit price × quantity."""
    assert item(unit_price=2990, quantity=2).gross == 5980


@pytest.mark.parametrize(
    "override",
    [{"unit_price": 10.5}, {"unit_price": 10.0}, {"unit_price": -1}, {"quantity": 0}, {"weight_g": -1}],
)
def test_priced_item_refuses_floats_and_bad_amounts(override):
    """Money is a non-negative int, quantity positive: floats and negatives are refused."""
    with pytest.raises(ValidationError):
        item(**override)


# --------------------------------------------------------------------------- CouponTerms


@pytest.mark.parametrize(
    "terms",
    [
        {"kind": "cash"},  # no amount_off
        {"kind": "cash", "amount_off": 0},
        {"kind": "cash", "amount_off": 100, "threshold": 500},  # cash has no threshold
        {"kind": "cash", "amount_off": 100, "percent_off_bp": 1000},
        {"kind": "cash", "amount_off": 100.0},  # floats are not money
        {"kind": "threshold", "amount_off": 100},  # no threshold
        {"kind": "threshold", "amount_off": 100, "threshold": -5},
        {"kind": "threshold", "threshold": 1000},  # no amount_off
        {"kind": "threshold", "threshold": 1000, "amount_off": 100, "cap": 50},
        {"kind": "percentage"},  # no percent
        {"kind": "percentage", "percent_off_bp": 0},
        {"kind": "percentage", "percent_off_bp": 10_001},
        {"kind": "percentage", "percent_off_bp": 1500, "amount_off": 100},
        {"kind": "percentage", "percent_off_bp": 1500, "cap": 0},
        {"kind": "percentage", "percent_off_bp": 1500, "threshold": -1},
        {"kind": "percentage", "percent_off_bp": 15.0},
        {"kind": "bogus", "amount_off": 100},
        {"kind": "cash", "amount_off": 100, "funding": ""},
        {"kind": "cash", "amount_off": 100, "surprise": 1},
    ],
)
def test_inconsistent_coupon_terms_raise_validation_error(terms):
    """Coupon terms that do not fit their kind are refused with a pydantic ValidationError."""
    with pytest.raises(ValidationError):
        CouponTerms(**terms)


def test_consistent_coupon_terms_are_accepted():
    """Each kind accepts its own well-formed terms; funding defaults to the platform."""
    assert cash(100).is_platform
    assert not cash(100, funding="m1").is_platform
    assert spend_get(10000, 1500).threshold == 10000
    pct = CouponTerms(kind="percentage", percent_off_bp=1500, cap=2000, threshold=5000)
    assert pct.kind is CouponKind.PERCENTAGE


def test_cash_coupon_discount_is_capped_by_eligible_amount():
    """A cash coupon gives its amount, never more than the goods it applies to."""
    assert cash(500).discount_on(2000) == 500
    assert cash(500).discount_on(300) == 300
    assert cash(500).discount_on(0) == 0


def test_threshold_coupon_needs_the_threshold():
    """Below the threshold a threshold coupon gives nothing; at it, the full amount."""
    terms = spend_get(10000, 1500)
    assert terms.discount_on(9999) == 0
    assert terms.discount_on(10000) == 1500


def test_percentage_coupon_spec_example_and_cap():
    """Spec §3: 15% capped at 2000 on 12345 gives 1852; a lower cap limits it."""
    assert CouponTerms(kind="percentage", percent_off_bp=1500, cap=2000).discount_on(12345) == 1852
    assert CouponTerms(kind="percentage", percent_off_bp=1500, cap=1000).discount_on(12345) == 1000
    assert CouponTerms(kind="percentage", percent_off_bp=1500).discount_on(100_000) == 15_000


def test_percentage_coupon_threshold_and_full_discount():
    """A percentage coupon may have a threshold; 100% off gives the whole eligible amount."""
    terms = CouponTerms(kind="percentage", percent_off_bp=10_000, threshold=500)
    assert terms.discount_on(499) == 0
    assert terms.discount_on(500) == 500


# --------------------------------------------------------------------------- promotions


def test_promotion_best_reached_tier_wins():
    """Spec §5.3: ≥200 → 20 off, ≥300 → 40 off; the best reached tier applies."""
    terms = promotion(tiers=((300, 40), (200, 20))).terms
    assert terms.discount_on(199) == 0
    assert terms.discount_on(200) == 20
    assert terms.discount_on(299) == 20
    assert terms.discount_on(300) == 40
    assert terms.discount_on(10_000) == 40


def test_promotion_discount_capped_by_eligible_amount():
    """A tier giving more than the eligible amount gives only that amount."""
    assert promotion(tiers=((100, 500),)).terms.discount_on(150) == 150


@pytest.mark.parametrize(
    "terms",
    [
        {"merchant_id": "m1", "tiers": ()},
        {"merchant_id": "m1", "tiers": ({"threshold": 0, "amount_off": 10},)},
        {"merchant_id": "m1", "tiers": ({"threshold": 100, "amount_off": 0},)},
        {"merchant_id": "", "tiers": ({"threshold": 100, "amount_off": 10},)},
    ],
)
def test_invalid_promotion_terms_raise_validation_error(terms):
    """A promotion needs at least one tier, positive thresholds and amounts, and a merchant."""
    with pytest.raises(ValidationError):
        PromotionTerms(**terms)


# --------------------------------------------------------------------------- choosing the promotion

NOW = datetime(2026, 11, 11, 8, 0, tzinfo=UTC)


def offer(pid: str, tiers=((200, 20),), *, scope: Scope = Scope(), starts=-1, ends=1, exclusive=False) -> Promotion:
    """A promotion of m1 offered from ``starts`` to ``ends`` days around NOW."""
    return Promotion(
        promotion_id=pid,
        terms=promotion(tiers=tiers, scope=scope).terms.model_copy(update={"exclusive": exclusive}),
        starts_at=NOW + timedelta(days=starts),
        ends_at=NOW + timedelta(days=ends),
    )


def test_best_promotion_is_the_active_one_worth_most():
    """Of the promotions active now, the one giving the largest discount on the cart is chosen."""
    items = (item(unit_price=300),)
    offers = [offer("small", ((100, 10),)), offer("big", ((300, 40),)), offer("mid", ((200, 20),))]
    chosen = best_promotion(offers, items, NOW)
    assert chosen == AppliedPromotion(promotion_id="big", terms=offer("big", ((300, 40),)).terms)


def test_best_promotion_ignores_promotions_not_active_now():
    """A promotion that has ended or not begun is not considered, however much it is worth."""
    items = (item(unit_price=300),)
    ended, later = offer("ended", ((100, 90),), starts=-3, ends=0), offer("later", ((100, 90),), starts=1, ends=2)
    chosen = best_promotion([ended, later, offer("now", ((100, 10),))], items, NOW)
    assert chosen is not None and chosen.promotion_id == "now"


def test_best_promotion_ties_go_to_the_lower_id():
    """Two promotions worth the same: the lower promotion id wins, whatever the order offered."""
    items = (item(unit_price=300),)
    assert best_promotion([offer("p2"), offer("p1")], items, NOW).promotion_id == "p1"  # type: ignore[union-attr]


def test_best_promotion_counts_only_covered_goods_and_may_be_none():
    """Only goods in a promotion's scope count towards its threshold; none worth anything gives None."""
    items = (item("m1:a", unit_price=150, sku_id="a"), item("m1:b", unit_price=150, sku_id="b"))
    only_a = offer("only-a", ((200, 20),), scope=Scope(sku_ids=("a",)))
    assert best_promotion([only_a], items, NOW) is None
    assert best_promotion([], items, NOW) is None
    assert best_promotion([only_a, offer("all", ((300, 5),))], items, NOW).promotion_id == "all"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- coupon slots


def test_coupon_slots_hold_one_merchant_coupon_per_merchant_and_the_platform_coupon():
    """Each merchant coupon goes to its merchant's order; the platform coupon to the checkout."""
    m1, m2, platform = coupon(cash(100, "m1"), "c1"), coupon(cash(100, "m2"), "c2"), coupon(cash(50), "p")
    slots = CouponSlots.fill([m1, m2], platform, {"m1", "m2"})
    assert (slots.merchant, slots.platform) == ({"m1": m1, "m2": m2}, platform)
    assert CouponSlots.fill([], None, {"m1"}) == CouponSlots()


def test_coupon_slots_refuse_a_second_coupon_of_one_merchant():
    """Only one coupon of a merchant can be used per order."""
    with pytest.raises(CouponNotUsable, match="only one coupon of merchant m1 can be used per order"):
        CouponSlots.fill([coupon(cash(100, "m1"), "c1"), coupon(cash(50, "m1"), "c2")], None, {"m1"})


def test_coupon_slots_refuse_a_coupon_of_a_merchant_not_in_the_cart():
    """A merchant coupon needs that merchant's goods in the cart."""
    with pytest.raises(CouponNotUsable, match="coupon c3 is for merchant m3, whose goods are not in the cart"):
        CouponSlots.fill([coupon(cash(100, "m3"), "c3")], None, {"m1"})


def test_coupon_slots_refuse_a_platform_coupon_among_merchant_coupons():
    """A platform coupon goes in the platform slot, not a merchant's."""
    with pytest.raises(CouponNotUsable, match="coupon p is a platform coupon; pass it as platform_coupon_id"):
        CouponSlots.fill([coupon(cash(100), "p")], None, {"m1"})


def test_a_merchant_coupon_in_the_platform_slot_is_refused_before_anything_is_priced():
    """price_checkout refuses a merchant-funded platform coupon first, before any merchant step."""
    cart = MerchantCart(merchant_id="m1", items=spec_lines(), coupon=coupon(spend_get(10**9, 100, "m1")))
    with pytest.raises(CouponNotUsable, match="only a platform coupon can apply across the checkout"):
        price_checkout([cart], coupon(cash(100, funding="m1"), "c9"))


# --------------------------------------------------------------------------- freight


def by_weight(**overrides) -> FreightTemplate:
    return FreightTemplate(first_fee=800, additional_fee=300, **overrides)


def test_freight_by_weight_spec_example():
    """Spec §3: 2300 g with first kg 800 and 300 per started extra kg costs 1400."""
    assert by_weight().fee(weight_g=2300, item_count=3, goods_after_discounts=0) == 1400


@pytest.mark.parametrize(("grams", "fee"), [(0, 800), (1000, 800), (1001, 1100), (2000, 1100), (2001, 1400)])
def test_freight_counts_part_of_an_additional_unit_as_whole(grams, fee):
    """Within the first unit only the first fee; any part of an extra unit costs a full one."""
    assert by_weight().fee(weight_g=grams, item_count=1, goods_after_discounts=0) == fee


def test_freight_free_from_threshold():
    """Freight is free when goods after discounts reach the threshold, charged just below."""
    template = by_weight(free_threshold=9900)
    assert template.fee(weight_g=2300, item_count=1, goods_after_discounts=9900) == 0
    assert template.fee(weight_g=2300, item_count=1, goods_after_discounts=9899) == 1400


def test_freight_by_item_count():
    """A count template charges by items: first 2 items 500, then 100 per extra item."""
    template = FreightTemplate(
        basis=FreightBasis.COUNT, first_unit=2, first_fee=500, additional_unit=1, additional_fee=100
    )
    assert template.fee(weight_g=99_999, item_count=2, goods_after_discounts=0) == 500
    assert template.fee(weight_g=0, item_count=5, goods_after_discounts=0) == 800


def test_freight_zero_for_no_items():
    """Nothing to ship costs nothing."""
    assert by_weight().fee(weight_g=0, item_count=0, goods_after_discounts=0) == 0


def test_freight_template_refuses_bad_units():
    """Units must be positive and fees non-negative ints."""
    with pytest.raises(ValidationError):
        FreightTemplate(first_fee=800, additional_fee=300, additional_unit=0)
    with pytest.raises(ValidationError):
        FreightTemplate(first_fee=8.0, additional_fee=300)


# --------------------------------------------------------------------------- MerchantCart


def test_merchant_cart_needs_items_of_its_own_merchant():
    """A cart is non-empty, holds only its merchant's goods, and no line key twice."""
    with pytest.raises(ValidationError):
        MerchantCart(merchant_id="m1", items=())
    with pytest.raises(ValidationError):
        MerchantCart(merchant_id="m1", items=(item("m2:a", merchant_id="m2"),))
    with pytest.raises(ValidationError):
        MerchantCart(merchant_id="m1", items=(item("m1:a"), item("m1:a")))


# --------------------------------------------------------------------------- price_checkout


def test_checkout_spec_example_threshold_coupon():
    """Spec §3: spend 10000 get 1500 off on L1, L2 gives shares 856/644, nets 5124/3856, goods 8980."""
    cart = MerchantCart(
        merchant_id="m1", items=spec_lines(), coupon=coupon(spend_get(10000, 1500, funding="m1"))
    )
    price = price_checkout([cart])
    (order,) = price.orders
    lines = by_key(order)
    assert lines["m1:L1"].merchant_coupon_discount == 856
    assert lines["m1:L2"].merchant_coupon_discount == 644
    assert (lines["m1:L1"].net, lines["m1:L2"].net) == (5124, 3856)
    assert order.gross == 10480
    assert order.merchant_coupon_discount == 1500
    assert order.goods_net == 8980
    assert order.merchant_coupon_id == "c1"
    assert price.payable == 8980
    assert unit_refund(lines["m1:L1"].net, 2, 0, 1) == 2562
    assert unit_refund(lines["m1:L1"].net, 2, 1, 1) == 2562


def test_checkout_without_discounts_or_freight_charges_gross():
    """With nothing applied every line's net is its gross."""
    price = price_checkout([MerchantCart(merchant_id="m1", items=spec_lines())])
    (order,) = price.orders
    assert [line.net for line in order.lines] == [5980, 4500]
    assert (order.promotion_id, order.merchant_coupon_id, price.platform_coupon_id) == (None, None, None)
    assert price.payable == 10480


def test_promotion_applies_only_to_covered_lines():
    """The promotion's discount is apportioned over the lines its scope covers."""
    cart = MerchantCart(
        merchant_id="m1",
        items=(item("m1:a", unit_price=3000), item("m1:b", unit_price=7000, brand_id="other")),
        promotion=promotion(tiers=((2000, 300),), scope=Scope(brand_ids=("brand-1",))),
    )
    lines = by_key(price_checkout([cart]).orders[0])
    assert lines["m1:a"].promotion_discount == 300
    assert lines["m1:b"].promotion_discount == 0


def test_promotion_threshold_tested_on_covered_lines_only():
    """Goods outside the promotion's scope do not count toward its tiers."""
    cart = MerchantCart(
        merchant_id="m1",
        items=(item("m1:a", unit_price=1000), item("m1:b", unit_price=9000, brand_id="other")),
        promotion=promotion(tiers=((2000, 300),), scope=Scope(brand_ids=("brand-1",))),
    )
    order = price_checkout([cart]).orders[0]
    assert order.promotion_discount == 0


def test_promotion_reaching_no_tier_gives_nothing_without_error():
    """A promotion below its lowest tier gives 0, and the order records no promotion."""
    cart = MerchantCart(merchant_id="m1", items=spec_lines(), promotion=promotion(tiers=((20000, 1000),)))
    order = price_checkout([cart]).orders[0]
    assert order.promotion_discount == 0
    assert order.promotion_id is None
    assert order.goods_net == 10480


def test_promotion_of_another_merchant_is_refused():
    """A promotion can only apply to its own merchant's order."""
    cart = MerchantCart(merchant_id="m1", items=spec_lines(), promotion=promotion(merchant_id="m2"))
    with pytest.raises(ValueError, match="belongs to merchant m2"):
        price_checkout([cart])


def test_merchant_coupon_threshold_tested_after_promotion():
    """Spec §5.3: the promotion applies first; the coupon's threshold is tested on what is left."""
    cart = MerchantCart(
        merchant_id="m1",
        items=spec_lines(),  # gross 10480
        promotion=promotion(tiers=((10000, 500),)),  # leaves 9980
        coupon=coupon(spend_get(10000, 1500, funding="m1")),
    )
    with pytest.raises(CouponNotUsable) as refused:
        price_checkout([cart])
    assert "c1" in refused.value.message and "9980" in refused.value.message
    assert refused.value.details["eligible_amount"] == 9980


def test_coupon_apportioned_by_amount_left_after_promotion():
    """Each step splits its discount by what lines have left, not by gross."""
    cart = MerchantCart(
        merchant_id="m1",
        items=(item("m1:a", unit_price=1000), item("m1:b", unit_price=1000, brand_id="other")),
        promotion=promotion(tiers=((1000, 500),), scope=Scope(brand_ids=("brand-1",))),
        coupon=coupon(cash(300, funding="m1")),
    )
    lines = by_key(price_checkout([cart]).orders[0])
    # left after promotion: a 500, b 1000 → coupon 300 split 100 / 200 (by gross it would be 150/150)
    assert lines["m1:a"].merchant_coupon_discount == 100
    assert lines["m1:b"].merchant_coupon_discount == 200
    assert (lines["m1:a"].net, lines["m1:b"].net) == (400, 800)


def test_coupon_capped_by_what_is_left_so_no_line_goes_negative():
    """A coupon larger than the goods left reduces them to zero and no further."""
    cart = MerchantCart(
        merchant_id="m1",
        items=(item("m1:a", unit_price=700), item("m1:b", unit_price=300)),
        coupon=coupon(cash(5000, funding="m1")),
    )
    order = price_checkout([cart]).orders[0]
    assert order.merchant_coupon_discount == 1000
    assert [line.net for line in order.lines] == [0, 0]


def test_coupon_scope_limits_eligible_lines():
    """A scoped coupon discounts only the lines its scope covers."""
    cart = MerchantCart(
        merchant_id="m1",
        items=(item("m1:a", unit_price=1000), item("m1:b", unit_price=1000)),
        coupon=coupon(cash(300, funding="m1", scope=Scope(sku_ids=("b",)))),
    )
    lines = by_key(price_checkout([cart]).orders[0])
    assert (lines["m1:a"].merchant_coupon_discount, lines["m1:b"].merchant_coupon_discount) == (0, 300)


def test_coupon_covering_no_line_is_refused():
    """A chosen coupon that applies to none of the goods raises rather than being ignored."""
    cart = MerchantCart(
        merchant_id="m1",
        items=spec_lines(),
        coupon=coupon(cash(300, funding="m1", scope=Scope(sku_ids=("nope",)))),
    )
    with pytest.raises(CouponNotUsable, match="covers none"):
        price_checkout([cart])


def test_coupon_with_nothing_left_to_discount_is_refused():
    """A coupon whose eligible goods were already fully discounted cannot be used."""
    cart = MerchantCart(
        merchant_id="m1",
        items=(item("m1:a", unit_price=100),),
        promotion=promotion(tiers=((100, 100),)),
        coupon=coupon(cash(50, funding="m1")),
    )
    with pytest.raises(CouponNotUsable):
        price_checkout([cart])


def test_merchant_coupon_funded_by_another_merchant_is_refused():
    """A store coupon of merchant m2 cannot be used on m1's order (code coupon_not_usable)."""
    cart = MerchantCart(merchant_id="m1", items=spec_lines(), coupon=coupon(cash(100, funding="m2")))
    with pytest.raises(CouponNotUsable) as refused:
        price_checkout([cart])
    assert refused.value.code == "coupon_not_usable"
    assert isinstance(refused.value, DomainError)
    assert "funded by merchant m2" in refused.value.message
    assert "merchant m1's order" in refused.value.message


def test_platform_coupon_cannot_be_a_merchant_coupon():
    """A platform-funded coupon in a merchant order's coupon slot is refused."""
    cart = MerchantCart(merchant_id="m1", items=spec_lines(), coupon=coupon(cash(100)))
    with pytest.raises(CouponNotUsable, match="funded by the platform"):
        price_checkout([cart])


def test_merchant_coupon_cannot_be_the_platform_coupon():
    """Only a platform-funded coupon can apply across the checkout."""
    cart = MerchantCart(merchant_id="m1", items=spec_lines())
    with pytest.raises(CouponNotUsable) as refused:
        price_checkout([cart], coupon(cash(100, funding="m1")))
    assert refused.value.code == "coupon_not_usable"


def two_merchants(**cart_overrides) -> list[MerchantCart]:
    return [
        MerchantCart(merchant_id="m1", items=(item("m1:a", unit_price=1000),), **cart_overrides),
        MerchantCart(
            merchant_id="m2", items=(item("m2:a", unit_price=1000, merchant_id="m2", sku_id="a2"),)
        ),
    ]


def test_platform_coupon_apportioned_across_orders():
    """The platform coupon is split over eligible lines of all orders of the checkout."""
    price = price_checkout(two_merchants(), coupon(cash(600), coupon_id="pc"))
    assert [order.platform_coupon_discount for order in price.orders] == [300, 300]
    assert price.platform_coupon_id == "pc"
    assert price.platform_coupon_discount == 600
    assert price.payable == 1400


def test_platform_coupon_tie_goes_to_earlier_order_line():
    """Equal remainders across orders: the left-over unit goes to the line that comes first."""
    price = price_checkout(two_merchants(), coupon(cash(1)))
    assert [order.platform_coupon_discount for order in price.orders] == [1, 0]


def test_platform_coupon_threshold_tested_after_merchant_discounts():
    """The platform threshold is tested on what is left after promotions and merchant coupons."""
    carts = two_merchants(coupon=coupon(cash(100, funding="m1")))  # 2000 → 1900 left
    with pytest.raises(CouponNotUsable) as refused:
        price_checkout(carts, coupon(spend_get(2000, 300)))
    assert refused.value.details["eligible_amount"] == 1900
    assert price_checkout(carts, coupon(spend_get(1900, 300))).platform_coupon_discount == 300


def test_platform_coupon_split_by_amount_left_after_merchant_coupon():
    """Platform shares follow what each line has left after the merchant steps."""
    carts = two_merchants(coupon=coupon(cash(500, funding="m1")))  # left: 500 and 1000
    price = price_checkout(carts, coupon(cash(300)))
    assert [order.platform_coupon_discount for order in price.orders] == [100, 200]


def test_platform_coupon_scope_limits_orders_it_touches():
    """A scoped platform coupon only discounts the lines it covers, in whichever order."""
    price = price_checkout(two_merchants(), coupon(cash(300, scope=Scope(sku_ids=("a2",)))))
    assert [order.platform_coupon_discount for order in price.orders] == [0, 300]


def test_freight_per_order_uses_weight_count_and_goods_after_discounts():
    """Freight sums unit weight × quantity and tests free shipping on goods after every discount."""
    template = FreightTemplate(first_fee=800, additional_fee=300, free_threshold=9000)
    # weight 2 × 800 + 700 = 2300 g; gross 10480 would be free, net 8980 is not
    cart = MerchantCart(
        merchant_id="m1",
        items=spec_lines(),
        coupon=coupon(spend_get(10000, 1500, funding="m1")),
        freight=template,
    )
    order = price_checkout([cart]).orders[0]
    assert order.freight == 1400
    assert order.payable == 8980 + 1400


def test_freight_threshold_counts_platform_coupon_share():
    """The platform coupon's share also lowers the goods amount tested for free freight."""
    template = FreightTemplate(first_fee=800, additional_fee=300, free_threshold=10480)
    cart = MerchantCart(merchant_id="m1", items=spec_lines(), freight=template)
    assert price_checkout([cart]).orders[0].freight == 0
    assert price_checkout([cart], coupon(cash(1))).orders[0].freight == 1400


def test_checkout_refuses_two_carts_of_one_merchant_or_repeated_keys():
    """One order per merchant and unique line keys across the checkout."""
    cart = MerchantCart(merchant_id="m1", items=(item("m1:a"),))
    with pytest.raises(ValueError, match="one cart per merchant"):
        price_checkout([cart, cart])
    other = MerchantCart(merchant_id="m2", items=(item("m1:a", merchant_id="m2"),))
    with pytest.raises(ValueError, match="more than once"):
        price_checkout([cart, other])


def test_result_models_refuse_inconsistent_totals():
    """Price results check their own arithmetic, so a wrong snapshot cannot be built."""
    with pytest.raises(ValidationError):
        LinePrice(key="k", gross=100, promotion_discount=10, merchant_coupon_discount=0,
                  platform_coupon_discount=0, net=100)
    with pytest.raises(ValidationError):
        CheckoutPrice(orders=(), platform_coupon_id=None, platform_coupon_discount=0, payable=1)


# --------------------------------------------------------------------------- property: checkout

MERCHANTS = ("m1", "m2", "m3")
SKUS = ("s1", "s2", "s3", "s4")


@st.composite
def carts_and_platform_coupon(draw):
    carts = []
    for merchant_id in draw(st.lists(st.sampled_from(MERCHANTS), min_size=1, max_size=3, unique=True)):
        skus = draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=4, unique=True))
        items = tuple(
            item(
                f"{merchant_id}:{sku}",
                merchant_id=merchant_id,
                unit_price=draw(st.integers(0, 50_000)),
                quantity=draw(st.integers(1, 5)),
                weight_g=draw(st.integers(0, 3000)),
            )
            for sku in skus
        )
        carts.append(
            MerchantCart(
                merchant_id=merchant_id,
                items=items,
                promotion=draw(st.none() | promotions(merchant_id)),
                coupon=draw(st.none() | coupons(merchant_id)),
                freight=draw(st.none() | freight_templates()),
            )
        )
    return carts, draw(st.none() | coupons(PLATFORM))


def scopes():
    return st.just(Scope()) | st.builds(
        Scope,
        sku_ids=st.lists(st.sampled_from(SKUS), max_size=3, unique=True).map(tuple),
        excluded_sku_ids=st.lists(st.sampled_from(SKUS), max_size=1).map(tuple),
    )


def promotions(merchant_id):
    tier = st.builds(PromotionTier, threshold=st.integers(1, 100_000), amount_off=st.integers(1, 50_000))
    terms = st.builds(
        PromotionTerms, merchant_id=st.just(merchant_id),
        tiers=st.lists(tier, min_size=1, max_size=3).map(tuple), scope=scopes(),
    )
    return st.builds(AppliedPromotion, promotion_id=st.just(f"p-{merchant_id}"), terms=terms)


def coupons(funding):
    cash_terms = st.builds(
        CouponTerms, kind=st.just(CouponKind.CASH), amount_off=st.integers(1, 100_000),
        scope=scopes(), funding=st.just(funding),
    )
    threshold_terms = st.builds(
        CouponTerms, kind=st.just(CouponKind.THRESHOLD), threshold=st.integers(1, 50_000),
        amount_off=st.integers(1, 60_000), scope=scopes(), funding=st.just(funding),
    )
    percentage_terms = st.builds(
        CouponTerms, kind=st.just(CouponKind.PERCENTAGE), percent_off_bp=st.integers(1, 10_000),
        cap=st.none() | st.integers(1, 20_000), threshold=st.integers(0, 20_000),
        scope=scopes(), funding=st.just(funding),
    )
    terms = cash_terms | threshold_terms | percentage_terms
    return st.builds(AppliedCoupon, coupon_id=st.just(f"c-{funding}"), terms=terms)


def freight_templates():
    return st.builds(
        FreightTemplate, basis=st.sampled_from(FreightBasis), first_unit=st.integers(1, 2000),
        first_fee=st.integers(0, 2000), additional_unit=st.integers(1, 2000),
        additional_fee=st.integers(0, 1000), free_threshold=st.none() | st.integers(0, 100_000),
    )


@settings(max_examples=150, deadline=None)
@given(carts_and_platform_coupon())
def test_checkout_properties_on_random_carts(case):
    """Random carts: nets never negative, shares sum to each discount, payable = nets + freight."""
    carts, platform_coupon = case
    try:
        price = price_checkout(carts, platform_coupon)
    except CouponNotUsable as refused:
        # Refusals are legitimate (threshold, scope); they must say which coupon.
        assert refused.details["coupon_id"] in refused.message
        return

    all_lines = [line for order in price.orders for line in order.lines]
    assert all(line.net >= 0 for line in all_lines)
    for line in all_lines:
        assert line.net == (
            line.gross - line.promotion_discount - line.merchant_coupon_discount
            - line.platform_coupon_discount
        )
    assert price.platform_coupon_discount == sum(line.platform_coupon_discount for line in all_lines)
    assert price.payable == sum(line.net for line in all_lines) + sum(o.freight for o in price.orders)

    for cart, order in zip(carts, price.orders, strict=True):
        assert order.merchant_id == cart.merchant_id
        assert [line.key for line in order.lines] == [i.key for i in cart.items]
        assert order.promotion_discount == sum(line.promotion_discount for line in order.lines)
        assert order.merchant_coupon_discount == sum(
            line.merchant_coupon_discount for line in order.lines
        )
        assert order.payable == order.goods_net + order.freight
        if cart.promotion is not None:
            # the promotion's whole discount is shared out over its covered lines
            covered = [i for i in cart.items if cart.promotion.terms.scope.covers(i)]
            expected = cart.promotion.terms.discount_on(sum(i.gross for i in covered))
            assert order.promotion_discount == expected
        else:
            assert order.promotion_discount == 0
        lines = by_key(order)
        if cart.coupon is not None:
            # the coupon's whole discount, computed on what the promotion left, is shared out
            covered = [i for i in cart.items if cart.coupon.terms.scope.covers(i)]
            left = sum(lines[i.key].gross - lines[i.key].promotion_discount for i in covered)
            assert order.merchant_coupon_discount == cart.coupon.terms.discount_on(left)
        else:
            assert order.merchant_coupon_discount == 0
        expected_freight = (
            cart.freight.fee(
                weight_g=sum(i.weight_g * i.quantity for i in cart.items),
                item_count=sum(i.quantity for i in cart.items),
                goods_after_discounts=order.goods_net,
            )
            if cart.freight
            else 0
        )
        assert order.freight == expected_freight
    if platform_coupon is None:
        assert price.platform_coupon_discount == 0
    else:
        items = [i for cart in carts for i in cart.items if platform_coupon.terms.scope.covers(i)]
        line_of = {line.key: line for line in all_lines}
        left = sum(
            line_of[i.key].gross - line_of[i.key].promotion_discount
            - line_of[i.key].merchant_coupon_discount
            for i in items
        )
        assert price.platform_coupon_discount == platform_coupon.terms.discount_on(left)
