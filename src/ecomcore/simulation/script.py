"""The day's running order, from opening to the sweep a week later."""

from __future__ import annotations

from ecomcore.application.shop import Shop
from ecomcore.infrastructure.clock import ManualClock
from ecomcore.simulation.after_sales import (
    after_sales_window_passes,
    customers_ask_for_after_sales,
    returns_arrive,
)
from ecomcore.simulation.day import Day
from ecomcore.simulation.opening import open_the_shop
from ecomcore.simulation.provider import SimulatedProvider
from ecomcore.simulation.shipping import (
    customers_confirm_receipt,
    later_deliveries,
    next_day_deliveries,
)
from ecomcore.simulation.stocktake import evening_stocktake
from ecomcore.simulation.summary import DaySummary, summarise
from ecomcore.simulation.trading import Progress, payment_deadlines_pass, trade


def simulate_trading_day(
    shop: Shop,
    clock: ManualClock,
    *,
    orders: int,
    seed: int,
    progress: Progress | None = None,
    provider: SimulatedProvider | None = None,
) -> DaySummary:
    """Run one simulated trading day of ``orders`` checkout attempts on ``shop``.

    ``clock`` must be the shop's clock: the day moves it forward (by a little over
    eight days in all, so that the after-sales window passes for part of the orders).
    ``progress(done, total)`` is called after each checkout attempt.  ``provider``, if
    given, collects the payment provider's transactions (its statement).
    """
    if orders < 1:
        raise ValueError(f"a trading day needs at least one order, got {orders}")
    if shop.clock is not clock:
        raise ValueError("the simulation moves the shop's own clock; pass the clock the shop was opened with")
    day = Day.open(shop, clock, orders=orders, seed=seed, provider=provider)
    # The order of the steps is part of the seed's day: each draws from the same dice.
    open_the_shop(day)
    trade(day, progress or _no_progress)
    evening_stocktake(day)
    next_day_deliveries(day)
    payment_deadlines_pass(day)
    customers_ask_for_after_sales(day)
    customers_confirm_receipt(day)
    later_deliveries(day)
    returns_arrive(day)
    after_sales_window_passes(day)
    return summarise(shop, day.tally, trading_day=day.opening.date(), now=clock.now())


def _no_progress(done: int, total: int) -> None:
    pass
