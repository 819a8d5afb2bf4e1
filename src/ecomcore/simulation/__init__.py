"""A simulated trading day on a Shop, so a newcomer sees the whole system work at once.

One day of a small marketplace (Double 11): four merchants with freight templates, a
dozen SKUs stocked in three warehouses, an automatic tiered promotion, platform and
merchant coupon campaigns, and customers who check out multi-merchant carts, pay (on
time, a few minutes later, or too late), cancel or walk away.  The warehouses dispatch
in waves until each one's last truck, carriers report tracking, parcels are delivered
(one fails), customers confirm receipt, the stock is counted in the evening, and a
week later the sweeper completes the orders whose after-sales window has passed.

Every choice comes from ``random.Random(seed)``, so the amounts of a run are the same
for a seed on a fresh store.  Ids are not: the store may already hold earlier runs, so
request, payment and waybill ids carry a fresh run token, and campaigns get new ids.

Where things live: ``catalogue`` (what is sold, from where, and the day's campaigns),
``script`` (the running order) with its steps ``opening``, ``trading``, ``shipping``,
``stocktake`` and ``after_sales`` acting on a ``day.Day``, ``customers`` (their
choices), ``summary`` (the tally the steps keep, the ``DaySummary`` it becomes, and how
it reads), and ``morning`` (when a day opens on a store that may hold earlier runs).
"""

from ecomcore.simulation.morning import FIRST_TRADING_MORNING, trading_morning
from ecomcore.simulation.provider import ProviderTransaction, SimulatedProvider
from ecomcore.simulation.script import simulate_trading_day
from ecomcore.simulation.summary import (
    DaySummary,
    LowStockAlert,
    count_rows,
    state_and_stock_sections,
)

__all__ = [
    "FIRST_TRADING_MORNING",
    "DaySummary",
    "LowStockAlert",
    "ProviderTransaction",
    "SimulatedProvider",
    "count_rows",
    "simulate_trading_day",
    "state_and_stock_sections",
    "trading_morning",
]
