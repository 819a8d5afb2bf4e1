"""A small, fixed catalogue for scenario tests through the public Shop API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ecomcore import (
    PLATFORM,
    CouponTerms,
    FreightTemplate,
    ManualClock,
    Promotion,
    PromotionTerms,
    PromotionTier,
    Settings,
    Shop,
    Validity,
)
from ecomcore.infrastructure.catalogue import InMemoryCatalogue

START = datetime(2026, 11, 11, 8, 0, tzinfo=UTC)


def open_shop(store_url: str, clock: ManualClock | None = None, **settings: object) -> Shop:
    return Shop(
        store_url,
        clock=clock or ManualClock(START),
        settings=Settings(store_url=store_url, **settings),
        catalogue=InMemoryCatalogue(),
    )


def stored_events(shop: Shop) -> int:
    """How many events the shop's store holds: a refused command must not change it."""
    return shop.store.recorder.max_notification_id() or 0


def stock_catalogue(shop: Shop) -> None:
    """Two merchants, three warehouses, five SKUs (one heavy)."""
    shop.register_merchant(
        merchant_id="m1",
        name="Tea House",
        freight=FreightTemplate(first_fee=800, additional_fee=300, free_threshold=20000),
    )
    shop.register_merchant(
        merchant_id="m2",
        name="Iron Works",
        freight=FreightTemplate(basis="count", first_unit=1, first_fee=1000, additional_unit=1, additional_fee=200),
    )
    for warehouse_id, priority in (("w1", 1), ("w2", 2), ("w3", 3)):
        shop.register_warehouse(warehouse_id=warehouse_id, region="east", priority=priority)
    skus = [
        ("A1", "m1", 2990, 400, ("food", "tea")),
        ("B1", "m1", 4500, 1200, ("home", "kitchen")),
        ("C1", "m1", 1000, 100, ("food", "snack")),
        ("D1", "m2", 15000, 9000, ("home", "tools")),  # heavy: two fit in a 20 kg parcel
        ("E1", "m2", 3000, 500, ("home", "tools")),
    ]
    for sku_id, merchant_id, price, weight, path in skus:
        shop.register_sku(
            sku_id=sku_id,
            spu_id=f"P{sku_id}",
            merchant_id=merchant_id,
            category_path=path,
            brand_id="brand-1",
            unit_price=price,
            weight_g=weight,
            title=f"Item {sku_id}",
        )


def campaign(shop: Shop, terms: CouponTerms, *, days: int = 7, total: int = 100, per_customer: int = 5):
    now = shop.clock.now()
    return shop.create_campaign(
        name=f"campaign {terms.kind}",
        terms=terms,
        claim_starts_at=now - timedelta(hours=1),
        claim_ends_at=now + timedelta(days=30),
        validity=Validity(days_from_issue=days),
        total_quantity=total,
        per_customer_limit=per_customer,
    )


#: Stock for the worked example of the after-sales and read-model tests.
WORKED_EXAMPLE_STOCK = (("A1", "w1", 10), ("B1", "w1", 5), ("C1", "w2", 10), ("E1", "w2", 10))


def stocked_shop(store_url: str, clock: ManualClock, stock=WORKED_EXAMPLE_STOCK) -> Shop:
    shop = open_shop(store_url, clock)
    stock_catalogue(shop)
    for sku_id, warehouse_id, quantity in stock:
        shop.receive_stock(sku_id=sku_id, warehouse_id=warehouse_id, quantity=quantity, reference="po-1")
    return shop


def place_worked_example(shop: Shop):
    """Alice's two-merchant checkout: m1 has a promotion and a merchant coupon; a platform coupon spans both.

    m1: A1 2×2990, B1 1×4500, C1 3×1000 = 13480; promotion ≥10000 → 1000 off (444/334/222),
    merchant coupon 'spend 10000 get 1500' on the 12480 left (665/501/334).
    m2: E1 2×3000 = 6000.  Platform 10% on the 16980 left = 1698 (487/367/244/600).
    Nets: A1 4384, B1 3298, C1 2200, E1 5400.  Freight: m1 by weight 2300 g = 1400,
    m2 by count 2 units = 1200.  Payable 9882 + 1400 + 5400 + 1200 = 17882.
    Returns the (unpaid) checkout receipt, the merchant coupon and the platform coupon.
    """
    now = shop.clock.now()
    shop.add_promotion(
        Promotion(
            promotion_id="double11",
            terms=PromotionTerms(merchant_id="m1", tiers=(PromotionTier(threshold=10000, amount_off=1000),)),
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=30),
        )
    )
    merchant_coupon = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="threshold", threshold=10000, amount_off=1500, funding="m1")),
        customer_id="alice",
    )
    platform_coupon = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="percentage", percent_off_bp=1000, cap=2000, funding=PLATFORM)),
        customer_id="alice",
    )
    receipt = shop.checkout(
        customer_id="alice",
        items=[
            {"sku_id": "A1", "quantity": 2},
            {"sku_id": "B1", "quantity": 1},
            {"sku_id": "C1", "quantity": 3},
            {"sku_id": "E1", "quantity": 2},
        ],
        merchant_coupon_ids=[merchant_coupon],
        platform_coupon_id=platform_coupon,
        shipping_address="1 Tea Road",
    )
    return receipt, merchant_coupon, platform_coupon


def hot_sku_shop(url: str, on_hand: int) -> Shop:
    """A shop selling one SKU, HOT, with ``on_hand`` units in one warehouse (for races on it)."""
    shop = Shop(url)
    shop.register_merchant(merchant_id="m1", name="Hot Deals")
    shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
    shop.register_sku(
        sku_id="HOT", spu_id="P1", merchant_id="m1", category_path=("c",), brand_id="b",
        unit_price=999, weight_g=100, title="Hot item",
    )
    shop.receive_stock(sku_id="HOT", warehouse_id="w1", quantity=on_hand, reference="po")
    return shop
