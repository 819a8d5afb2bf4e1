"""The day's customers: what they hold, what they put in their carts, what they do next.

Every choice is drawn from the day's ``random.Random``, in a fixed order, so that a
seed always gives the same day.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeVar
from uuid import UUID

from ecomcore.application.receipts import CheckoutReceipt
from ecomcore.domain.pricing import CouponTerms
from ecomcore.simulation.catalogue import LISTINGS, MERCHANTS


class Fate(StrEnum):
    """What the customer does after placing a checkout."""

    PAY_NOW = "pay_now"
    PAY_SOON = "pay_soon"  # switches to the payment app, pays a few minutes later
    CANCEL = "cancel"  # changes their mind before paying
    ABANDON = "abandon"  # never pays in time; the sweeper expires it


#: (fate, weight): most customers pay.
_FATES = ((Fate.PAY_NOW, 62), (Fate.PAY_SOON, 20), (Fate.CANCEL, 8), (Fate.ABANDON, 10))


@dataclass(frozen=True)
class HeldCoupon:
    coupon_id: UUID
    terms: CouponTerms


@dataclass(order=True)
class PlannedAction:
    """Something a customer will do at ``due`` (ties go to the earlier checkout)."""

    due: datetime
    checkout_number: int
    fate: Fate = field(compare=False)
    receipt: CheckoutReceipt = field(compare=False)
    customer_id: str = field(compare=False)
    coupons: tuple[HeldCoupon, ...] = field(compare=False, default=())


@dataclass
class Customers:
    """Who shops today, the coupons in their wallets, and what they have planned."""

    ids: list[str]
    wallets: dict[str, list[HeldCoupon]]
    #: Fates that must happen even on a short day, by checkout number.
    pinned_fates: dict[int, Fate]
    #: Soonest first.
    planned: list[PlannedAction] = field(default_factory=list)
    #: Checkouts nobody will pay in time.
    abandoned: list[CheckoutReceipt] = field(default_factory=list)

    @classmethod
    def for_the_day(cls, orders: int, rng: random.Random) -> Customers:
        """About one customer per two checkouts, so some come back for a second cart."""
        ids = [f"cust-{n:04d}" for n in range(1, max(5, orders // 2) + 1)]
        # Pinned to early checkouts, while every warehouse still has stock.
        early = range(1, max(4, orders // 2) + 1)
        pinned = rng.sample(early, 3)
        pinned_fates = dict(zip(pinned, (Fate.CANCEL, Fate.ABANDON, Fate.ABANDON), strict=True))
        return cls(ids=ids, wallets={c: [] for c in ids}, pinned_fates=pinned_fates)

    def fate_of(self, checkout_number: int, rng: random.Random) -> Fate:
        # The dice are rolled only for checkouts whose fate is not pinned.
        return self.pinned_fates.get(checkout_number) or rng.choices(
            [fate for fate, _ in _FATES], [weight for _, weight in _FATES]
        )[0]

    def plan(self, action: PlannedAction) -> None:
        bisect.insort(self.planned, action)

    def due_by(self, moment: datetime) -> Iterator[PlannedAction]:
        """The planned actions due by ``moment``, soonest first, each taken off the plan."""
        while self.planned and self.planned[0].due <= moment:
            yield self.planned.pop(0)


def fill_cart(rng: random.Random) -> dict[str, int]:
    """One to three merchants, one or two of each one's SKUs, mostly a single unit."""
    merchants = _distinct_choices(
        rng, MERCHANTS, [m.popularity for m in MERCHANTS], rng.choices((1, 2, 3), (60, 30, 10))[0]
    )
    cart: dict[str, int] = {}
    for merchant in merchants:
        listings = [listing for listing in LISTINGS if listing.sku.merchant_id == merchant.merchant_id]
        picked = _distinct_choices(
            rng, listings, [listing.popularity for listing in listings], rng.choice((1, 1, 2))
        )
        for listing in picked:
            cart[listing.sku.sku_id] = rng.choices((1, 2, 3), (70, 20, 10))[0]
    return cart


def coupons_worth_trying(
    wallet: Iterable[HeldCoupon], cart: dict[str, int]
) -> tuple[tuple[HeldCoupon, ...], HeldCoupon | None]:
    """The storefront's pick: per merchant the first held coupon the cart's gross reaches.

    A guess on gross prices: the shop's checkout, which knows the promotions, has the
    last word.
    """
    gross_by_merchant: Counter[str] = Counter()
    for listing in LISTINGS:
        if listing.sku.sku_id in cart:
            gross_by_merchant[listing.sku.merchant_id] += listing.sku.unit_price * cart[listing.sku.sku_id]
    merchant_coupons: dict[str, HeldCoupon] = {}
    platform_coupon = None
    for coupon in wallet:
        funding = coupon.terms.funding
        if coupon.terms.is_platform:
            if platform_coupon is None and sum(gross_by_merchant.values()) >= coupon.terms.threshold:
                platform_coupon = coupon
        elif funding not in merchant_coupons and gross_by_merchant[funding] >= max(1, coupon.terms.threshold):
            merchant_coupons[funding] = coupon
    return tuple(merchant_coupons.values()), platform_coupon


T = TypeVar("T")


def _distinct_choices(rng: random.Random, population: Iterable[T], weights: list[int], k: int) -> list[T]:
    """``k`` different members, drawn by weight (``random.choices`` may repeat one)."""
    pool, pool_weights = list(population), list(weights)
    picked = []
    for _ in range(min(k, len(pool))):
        index = rng.choices(range(len(pool)), pool_weights)[0]
        picked.append(pool.pop(index))
        pool_weights.pop(index)
    return picked
