"""The state one simulated day works with, grouped by who holds it.

The script's steps (``opening``, ``trading``, ``shipping``, ``stocktake``,
``after_sales``) are plain functions of a ``Day``: the shop and its clock, the dice,
the run's ids, the customers, the parcels on their way, and the tally the summary is
made from.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from ecomcore.application.shop import Shop
from ecomcore.domain.pricing import CouponTerms
from ecomcore.infrastructure.clock import ManualClock
from ecomcore.simulation.customers import Customers
from ecomcore.simulation.provider import SimulatedProvider
from ecomcore.simulation.summary import DayTally


@dataclass
class RunIds:
    """Ids that are new on every run, since the store may hold earlier runs.

    Amounts never depend on them, so a seed still gives the same day.
    """

    seed: int
    token: str = field(default_factory=lambda: uuid4().hex[:10])
    _issued: Counter[str] = field(default_factory=Counter)

    def next(self, kind: str) -> str:
        """A request, payment or refund id: ``kind-token-seed-00001``."""
        return f"{kind}-{self.token}-{self.seed}-{self._count(kind):05d}"

    def waybill(self, carrier: str) -> str:
        return f"{carrier}{self.token.upper()}{self._count('waybill'):06d}"

    def return_waybill(self) -> str:
        return f"RET{self.token.upper()}{self._count('return'):05d}"

    def _count(self, kind: str) -> int:
        self._issued[kind] += 1
        return self._issued[kind]


@dataclass
class Parcels:
    """The paid parcels between the packing bench and the customer's door."""

    #: When the first parcels were delivered: their after-sales window closes first.
    first_deliveries_at: datetime
    #: Which warehouse packed each parcel: it decides the carrier and the last truck.
    warehouse_of: dict[UUID, str] = field(default_factory=dict)
    awaiting_truck: list[UUID] = field(default_factory=list)
    on_the_road: list[UUID] = field(default_factory=list)


@dataclass
class AfterSales:
    """The after-sales desk's (售后) open cases."""

    #: Only one customer refunds a whole checkout: once is enough to show it.
    refunded_a_checkout: bool = False
    #: Open returns: (order id, return id), in the order they were asked for.
    open_returns: list[tuple[UUID, UUID]] = field(default_factory=list)


@dataclass
class Day:
    """One simulated trading day in progress."""

    shop: Shop
    clock: ManualClock
    #: How many checkout attempts the day has.
    orders: int
    rng: random.Random
    opening: datetime
    ids: RunIds
    customers: Customers
    parcels: Parcels
    #: The day's campaigns by who funds them: campaign id and coupon terms.
    campaigns: dict[str, tuple[UUID, CouponTerms]] = field(default_factory=dict)
    #: Orders paid on time, in the order paid.
    paid_orders: list[UUID] = field(default_factory=list)
    after_sales: AfterSales = field(default_factory=AfterSales)
    tally: DayTally = field(default_factory=DayTally)
    #: The payment provider's side of the day: its statement.
    provider: SimulatedProvider = field(default_factory=SimulatedProvider)

    @classmethod
    def open(
        cls, shop: Shop, clock: ManualClock, *, orders: int, seed: int, provider: SimulatedProvider | None = None
    ) -> Day:
        rng = random.Random(seed)
        opening = clock.now()
        return cls(
            shop=shop, clock=clock, orders=orders, rng=rng, opening=opening, ids=RunIds(seed),
            # The customers draw first from the dice: their pinned fates are part of the seed's day.
            customers=Customers.for_the_day(orders, rng),
            parcels=Parcels(first_deliveries_at=opening),
            provider=provider if provider is not None else SimulatedProvider(),
        )

    def wait_until(self, days: int, hour: int, minute: int = 0) -> datetime:
        """Move the clock to ``hour:minute`` of the day ``days`` after opening (never back)."""
        moment = (self.opening + timedelta(days=days)).replace(hour=hour, minute=minute, second=0, microsecond=0)
        self.clock.set(max(moment, self.clock.now()))
        return self.clock.now()

    def minutes(self, low: float, high: float) -> timedelta:
        """A while of ``low`` to ``high`` minutes, to the second."""
        return timedelta(seconds=round(self.rng.uniform(low, high) * 60))
