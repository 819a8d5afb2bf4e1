"""Exact money arithmetic: apportionment by largest remainder, percentages, unit refunds (spec §3)."""

from __future__ import annotations

from collections.abc import Sequence

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
