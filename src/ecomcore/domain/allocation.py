"""Warehouse allocation at placement (spec §5.2): which warehouses reserve each line.

For each merchant order, the first warehouse by priority that can supply every line
takes the whole order; otherwise each line is filled from the warehouses in priority
order, split across them if it must be.  The caller gathers what each warehouse has
available; this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import Field

from ecomcore.domain.catalogue import Warehouse
from ecomcore.domain.errors import InsufficientStock
from ecomcore.domain.values import Value

#: Units of a SKU available now, by (sku id, warehouse id); a missing pair has none.
Availability = Mapping[tuple[str, str], int]


class Allocation(Value):
    """Units of a line reserved in one warehouse."""

    warehouse_id: str
    quantity: int = Field(gt=0)


def allocate(
    orders: Iterable[Mapping[str, int]], warehouses: Iterable[Warehouse], available: Availability
) -> dict[str, tuple[Allocation, ...]]:
    """Allocate every line of every merchant order (units by SKU id), all or nothing.

    Returns the allocations by SKU id; raises ``InsufficientStock`` naming every SKU
    the warehouses together cannot supply (with what they have in all).
    """
    by_priority = sorted(warehouses, key=lambda w: (w.priority, w.warehouse_id))
    allocations: dict[str, tuple[Allocation, ...]] = {}
    shortages: list[dict[str, Any]] = []
    for order in orders:
        single = _single_warehouse(order, by_priority, available)
        for sku_id, wanted in order.items():
            if single is not None:
                allocations[sku_id] = (Allocation(warehouse_id=single, quantity=wanted),)
                continue
            allocations[sku_id] = _split(sku_id, wanted, by_priority, available)
            missing = wanted - sum(part.quantity for part in allocations[sku_id])
            if missing:
                total = sum(available.get((sku_id, w.warehouse_id), 0) for w in by_priority)
                shortages.append({"sku_id": sku_id, "available": total, "requested": wanted})
    if shortages:
        raise InsufficientStock(shortages)
    return allocations


def _single_warehouse(
    order: Mapping[str, int], warehouses: Sequence[Warehouse], available: Availability
) -> str | None:
    """The first warehouse that can supply the whole order, if any."""
    for warehouse in warehouses:
        if all(available.get((sku_id, warehouse.warehouse_id), 0) >= wanted for sku_id, wanted in order.items()):
            return warehouse.warehouse_id
    return None


def _split(
    sku_id: str, wanted: int, warehouses: Sequence[Warehouse], available: Availability
) -> tuple[Allocation, ...]:
    """Fill one line from the warehouses in priority order; short if they hold too little."""
    parts: list[Allocation] = []
    for warehouse in warehouses:
        take = min(wanted, available.get((sku_id, warehouse.warehouse_id), 0))
        if take > 0:
            parts.append(Allocation(warehouse_id=warehouse.warehouse_id, quantity=take))
            wanted -= take
        if wanted == 0:
            break
    return tuple(parts)
