"""The evening stocktake (盘点): one shelf is a unit short of what orders have reserved,
so the count reveals a shortage; the other shelves counted match the books."""

from __future__ import annotations

from ecomcore.simulation.catalogue import stocked_items
from ecomcore.simulation.day import Day


def evening_stocktake(day: Day) -> None:
    day.wait_until(0, 22)
    now = day.clock.now()
    items = stocked_items(day.shop)
    promised = [item for item in items if item.reserved(now) > 0]
    # Short where orders rely on the units, so the count is a shortage against
    # reservations; a shop with nothing reserved loses a unit from its fullest shelf.
    if promised:
        short = min(promised, key=lambda item: (item.available(now), item.sku_id, item.warehouse_id))
        counted = short.reserved(now) - 1
    else:
        short = max(items, key=lambda item: (item.on_hand, item.sku_id, item.warehouse_id))
        counted = max(0, short.on_hand - 1)
    day.tally.stocktake_shortage += day.shop.count_stock(
        sku_id=short.sku_id, warehouse_id=short.warehouse_id, counted_quantity=counted,
        reason="evening stocktake: units missing from the shelf",
    )
    # The other shelves counted tonight match the books.
    for item in day.rng.sample(items, min(2, len(items))):
        if item is not short:
            day.shop.count_stock(
                sku_id=item.sku_id, warehouse_id=item.warehouse_id, counted_quantity=max(0, item.on_hand),
                reason="evening stocktake",
            )
