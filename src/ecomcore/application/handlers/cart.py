"""A cart split by merchant and priced: shared by placing a checkout and recommending coupons."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ecomcore.application.commands import CartItem
from ecomcore.application.handlers.catalogue import known_merchant, known_sku
from ecomcore.domain.catalogue import CatalogueReader, Sku
from ecomcore.domain.pricing import CouponSlots, MerchantCart, PricedItem, best_promotion


@dataclass(frozen=True)
class SplitCart:
    """The cart's units by SKU, and its SKUs by merchant (the first split: one order each)."""

    quantities: dict[str, int]
    by_merchant: dict[str, list[Sku]]

    @classmethod
    def of(cls, catalogue: CatalogueReader, items: Iterable[CartItem]) -> SplitCart:
        quantities: dict[str, int] = {}
        for item in items:
            quantities[item.sku_id] = quantities.get(item.sku_id, 0) + item.quantity
        by_merchant: dict[str, list[Sku]] = {}
        for sku_id in quantities:
            sku = known_sku(catalogue, sku_id)
            by_merchant.setdefault(sku.merchant_id, []).append(sku)
        return cls(quantities, by_merchant)

    def merchant_orders(self) -> list[dict[str, int]]:
        """Units by SKU of each merchant's order, in the cart's order of merchants."""
        return [{sku.sku_id: self.quantities[sku.sku_id] for sku in skus} for skus in self.by_merchant.values()]

    def priced(self, catalogue: CatalogueReader, coupons: CouponSlots, now: datetime) -> list[MerchantCart]:
        """Each merchant's cart with its best promotion now, its coupon and its freight."""
        carts = []
        for merchant_id, merchant_skus in self.by_merchant.items():
            items = tuple(_priced(sku, self.quantities[sku.sku_id]) for sku in merchant_skus)
            carts.append(
                MerchantCart(
                    merchant_id=merchant_id,
                    items=items,
                    promotion=best_promotion(catalogue.promotions(merchant_id), items, now),
                    coupon=coupons.merchant.get(merchant_id),
                    freight=known_merchant(catalogue, merchant_id).freight,
                )
            )
        return carts


def _priced(sku: Sku, quantity: int) -> PricedItem:
    return PricedItem(
        key=sku.sku_id,
        sku_id=sku.sku_id,
        spu_id=sku.spu_id,
        merchant_id=sku.merchant_id,
        category_path=sku.category_path,
        brand_id=sku.brand_id,
        unit_price=sku.unit_price,
        quantity=quantity,
        weight_g=sku.weight_g,
    )
