"""What the demo's marketplace sells and from where: the data the day registers at opening.

Four merchants with freight templates, a dozen SKUs stocked in three warehouses, the
tea house's tiered promotion and the day's coupon campaigns.  Nothing here touches a
shop; the opening of the day (``opening.py``) registers it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecomcore.application.shop import Shop
from ecomcore.domain.catalogue import Sku
from ecomcore.domain.pricing import (
    PLATFORM,
    CouponKind,
    CouponTerms,
    FreightBasis,
    FreightTemplate,
    PromotionTerms,
    PromotionTier,
    Scope,
)
from ecomcore.domain.stock_item import StockItem

SH, GZ, CD = "wh-shanghai", "wh-guangzhou", "wh-chengdu"

#: (warehouse id, region, priority).
WAREHOUSES = ((SH, "east", 1), (GZ, "south", 2), (CD, "west", 3))

#: Each warehouse's carrier and its last truck of the day, as a fraction of the
#: trading day: parcels paid later wait for tomorrow (and an order whose parcels come
#: from two warehouses may leave half-shipped).
CARRIERS = {SH: "SF", GZ: "ZTO", CD: "YTO"}
LAST_TRUCK = {SH: 0.9, GZ: 0.85, CD: 0.7}


@dataclass(frozen=True)
class DemoMerchant:
    merchant_id: str
    name: str
    freight: FreightTemplate
    #: How likely a cart holds this merchant's goods.
    popularity: int


MERCHANTS = (
    DemoMerchant(
        "m-teahouse", "West Lake Tea House",
        FreightTemplate(basis=FreightBasis.WEIGHT, first_fee=800, additional_fee=300, free_threshold=9900),
        popularity=30,
    ),
    DemoMerchant(
        "m-homegoods", "Good Home Living",
        FreightTemplate(basis=FreightBasis.WEIGHT, first_fee=1000, additional_fee=500, free_threshold=19900),
        popularity=30,
    ),
    DemoMerchant(
        "m-digital", "Bright Digital",
        FreightTemplate(basis=FreightBasis.COUNT, first_unit=1, first_fee=1200, additional_unit=1,
                        additional_fee=400, free_threshold=29900),
        popularity=25,
    ),
    DemoMerchant(
        "m-bookshop", "Old Street Books",
        FreightTemplate(basis=FreightBasis.COUNT, first_unit=1, first_fee=600, additional_unit=1,
                        additional_fee=200, free_threshold=5900),
        popularity=15,
    ),
)


@dataclass(frozen=True)
class Listing:
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
) -> Listing:
    sku = Sku(
        sku_id=sku_id, spu_id=spu_id, merchant_id=merchant_id, category_path=category, brand_id=brand,
        unit_price=price, weight_g=weight_g, title=title,
    )
    return Listing(sku, popularity, units_per_100_orders, warehouses)


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

#: The tea house's automatic tiered discount (满减), on for the trading day.
TEA_FESTIVAL = PromotionTerms(
    merchant_id="m-teahouse",
    tiers=(
        PromotionTier(threshold=20000, amount_off=2000),
        PromotionTier(threshold=30000, amount_off=4000),
    ),
)

#: The day's coupon campaigns by who funds them: (name, terms).  The order is the
#: order they are launched in.
CAMPAIGNS: dict[str, tuple[str, CouponTerms]] = {
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


def stocked_items(shop: Shop) -> list[StockItem]:
    """Every stock item the catalogue keeps, listing by listing, as ``shop`` holds it now."""
    return [
        shop.stock_item(listing.sku.sku_id, warehouse_id)
        for listing in LISTINGS
        for warehouse_id, _ in listing.warehouses
    ]
