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
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict

from ecomcore.application.commands import CheckoutReceipt, PaymentReceipt, RefundReceipt
from ecomcore.application.shop import Shop
from ecomcore.domain.catalogue import Sku
from ecomcore.domain.coupon import IssueChannel, Validity
from ecomcore.domain.errors import CampaignRefused, CouponNotUsable, InsufficientStock
from ecomcore.domain.order import CancelReason, OrderState
from ecomcore.domain.pricing import (
    PLATFORM,
    CouponKind,
    CouponTerms,
    FreightBasis,
    FreightTemplate,
    PromotionTerms,
    PromotionTier,
    Scope,
    apportion,
)
from ecomcore.domain.shipment import ShipmentState
from ecomcore.domain.stock_item import StockItem
from ecomcore.infrastructure.clock import ManualClock

__all__ = ["DaySummary", "LowStockAlert", "simulate_trading_day"]

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- the summary


class LowStockAlert(BaseModel):
    """A stock item at or below its safety stock: a reorder suggestion (采购建议)."""

    model_config = ConfigDict(frozen=True)
    sku_id: str
    warehouse_id: str
    available: int
    safety_stock: int


class DaySummary(BaseModel):
    """What the day did, over the checkouts, orders and shipments of this run only."""

    model_config = ConfigDict(frozen=True)
    trading_day: date
    currency: str
    orders_by_state: dict[OrderState, int]
    checkouts_placed: int
    checkouts_refused_for_stock: int
    #: Cancelled by the customer before paying.
    checkouts_cancelled: int
    #: Cancelled for payment timeout (by the sweeper, or by a late payment's arrival).
    checkouts_expired: int
    #: The sum of on-time payments.
    money_taken: int
    late_payments_refunded: int
    late_payments_refunded_amount: int
    coupons_issued: int
    stock_left: dict[str, int]
    low_stock_alerts: tuple[LowStockAlert, ...]
    #: Units the evening stocktake found missing against what orders had reserved.
    stocktake_shortage: int
    shipments_dispatched: int
    shipments_delivered: int
    shipments_failed: int
    #: What the final sweep did, a week later.
    orders_completed_by_sweep: int
    coupons_expired_by_sweep: int
    #: After-sales (售后): refunds only (before dispatch, lost parcel, missing item).
    refunds_only: int
    refunds_only_amount: int
    returns_requested: int
    returns_rejected: int
    returns_refunded: int
    returns_refunded_amount: int
    #: Returned units put back on the shelf, and returned units found damaged.
    units_restocked: int
    units_damaged: int
    #: Coupons that became available again because their orders were refunded in full.
    coupons_returned: int


# --------------------------------------------------------------------------- the shop's set-up

WAREHOUSES = (("wh-shanghai", "east", 1), ("wh-guangzhou", "south", 2), ("wh-chengdu", "west", 3))

#: Each warehouse's carrier and its last truck of the day, as a fraction of the
#: trading day: parcels paid later wait for tomorrow (and an order whose parcels come
#: from two warehouses may leave half-shipped).
CARRIERS = {"wh-shanghai": "SF", "wh-guangzhou": "ZTO", "wh-chengdu": "YTO"}
LAST_TRUCK = {"wh-shanghai": 0.9, "wh-guangzhou": 0.85, "wh-chengdu": 0.7}


@dataclass(frozen=True)
class _Merchant:
    merchant_id: str
    name: str
    freight: FreightTemplate
    #: How likely a cart holds this merchant's goods.
    popularity: int


MERCHANTS = (
    _Merchant(
        "m-teahouse", "West Lake Tea House",
        FreightTemplate(basis=FreightBasis.WEIGHT, first_fee=800, additional_fee=300, free_threshold=9900),
        popularity=30,
    ),
    _Merchant(
        "m-homegoods", "Good Home Living",
        FreightTemplate(basis=FreightBasis.WEIGHT, first_fee=1000, additional_fee=500, free_threshold=19900),
        popularity=30,
    ),
    _Merchant(
        "m-digital", "Bright Digital",
        FreightTemplate(basis=FreightBasis.COUNT, first_unit=1, first_fee=1200, additional_unit=1,
                        additional_fee=400, free_threshold=29900),
        popularity=25,
    ),
    _Merchant(
        "m-bookshop", "Old Street Books",
        FreightTemplate(basis=FreightBasis.COUNT, first_unit=1, first_fee=600, additional_unit=1,
                        additional_fee=200, free_threshold=5900),
        popularity=15,
    ),
)


@dataclass(frozen=True)
class _Listing:
    """A SKU on sale today: how popular it is and how it is stocked."""

    sku: Sku
    popularity: int
    #: Units stocked per 100 orders of the day, split over warehouses by percentage.
    units_per_100_orders: int
    warehouses: tuple[tuple[str, int], ...]


def _listing(
    sku_id: str, spu_id: str, merchant_id: str, category: tuple[str, ...], brand: str,
    price: int, weight_g: int, title: str,
    *, popularity: int, units_per_100_orders: int, warehouses: tuple[tuple[str, int], ...],
) -> _Listing:
    sku = Sku(
        sku_id=sku_id, spu_id=spu_id, merchant_id=merchant_id, category_path=category, brand_id=brand,
        unit_price=price, weight_g=weight_g, title=title,
    )
    return _Listing(sku, popularity, units_per_100_orders, warehouses)


SH, GZ, CD = "wh-shanghai", "wh-guangzhou", "wh-chengdu"

LISTINGS = (
    _listing("TEA-LJ-250", "TEA-LJ", "m-teahouse", ("food", "tea", "green-tea"), "xihu",
             12800, 300, "Longjing green tea, 250 g",
             popularity=40, units_per_100_orders=30, warehouses=((SH, 60), (GZ, 40))),
    _listing("TEA-PE-357", "TEA-PE", "m-teahouse", ("food", "tea", "dark-tea"), "menghai",
             8900, 400, "Pu'er tea cake, 357 g",
             popularity=35, units_per_100_orders=30, warehouses=((GZ, 100),)),
    _listing("TEA-GAIWAN", "TEA-GAIWAN", "m-teahouse", ("home", "tableware"), "jingdezhen",
             15900, 1200, "Porcelain gaiwan set",
             popularity=25, units_per_100_orders=24, warehouses=((SH, 50), (CD, 50))),
    _listing("HOME-WOK-32", "HOME-WOK", "m-homegoods", ("home", "kitchen", "cookware"), "zhangxiaoquan",
             25900, 4200, "Cast-iron wok, 32 cm",
             popularity=25, units_per_100_orders=22, warehouses=((SH, 100),)),
    # Heavy: two pairs exceed the carrier's 20 kg, so the parcel is split.
    _listing("HOME-DUMBBELL-10", "HOME-DUMBBELL", "m-homegoods", ("sports", "fitness"), "keep",
             19900, 10500, "Dumbbell pair, 10 kg",
             popularity=20, units_per_100_orders=18, warehouses=((CD, 100),)),
    _listing("HOME-RICE-10", "HOME-RICE", "m-homegoods", ("food", "grain"), "wuchang",
             8900, 10200, "Wuchang rice, 10 kg",
             popularity=30, units_per_100_orders=26, warehouses=((GZ, 50), (CD, 50))),
    _listing("HOME-TOWEL", "HOME-TOWEL", "m-homegoods", ("home", "textile"), "jielia",
             2990, 300, "Cotton towel",
             popularity=35, units_per_100_orders=32, warehouses=((SH, 34), (GZ, 33), (CD, 33))),
    # The day's door-buster: far more demand than stock, so later carts are refused.
    _listing("DIG-EARBUDS", "DIG-EARBUDS", "m-digital", ("digital", "audio"), "huawei",
             39900, 150, "Wireless earbuds",
             popularity=25, units_per_100_orders=8, warehouses=((SH, 50), (GZ, 50))),
    _listing("DIG-CHARGER-65", "DIG-CHARGER", "m-digital", ("digital", "accessories"), "anker",
             12900, 200, "65 W charger",
             popularity=30, units_per_100_orders=26, warehouses=((SH, 100),)),
    _listing("DIG-CABLE", "DIG-CABLE", "m-digital", ("digital", "accessories"), "anker",
             2900, 80, "USB-C cable",
             popularity=30, units_per_100_orders=26, warehouses=((SH, 50), (GZ, 50))),
    _listing("BOOK-THREE-BODY", "BOOK-THREE-BODY", "m-bookshop", ("books", "fiction"), "cq-press",
             9360, 1100, "The Three-Body Problem (trilogy)",
             popularity=50, units_per_100_orders=26, warehouses=((SH, 50), (CD, 50))),
    _listing("BOOK-DDIA", "BOOK-DDIA", "m-bookshop", ("books", "computing"), "oreilly",
             12800, 900, "Designing Data-Intensive Applications",
             popularity=30, units_per_100_orders=20, warehouses=((GZ, 100),)),
)

ADDRESSES = (
    "Nanjing Road 100, Shanghai",
    "Tianhe Road 208, Guangzhou",
    "Chunxi Road 18, Chengdu",
    "Wangfujing Street 66, Beijing",
    "Wensan Road 477, Hangzhou",
)


# --------------------------------------------------------------------------- customers' choices


class _Fate(StrEnum):
    """What the customer does after placing a checkout."""

    PAY_NOW = "pay_now"
    PAY_SOON = "pay_soon"  # switches to the payment app, pays a few minutes later
    CANCEL = "cancel"  # changes their mind before paying
    ABANDON = "abandon"  # never pays in time; the sweeper expires it


#: (fate, weight): most customers pay.
_FATES = ((_Fate.PAY_NOW, 62), (_Fate.PAY_SOON, 20), (_Fate.CANCEL, 8), (_Fate.ABANDON, 10))


@dataclass(frozen=True)
class _HeldCoupon:
    coupon_id: UUID
    terms: CouponTerms


@dataclass(order=True)
class _Action:
    """Something a customer will do at ``due``."""

    due: datetime
    seq: int
    fate: _Fate = field(compare=False)
    receipt: CheckoutReceipt = field(compare=False)
    customer_id: str = field(compare=False)
    coupons: tuple[_HeldCoupon, ...] = field(compare=False, default=())


# --------------------------------------------------------------------------- the day


def simulate_trading_day(
    shop: Shop,
    clock: ManualClock,
    *,
    orders: int,
    seed: int,
    progress: Progress | None = None,
) -> DaySummary:
    """Run one simulated trading day of ``orders`` checkout attempts on ``shop``.

    ``clock`` must be the shop's clock: the day moves it forward (by a little over
    eight days in all, so that the after-sales window passes for part of the orders).
    ``progress(done, total)`` is called after each checkout attempt.
    """
    if orders < 1:
        raise ValueError(f"a trading day needs at least one order, got {orders}")
    if shop.clock is not clock:
        raise ValueError("the simulation moves the shop's own clock; pass the clock the shop was opened with")
    return _TradingDay(shop, clock, orders=orders, seed=seed, progress=progress).run()


class _TradingDay:
    def __init__(self, shop: Shop, clock: ManualClock, *, orders: int, seed: int, progress: Progress | None):
        self.shop, self.clock = shop, clock
        self.orders, self.seed = orders, seed
        self.rng = random.Random(seed)
        self.progress = progress or (lambda done, total: None)
        # Ids must be new on every run (the store may hold earlier runs); amounts never
        # depend on them.
        self.run_token = uuid4().hex[:10]
        self.opening = clock.now()
        self.customers = [f"cust-{n:04d}" for n in range(1, max(5, orders // 2) + 1)]
        self.wallets: dict[str, list[_HeldCoupon]] = {c: [] for c in self.customers}
        #: The day's campaigns by who funds them: campaign id and coupon terms.
        self.campaigns: dict[str, tuple[UUID, CouponTerms]] = {}
        self.coupons_issued = 0
        self.checkouts: list[CheckoutReceipt] = []
        self.refused_for_stock = 0
        self.abandoned: list[CheckoutReceipt] = []
        self.actions: list[_Action] = []
        self.money_taken = 0
        self.late_payments: list[PaymentReceipt] = []
        self.paid_orders: list[UUID] = []
        self.shipment_warehouse: dict[UUID, str] = {}
        self.awaiting_truck: list[UUID] = []
        self.on_the_road: list[UUID] = []
        self.stocktake_shortage = 0
        self.first_deliveries_at = self.opening
        self.sweep_counts: dict[str, int] = {}
        self.refunds_only: list[RefundReceipt] = []
        self.return_refunds: list[RefundReceipt] = []
        #: Open returns: (order id, return id), in the order they were asked for.
        self.returns: list[tuple[UUID, UUID]] = []
        self.returns_requested = 0
        self.refunded_a_checkout = False
        self.returns_rejected = 0
        self.units_restocked = 0
        self.units_damaged = 0
        self.counter = Counter[str]()
        # A few paths must happen even on a short day: pinned to early checkouts,
        # while every warehouse still has stock.
        early = range(1, max(4, orders // 2) + 1)
        pinned = self.rng.sample(early, 3)
        self.pinned_fates = dict(zip(pinned, (_Fate.CANCEL, _Fate.ABANDON, _Fate.ABANDON), strict=True))

    def run(self) -> DaySummary:
        self._open_the_shop()
        self._trade()
        self._stocktake()
        self._next_day()
        self._payment_deadlines_pass()
        self._customers_ask_for_after_sales()
        self._customers_confirm_receipt()
        self._later_deliveries()
        self._returns_arrive()
        self._after_sales_window_passes()
        return self._summary()

    # ------------------------------------------------------------------ ids and time

    def _next_id(self, kind: str) -> str:
        self.counter[kind] += 1
        return f"{kind}-{self.run_token}-{self.seed}-{self.counter[kind]:05d}"

    def _day_at(self, days: int, hour: int, minute: int = 0) -> datetime:
        """Move the clock to ``hour:minute`` of the day ``days`` after opening (never back)."""
        moment = (self.opening + timedelta(days=days)).replace(hour=hour, minute=minute, second=0, microsecond=0)
        self.clock.set(max(moment, self.clock.now()))
        return self.clock.now()

    def _minutes(self, low: float, high: float) -> timedelta:
        return timedelta(seconds=round(self.rng.uniform(low, high) * 60))

    # ------------------------------------------------------------------ opening

    def _open_the_shop(self) -> None:
        shop = self.shop
        for warehouse_id, region, priority in WAREHOUSES:
            shop.register_warehouse(warehouse_id=warehouse_id, region=region, priority=priority)
        for merchant in MERCHANTS:
            shop.register_merchant(merchant_id=merchant.merchant_id, name=merchant.name, freight=merchant.freight)
        for listing in LISTINGS:
            shop.register_sku(listing.sku)
        self._stock_the_warehouses()
        self._add_tea_promotion()
        self._launch_campaigns()

    def _stock_the_warehouses(self) -> None:
        for listing in LISTINGS:
            total = max(3, math.ceil(listing.units_per_100_orders * self.orders / 100))
            shares = apportion(total, [percent for _, percent in listing.warehouses])
            for (warehouse_id, _), units in zip(listing.warehouses, shares, strict=True):
                if units == 0:
                    continue
                # Safety stock at a quarter of the delivery: busy SKUs raise alerts by evening.
                self.shop.set_up_stock(
                    sku_id=listing.sku.sku_id, warehouse_id=warehouse_id,
                    safety_stock=max(1, units // 4), reorder_quantity=units,
                )
                self.shop.receive_stock(
                    sku_id=listing.sku.sku_id, warehouse_id=warehouse_id, quantity=units,
                    reference=f"PO-{self.run_token}-{listing.sku.sku_id}",
                )

    def _add_tea_promotion(self) -> None:
        # The id names the day, so a later run adds its own promotion instead of
        # rewriting this one; the windows do not overlap.
        self.shop.add_promotion(
            promotion_id=f"tea-festival-{self.opening:%Y%m%d}",
            terms=PromotionTerms(
                merchant_id="m-teahouse",
                tiers=(
                    PromotionTier(threshold=20000, amount_off=2000),
                    PromotionTier(threshold=30000, amount_off=4000),
                ),
            ),
            starts_at=self.opening,
            ends_at=self.opening + timedelta(days=1),
        )

    def _launch_campaigns(self) -> None:
        campaigns = {
            PLATFORM: ("Double 11: 30 off 299", CouponTerms(
                kind=CouponKind.THRESHOLD, threshold=29900, amount_off=3000)),
            "m-digital": ("Bright Digital 10% off audio and accessories", CouponTerms(
                kind=CouponKind.PERCENTAGE, percent_off_bp=1000, cap=5000,
                scope=Scope(category_ids=("digital",)), funding="m-digital")),
            "m-bookshop": ("Old Street Books 20 off 150", CouponTerms(
                kind=CouponKind.THRESHOLD, threshold=15000, amount_off=2000, funding="m-bookshop")),
            # Rice is already sold at cost, so the homeware voucher leaves it out.
            "m-homegoods": ("Good Home 15 yuan voucher", CouponTerms(
                kind=CouponKind.CASH, amount_off=1500, scope=Scope(excluded_sku_ids=("HOME-RICE-10",)),
                funding="m-homegoods")),
        }
        for funding, (name, terms) in campaigns.items():
            campaign_id = self.shop.create_campaign(
                name=name, terms=terms,
                claim_starts_at=self.opening, claim_ends_at=self.opening + timedelta(days=1),
                validity=Validity(days_from_issue=7),
                total_quantity=max(5, self.orders // 3), per_customer_limit=1,
            )
            self.campaigns[funding] = (campaign_id, terms)
        # Members who opted in get the digital coupon pushed at opening.
        for customer_id in self.customers[::3]:
            self._issue("m-digital", customer_id, IssueChannel.PUSH)

    def _issue(self, funding: str, customer_id: str, channel: IssueChannel) -> None:
        campaign_id, terms = self.campaigns[funding]
        try:
            coupon_id = self.shop.issue_coupon(campaign_id=campaign_id, customer_id=customer_id, channel=channel)
        except CampaignRefused:
            return  # all gone, or this customer already has one: the storefront says so
        self.coupons_issued += 1
        self.wallets[customer_id].append(_HeldCoupon(coupon_id, terms))

    # ------------------------------------------------------------------ trading

    def _trade(self) -> None:
        self._day_at(0, 9)
        step = timedelta(hours=12) / self.orders
        wave_every = max(2, self.orders // 12)
        for n in range(1, self.orders + 1):
            self.clock.advance(step * self.rng.uniform(0.5, 1.5))
            self._customers_act()
            self._a_customer_checks_out()
            if n % wave_every == 0:
                self._dispatch_wave(n / self.orders)
            self.progress(n, self.orders)
        self._customers_act(until=self.clock.now() + timedelta(hours=1))

    def _a_customer_checks_out(self) -> None:
        customer_id = self.rng.choice(self.customers)
        self._browse_for_coupons(customer_id)
        cart = self._fill_cart()
        receipt, coupons = self._checkout(customer_id, cart)
        if receipt is None:
            return
        self.checkouts.append(receipt)
        fate = self.pinned_fates.get(len(self.checkouts)) or self._roll_fate()
        if fate is _Fate.PAY_NOW:
            self._pay(receipt)
        elif fate is _Fate.ABANDON:
            self.abandoned.append(receipt)
        else:
            delay = self._minutes(2, 20) if fate is _Fate.PAY_SOON else self._minutes(3, 30)
            action = _Action(self.clock.now() + delay, len(self.checkouts), fate, receipt, customer_id, coupons)
            bisect.insort(self.actions, action)

    def _browse_for_coupons(self, customer_id: str) -> None:
        if self.rng.random() < 0.35:
            self._issue(PLATFORM, customer_id, IssueChannel.CLAIM)
        if self.rng.random() < 0.15:
            self._issue(self.rng.choice(("m-bookshop", "m-homegoods")), customer_id, IssueChannel.CLAIM)

    def _fill_cart(self) -> dict[str, int]:
        merchants = _distinct_choices(
            self.rng, MERCHANTS, [m.popularity for m in MERCHANTS], self.rng.choices((1, 2, 3), (60, 30, 10))[0]
        )
        cart: dict[str, int] = {}
        for merchant in merchants:
            listings = [listing for listing in LISTINGS if listing.sku.merchant_id == merchant.merchant_id]
            picked = _distinct_choices(
                self.rng, listings, [listing.popularity for listing in listings], self.rng.choice((1, 1, 2))
            )
            for listing in picked:
                cart[listing.sku.sku_id] = self.rng.choices((1, 2, 3), (70, 20, 10))[0]
        return cart

    def _checkout(
        self, customer_id: str, cart: dict[str, int]
    ) -> tuple[CheckoutReceipt | None, tuple[_HeldCoupon, ...]]:
        merchant_coupons, platform_coupon = self._coupons_worth_trying(customer_id, cart)
        request_id = self._next_id("checkout")
        attempts: list[tuple[tuple[_HeldCoupon, ...], _HeldCoupon | None]] = [
            (merchant_coupons, platform_coupon),
            ((), None),
        ]
        for merchant_choice, platform_choice in attempts:
            try:
                receipt = self.shop.checkout(
                    customer_id=customer_id,
                    items=[{"sku_id": sku_id, "quantity": quantity} for sku_id, quantity in cart.items()],
                    merchant_coupon_ids=tuple(c.coupon_id for c in merchant_choice),
                    platform_coupon_id=platform_choice.coupon_id if platform_choice else None,
                    shipping_address=ADDRESSES[int(customer_id[-4:]) % len(ADDRESSES)],
                    client_request_id=request_id,
                )
            except InsufficientStock:
                self.refused_for_stock += 1
                return None, ()
            except CouponNotUsable:
                # The storefront's guess was wrong (a promotion took the cart below a
                # threshold): the customer checks out without coupons.
                continue
            used = (*merchant_choice, *([platform_choice] if platform_choice else []))
            for coupon in used:
                self.wallets[customer_id].remove(coupon)
            return receipt, used
        raise AssertionError("a checkout without coupons cannot be refused for its coupons")

    def _coupons_worth_trying(
        self, customer_id: str, cart: dict[str, int]
    ) -> tuple[tuple[_HeldCoupon, ...], _HeldCoupon | None]:
        """The storefront's pick: per merchant the first held coupon the cart's gross reaches."""
        gross_by_merchant: Counter[str] = Counter()
        for listing in LISTINGS:
            if listing.sku.sku_id in cart:
                gross_by_merchant[listing.sku.merchant_id] += listing.sku.unit_price * cart[listing.sku.sku_id]
        merchant_coupons: dict[str, _HeldCoupon] = {}
        platform_coupon = None
        for coupon in self.wallets[customer_id]:
            funding = coupon.terms.funding
            if coupon.terms.is_platform:
                if platform_coupon is None and sum(gross_by_merchant.values()) >= coupon.terms.threshold:
                    platform_coupon = coupon
            elif funding not in merchant_coupons and gross_by_merchant[funding] >= max(1, coupon.terms.threshold):
                merchant_coupons[funding] = coupon
        return tuple(merchant_coupons.values()), platform_coupon

    def _roll_fate(self) -> _Fate:
        return self.rng.choices([f for f, _ in _FATES], [w for _, w in _FATES])[0]

    def _customers_act(self, until: datetime | None = None) -> None:
        """Do what customers planned to do by now (or by ``until``, moving the clock)."""
        until = until or self.clock.now()
        while self.actions and self.actions[0].due <= until:
            action = self.actions.pop(0)
            self.clock.set(max(action.due, self.clock.now()))
            if action.fate is _Fate.PAY_SOON:
                self._pay(action.receipt)
            else:
                self.shop.cancel(checkout_id=action.receipt.checkout_id, reason=CancelReason.CUSTOMER)
                # The coupons are unlocked: the customer keeps them for another cart.
                self.wallets[action.customer_id].extend(action.coupons)
        self.clock.set(max(until, self.clock.now()))

    def _pay(self, receipt: CheckoutReceipt) -> PaymentReceipt:
        payment_id = self._next_id("pay")
        paid = self.shop.pay(
            checkout_id=receipt.checkout_id, payment_id=payment_id, amount=receipt.payable,
            provider_txn=f"alipay-{payment_id}",
        )
        if paid.outcome == "refunded":
            self.late_payments.append(paid)
            return paid
        self.money_taken += paid.amount
        self.paid_orders.extend(paid.order_ids)
        for shipment_id in paid.shipment_ids:
            self.shipment_warehouse[shipment_id] = self.shop.shipment(shipment_id).warehouse_id
            self.awaiting_truck.append(shipment_id)
        self._change_of_mind(paid)
        return paid

    # ------------------------------------------------------------------ shipping

    def _dispatch_wave(self, day_fraction: float) -> None:
        """Hand the packed parcels to the carriers, from warehouses whose last truck has not left."""
        leaving = [sid for sid in self.awaiting_truck if LAST_TRUCK[self.shipment_warehouse[sid]] >= day_fraction]
        for shipment_id in leaving:
            warehouse_id = self.shipment_warehouse[shipment_id]
            carrier = CARRIERS[warehouse_id]
            self.counter["waybill"] += 1
            self.shop.dispatch(
                shipment_id=shipment_id, carrier=carrier,
                tracking_number=f"{carrier}{self.run_token.upper()}{self.counter['waybill']:06d}",
            )
            self._track(shipment_id, "collected", warehouse_id)
            self.awaiting_truck.remove(shipment_id)
            self.on_the_road.append(shipment_id)

    def _track(self, shipment_id: UUID, status: str, location: str) -> None:
        self.shop.update_tracking(
            shipment_id=shipment_id, occurred_at=self.clock.now(), status=status, location=location
        )

    def _next_day(self) -> None:
        """Parcels reach the hubs; most are delivered, one is lost (and refunded)."""
        self._day_at(1, 7)
        for shipment_id in self.on_the_road:
            self._track(shipment_id, "arrived_at_hub", "regional sorting centre")
        self.first_deliveries_at = self._day_at(1, 10)
        road = list(self.on_the_road)
        self.rng.shuffle(road)
        if road:
            failed = road.pop()
            self.shop.report_delivery_failure(shipment_id=failed, reason="lost by the carrier")
            self.on_the_road.remove(failed)
            self._refund_lost_parcel(failed)
        for shipment_id in road[: round(len(road) * 0.7)]:
            self._deliver(shipment_id)

    def _deliver(self, shipment_id: UUID) -> None:
        self._track(shipment_id, "out_for_delivery", "local station")
        self.shop.deliver(shipment_id=shipment_id)
        self.on_the_road.remove(shipment_id)

    def _later_deliveries(self) -> None:
        """Two days later the slower parcels arrive; a few are still on their way."""
        self._day_at(3, 15)
        for shipment_id in self.on_the_road[: round(len(self.on_the_road) * 0.6)]:
            self._deliver(shipment_id)

    # ------------------------------------------------------------------ after-sales (售后)

    def _refund(self, order_id: UUID, lines: dict[int, int], reason: str, **where: Any) -> RefundReceipt:
        receipt = self.shop.refund_only(
            order_id=order_id, refund_id=self._next_id("refund"), lines=lines, reason=reason, **where
        )
        self.refunds_only.append(receipt)
        return receipt

    def _change_of_mind(self, paid: PaymentReceipt) -> None:
        """Right after paying, before the truck: the first customer who used coupons wants
        the whole checkout refunded (the coupons come back, the freight too); now and then
        a merchant is out of an item and refunds one unit."""
        if not self.refunded_a_checkout and self.shop.checkout_of(paid.checkout_id).coupon_ids:
            self.refunded_a_checkout = True
            for order in (self.shop.order(oid) for oid in paid.order_ids):
                self._refund(order.id, {line.line_no: line.quantity for line in order.lines}, "changed my mind")
        elif self.rng.random() < 0.08:
            order = self.shop.order(self.rng.choice(paid.order_ids))
            self._refund(order.id, {self.rng.choice(order.lines).line_no: 1}, "the merchant is out of this item")
        else:
            return
        for shipment_id in paid.shipment_ids:
            if self.shop.shipment(shipment_id).state is ShipmentState.CANCELLED:
                self.awaiting_truck.remove(shipment_id)

    def _refund_lost_parcel(self, shipment_id: UUID) -> None:
        parcel = self.shop.shipment(shipment_id)
        assert parcel.order_id is not None
        lines = {item.line_no: item.quantity for item in parcel.items}
        self._refund(parcel.order_id, lines, "parcel lost by the carrier", shipment_id=shipment_id)

    def _customers_ask_for_after_sales(self) -> None:
        """Day 2 at noon: one customer reports a missing item; some ask to return goods,
        one of them without a good reason (rejected); the others send parcels back."""
        self._day_at(2, 12)
        paid = (self.shop.order(oid) for oid in self.paid_orders)
        delivered = [order for order in paid if order.state is OrderState.DELIVERED]
        if not delivered:
            return
        self.rng.shuffle(delivered)
        missing = delivered.pop()
        self._refund(missing.id, {missing.lines[0].line_no: 1}, "one item missing from the parcel")
        for n, order in enumerate(delivered[: max(2, len(delivered) // 8)]):
            line = self.rng.choice([line for line in order.refundable().lines if line.delivered])
            units = self.rng.randint(1, line.delivered)
            return_id = self.shop.request_return(
                order_id=order.id, customer_id=order.customer_id, lines={line.line_no: units},
                reason=self.rng.choice(("wrong size", "not as described", "arrived damaged")),
            )
            self.returns_requested += 1
            if n == 0 and len(delivered) > 2:
                self.shop.reject_return(order_id=order.id, return_id=return_id, reason="used, outside the policy")
                self.returns_rejected += 1
                continue
            self.shop.approve_return(order_id=order.id, return_id=return_id)
            self.counter["return"] += 1
            self.shop.ship_return(
                order_id=order.id, return_id=return_id, carrier="SF",
                tracking_number=f"RET{self.run_token.upper()}{self.counter['return']:05d}",
            )
            self.returns.append((order.id, return_id))

    def _returns_arrive(self) -> None:
        """Day 4: the warehouses check the returned parcels in, unit by unit, and the
        refunds are issued; the first parcel holds a damaged unit."""
        self._day_at(4, 10)
        for n, (order_id, return_id) in enumerate(self.returns):
            case = self.shop.return_case(order_id, return_id)
            sellable, damaged = {}, {}
            for line_no, units in case.lines.items():
                broken = 1 if n == 0 else sum(self.rng.random() < 0.15 for _ in range(units))
                sellable[line_no], damaged[line_no] = units - broken, broken
            self.shop.receive_return(order_id=order_id, return_id=return_id, sellable=sellable, damaged=damaged)
            self.units_restocked += sum(sellable.values())
            self.units_damaged += sum(damaged.values())
            self.return_refunds.append(
                self.shop.refund_return(order_id=order_id, return_id=return_id, refund_id=self._next_id("refund"))
            )
        self.returns.clear()

    # ------------------------------------------------------------------ evening and after

    def _stocktake(self) -> None:
        """The evening count: one shelf holds fewer units than orders have reserved."""
        self._day_at(0, 22)
        now = self.clock.now()
        items = self._stock_items()
        promised = [item for item in items if item.reserved(now) > 0]
        if promised:
            short = min(promised, key=lambda item: (item.available(now), item.sku_id, item.warehouse_id))
            counted = short.reserved(now) - 1
        else:
            short = max(items, key=lambda item: (item.on_hand, item.sku_id, item.warehouse_id))
            counted = max(0, short.on_hand - 1)
        self.stocktake_shortage += self.shop.count_stock(
            sku_id=short.sku_id, warehouse_id=short.warehouse_id, counted_quantity=counted,
            reason="evening stocktake: units missing from the shelf",
        )
        # The other shelves counted tonight match the books.
        for item in self.rng.sample(items, min(2, len(items))):
            if item is not short:
                self.shop.count_stock(
                    sku_id=item.sku_id, warehouse_id=item.warehouse_id, counted_quantity=max(0, item.on_hand),
                    reason="evening stocktake",
                )

    def _payment_deadlines_pass(self) -> None:
        """One customer pays after the deadline, before the sweeper runs; then the sweeper
        expires the rest; then another late payment arrives for an expired checkout."""
        if not self.abandoned:
            return
        last_deadline = max(receipt.payment_deadline for receipt in self.abandoned)
        self.clock.set(max(self.clock.now(), last_deadline + timedelta(minutes=30)))
        self._pay(self.abandoned[0])
        self.shop.expire_overdue_orders(self.clock.now())
        if len(self.abandoned) >= 3:
            self.clock.advance(timedelta(hours=2))
            self._pay(self.abandoned[-1])

    def _customers_confirm_receipt(self) -> None:
        self._day_at(2, 20)
        for order_id in self.paid_orders:
            order = self.shop.order(order_id)
            if order.state is OrderState.DELIVERED and self.rng.random() < 0.3:
                self.shop.confirm_receipt(order_id=order_id, customer_id=order.customer_id)

    def _after_sales_window_passes(self) -> None:
        """A week after the first deliveries the sweeper completes those orders; the
        parcels delivered two days later are still inside their window."""
        window_closes = self.first_deliveries_at + self.shop.settings.after_sales_window
        self.clock.set(max(self.clock.now(), window_closes + timedelta(hours=2)))
        self.sweep_counts = self.shop.sweep(self.clock.now())

    # ------------------------------------------------------------------ summary

    def _summary(self) -> DaySummary:
        shop = self.shop
        checkouts = [shop.checkout_of(receipt.checkout_id) for receipt in self.checkouts]
        orders = Counter(shop.order(oid).state for receipt in self.checkouts for oid in receipt.order_ids)
        parcels = Counter(shop.shipment(sid).state for sid in self.shipment_warehouse)
        return DaySummary(
            trading_day=self.opening.date(),
            currency=shop.settings.currency,
            orders_by_state={state: orders[state] for state in OrderState if orders[state]},
            checkouts_placed=len(self.checkouts),
            checkouts_refused_for_stock=self.refused_for_stock,
            checkouts_cancelled=sum(c.cancelled_reason is CancelReason.CUSTOMER for c in checkouts),
            checkouts_expired=sum(c.cancelled_reason is CancelReason.TIMEOUT for c in checkouts),
            money_taken=self.money_taken,
            late_payments_refunded=len(self.late_payments),
            late_payments_refunded_amount=sum(p.amount for p in self.late_payments),
            coupons_issued=self.coupons_issued,
            stock_left={listing.sku.sku_id: shop.available(listing.sku.sku_id) for listing in LISTINGS},
            low_stock_alerts=self._low_stock_alerts(),
            stocktake_shortage=self.stocktake_shortage,
            shipments_dispatched=sum(n for state, n in parcels.items() if state not in _NOT_LEFT),
            shipments_delivered=parcels[ShipmentState.DELIVERED],
            shipments_failed=parcels[ShipmentState.FAILED],
            orders_completed_by_sweep=self.sweep_counts.get("completed_orders", 0),
            coupons_expired_by_sweep=self.sweep_counts.get("expired_coupons", 0),
            refunds_only=len(self.refunds_only),
            refunds_only_amount=sum(r.amount for r in self.refunds_only),
            returns_requested=self.returns_requested,
            returns_rejected=self.returns_rejected,
            returns_refunded=len(self.return_refunds),
            returns_refunded_amount=sum(r.amount for r in self.return_refunds),
            units_restocked=self.units_restocked,
            units_damaged=self.units_damaged,
            coupons_returned=sum(len(r.returned_coupon_ids) for r in (*self.refunds_only, *self.return_refunds)),
        )

    def _stock_items(self) -> list[StockItem]:
        return [
            self.shop.stock_item(listing.sku.sku_id, warehouse_id)
            for listing in LISTINGS
            for warehouse_id, _ in listing.warehouses
        ]

    def _low_stock_alerts(self) -> tuple[LowStockAlert, ...]:
        now = self.clock.now()
        return tuple(
            LowStockAlert(
                sku_id=item.sku_id, warehouse_id=item.warehouse_id,
                available=item.available(now), safety_stock=item.safety_stock,
            )
            for item in self._stock_items()
            if item.low_stock_flagged
        )


#: Shipment states of parcels that never left the warehouse.
_NOT_LEFT = (ShipmentState.PLANNED, ShipmentState.CANCELLED)

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
