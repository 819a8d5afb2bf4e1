"""A small, fixed catalogue for scenario tests through the public Shop API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ecomcore import CouponTerms, FreightTemplate, ManualClock, Settings, Shop, Validity
from ecomcore.infrastructure.catalogue import InMemoryCatalogue

START = datetime(2026, 11, 11, 8, 0, tzinfo=UTC)


def open_shop(store_url: str, clock: ManualClock | None = None, **settings: object) -> Shop:
    return Shop(
        store_url,
        clock=clock or ManualClock(START),
        settings=Settings(store_url=store_url, **settings),
        catalogue=InMemoryCatalogue(),
    )


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
