"""Shared Hypothesis strategies for the aggregate unit tests, and the tiny builders they need."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from ecomcore.domain.aggregate import Aggregate, project
from ecomcore.domain.allocation import Allocation
from ecomcore.domain.catalogue import Sku
from ecomcore.domain.order import OrderLine

#: The moment every unit test starts at.
T0 = datetime(2026, 11, 11, 8, 0, tzinfo=UTC)


def make_sku(sku_id: str = "sku-1", *, weight_g: int = 500, unit_price: int = 1000, merchant_id: str = "m1") -> Sku:
    return Sku(
        sku_id=sku_id,
        spu_id=f"spu-{sku_id}",
        merchant_id=merchant_id,
        category_path=("food",),
        brand_id="brand-1",
        unit_price=unit_price,
        weight_g=weight_g,
        title=f"SKU {sku_id}",
    )


def make_line(
    line_no: int, sku_id: str, quantity: int, *, weight_g: int = 500, unit_price: int = 1000,
    allocations: dict[str, int] | None = None,
) -> OrderLine:
    """An order line without discounts; ``allocations`` maps warehouse → units (default: all in w1)."""
    allocations = allocations or {"w1": quantity}
    gross = unit_price * quantity
    return OrderLine(
        line_no=line_no,
        sku=make_sku(sku_id, weight_g=weight_g, unit_price=unit_price),
        quantity=quantity,
        gross=gross,
        promotion_discount=0,
        merchant_coupon_discount=0,
        platform_coupon_discount=0,
        net=gross,
        allocations=tuple(Allocation(warehouse_id=w, quantity=q) for w, q in allocations.items()),
    )


@st.composite
def order_lines(draw: st.DrawFn) -> list[OrderLine]:
    """1–5 lines, units spread over up to three warehouses, unit weights from 0 g to 25 kg."""
    lines = []
    for line_no in range(1, draw(st.integers(1, 5)) + 1):
        parts = draw(st.dictionaries(st.sampled_from(["w1", "w2", "w3"]), st.integers(1, 6), min_size=1))
        weight = draw(st.one_of(st.integers(0, 3_000), st.integers(3_000, 25_000)))
        lines.append(make_line(line_no, f"sku-{line_no}", sum(parts.values()), weight_g=weight, allocations=parts))
    return lines


_orders = st.integers(0, 3)  # index into a small pool of order ids
_qty = st.integers(1, 12)

#: One StockItem command as a tuple; "tick" moves the clock on by some minutes.
stock_commands = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), _qty),
        st.tuples(st.just("reserve"), _orders, _qty, st.integers(1, 120)),
        st.tuples(st.just("release"), _orders, st.none() | _qty),
        st.tuples(st.just("confirm"), _orders),
        st.tuples(st.just("dispatch"), _orders, _qty),
        st.tuples(st.just("count"), st.integers(0, 30)),
        st.tuples(st.just("tick"), st.integers(1, 90)),
    ),
    max_size=40,
)


def replayed(live: Aggregate) -> Any:
    """The aggregate rebuilt by replaying its whole history (earlier given events plus new ones)."""
    history = [*getattr(live, "given_history", []), *live.collect_events()]
    rebuilt = project(None, history)
    assert rebuilt is not None
    rebuilt.given_history = history  # type: ignore[attr-defined]
    return rebuilt


def state(aggregate: Aggregate) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k not in ("_pending", "given_history")}
