"""Stock: setting up, receiving, counting and writing off the stock of a SKU in a warehouse."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from uuid import UUID

from ecomcore.application.commands import CountStock, ReceiveStock, SetUpStock, WriteOffStock
from ecomcore.application.handlers.catalogue import known_sku, known_warehouse
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.allocation import Allocation
from ecomcore.domain.order import OrderLine
from ecomcore.domain.stock_item import StockItem, stock_item_id


def set_up_stock(uow: UnitOfWork, c: SetUpStock) -> UUID:
    """Create the StockItem of a SKU in a warehouse, or update its safety stock."""
    known_sku(uow.catalogue, c.sku_id), known_warehouse(uow.catalogue, c.warehouse_id)
    item = uow.find(StockItem, stock_item_id(c.sku_id, c.warehouse_id))
    if item is None:
        item = uow.add(
            StockItem.set_up(
                c.sku_id, c.warehouse_id, uow.now, safety_stock=c.safety_stock, reorder_quantity=c.reorder_quantity
            )
        )
    else:
        item.set_safety_stock(c.safety_stock, c.reorder_quantity, uow.now)
    return item.id


def receive_stock(uow: UnitOfWork, c: ReceiveStock) -> int:
    item = stock_item(uow, c.sku_id, c.warehouse_id)
    item.receive(c.quantity, c.reference, uow.now)
    return item.on_hand


def count_stock(uow: UnitOfWork, c: CountStock) -> int:
    item = stock_item(uow, c.sku_id, c.warehouse_id)
    shortage = max(0, item.reserved(uow.now) - c.counted_quantity)
    item.count(c.counted_quantity, c.reason, uow.now)
    return shortage


def write_off_stock(uow: UnitOfWork, c: WriteOffStock) -> int:
    item = uow.get(StockItem, stock_item_id(c.sku_id, c.warehouse_id), "stock item")
    item.write_off(c.quantity, c.reason, uow.now)
    return item.on_hand


def available(uow: UnitOfWork, sku_id: str, warehouse_id: str | None) -> int:
    """Units that can be reserved now, in one warehouse or over all of them."""
    warehouses = [warehouse_id] if warehouse_id else [w.warehouse_id for w in uow.catalogue.warehouses()]
    total = 0
    for wid in warehouses:
        item = uow.find(StockItem, stock_item_id(sku_id, wid))
        total += item.available(uow.now) if item else 0
    return total


def stock_item(uow: UnitOfWork, sku_id: str, warehouse_id: str) -> StockItem:
    """The StockItem of a SKU in a warehouse, registered (empty) if it has none yet."""
    item = uow.find(StockItem, stock_item_id(sku_id, warehouse_id))
    if item is None:
        known_sku(uow.catalogue, sku_id), known_warehouse(uow.catalogue, warehouse_id)
        item = uow.add(StockItem.register(sku_id, warehouse_id, uow.now))
    return item


def allocated_stock(uow: UnitOfWork, lines: Iterable[OrderLine]) -> Iterator[tuple[StockItem, Allocation]]:
    """Each warehouse allocation of the order lines, with the StockItem it draws on."""
    for line in lines:
        for allocation in line.allocations:
            yield uow.get(StockItem, stock_item_id(line.sku.sku_id, allocation.warehouse_id)), allocation
