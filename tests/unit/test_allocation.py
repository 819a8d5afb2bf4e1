"""Warehouse allocation at placement (spec §5.2): a pure rule over what each warehouse has available."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecomcore.domain.allocation import Allocation, allocate
from ecomcore.domain.catalogue import Warehouse
from ecomcore.domain.errors import InsufficientStock

NEAR = Warehouse(warehouse_id="near", region="east", priority=1)
FAR = Warehouse(warehouse_id="far", region="west", priority=2)
SPARE = Warehouse(warehouse_id="spare", region="north", priority=3)


def parts(*pairs: tuple[str, int]) -> tuple[Allocation, ...]:
    return tuple(Allocation(warehouse_id=w, quantity=q) for w, q in pairs)


def test_first_warehouse_that_supplies_the_whole_order_takes_it() -> None:
    """The highest-priority warehouse that can supply every line of a merchant order takes all of it."""
    available = {("a", "near"): 5, ("b", "near"): 0, ("a", "far"): 2, ("b", "far"): 1}
    found = allocate([{"a": 2, "b": 1}], [NEAR, FAR], available)
    assert found == {"a": parts(("far", 2)), "b": parts(("far", 1))}


def test_priority_not_listing_order_decides() -> None:
    """Warehouses are tried by priority (then id), whatever order they are given in."""
    available = {("a", "near"): 3, ("a", "far"): 3}
    assert allocate([{"a": 2}], [FAR, NEAR], available) == {"a": parts(("near", 2))}
    twin = Warehouse(warehouse_id="another", region="east", priority=1)
    assert allocate([{"a": 2}], [NEAR, twin], {("a", "near"): 3, ("a", "another"): 3}) == {
        "a": parts(("another", 2))
    }


def test_without_a_single_warehouse_each_line_fills_in_priority_order() -> None:
    """No warehouse holds everything: each line is filled from the warehouses in priority order, split if needed."""
    available = {("a", "near"): 1, ("a", "far"): 1, ("a", "spare"): 5, ("b", "near"): 1}
    found = allocate([{"a": 4, "b": 1}], [NEAR, FAR, SPARE], available)
    assert found == {"a": parts(("near", 1), ("far", 1), ("spare", 2)), "b": parts(("near", 1))}


def test_each_merchant_order_is_allocated_on_its_own() -> None:
    """One merchant order may go to one warehouse and another's to a different one."""
    available = {("a", "near"): 1, ("b", "near"): 0, ("b", "far"): 1}
    found = allocate([{"a": 1}, {"b": 1}], [NEAR, FAR], available)
    assert found == {"a": parts(("near", 1)), "b": parts(("far", 1))}


def test_shortage_names_every_sku_with_what_all_warehouses_have() -> None:
    """All or nothing: every SKU the warehouses cannot supply together is named with its total available."""
    available = {("a", "near"): 1, ("a", "far"): 1, ("b", "near"): 5}
    with pytest.raises(InsufficientStock) as refused:
        allocate([{"a": 3, "b": 2}, {"c": 1}], [NEAR, FAR], available)
    assert refused.value.shortages == [
        {"sku_id": "a", "available": 2, "requested": 3},
        {"sku_id": "c", "available": 0, "requested": 1},
    ]
    assert refused.value.code == "insufficient_stock"


@given(
    st.lists(
        st.dictionaries(st.sampled_from("abcd"), st.integers(1, 6), min_size=1, max_size=3), min_size=1, max_size=3
    ),
    st.dictionaries(st.tuples(st.sampled_from("abcd"), st.sampled_from(["near", "far", "spare"])), st.integers(0, 8)),
)
def test_allocations_never_exceed_what_is_available_and_cover_each_line(
    orders: list[dict[str, int]], available: dict[tuple[str, str], int]
) -> None:
    """Whatever the stock, an allocation covers each line exactly and takes no more than a warehouse has."""
    # A SKU belongs to one merchant, so it is in one merchant order only.
    orders = [
        {sku: n for sku, n in order.items() if not any(sku in earlier for earlier in orders[:i])}
        for i, order in enumerate(orders)
    ]
    orders = [order for order in orders if order]
    try:
        found = allocate(orders, [NEAR, FAR, SPARE], available)
    except InsufficientStock as refused:
        for shortage in refused.shortages:
            have = sum(available.get((shortage["sku_id"], w), 0) for w in ("near", "far", "spare"))
            assert shortage["available"] == have < shortage["requested"]
        return
    for order in orders:
        for sku, wanted in order.items():
            assert sum(part.quantity for part in found[sku]) == wanted
            for part in found[sku]:
                assert part.quantity <= available.get((sku, part.warehouse_id), 0)
