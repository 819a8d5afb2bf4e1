"""Catalogue: merchants, warehouses, SKUs and promotions, and looking them up.

The catalogue is reference data, not event-sourced: these handlers write to it directly.
"""

from __future__ import annotations

from typing import TypeVar

from ecomcore.domain.catalogue import Catalogue, CatalogueReader, Merchant, Promotion, Sku, Warehouse
from ecomcore.domain.errors import NotFound, PromotionConflict

T = TypeVar("T")


def register_sku(catalogue: Catalogue, sku: Sku) -> Sku:
    if catalogue.merchant(sku.merchant_id) is None:
        raise NotFound(f"sku {sku.sku_id} names merchant {sku.merchant_id}, which is not registered")
    catalogue.add_sku(sku)
    return sku


def register_warehouse(catalogue: Catalogue, warehouse: Warehouse) -> Warehouse:
    catalogue.add_warehouse(warehouse)
    return warehouse


def register_merchant(catalogue: Catalogue, merchant: Merchant) -> Merchant:
    catalogue.add_merchant(merchant)
    return merchant


def add_promotion(catalogue: Catalogue, promotion: Promotion) -> Promotion:
    if catalogue.merchant(promotion.terms.merchant_id) is None:
        raise NotFound(f"merchant {promotion.terms.merchant_id} is not registered")
    for other in catalogue.promotions(promotion.terms.merchant_id):
        if promotion.conflicts_with(other):
            raise PromotionConflict(
                f"promotion {promotion.promotion_id} overlaps promotion {other.promotion_id} "
                f"({other.starts_at:%Y-%m-%d %H:%M} to {other.ends_at:%Y-%m-%d %H:%M}) in time and goods, "
                "and one of them is exclusive",
                other_promotion_id=other.promotion_id,
            )
    catalogue.add_promotion(promotion)
    return promotion


def known_sku(catalogue: CatalogueReader, sku_id: str) -> Sku:
    return _found(catalogue.sku(sku_id), f"sku {sku_id} is not in the catalogue")


def known_warehouse(catalogue: CatalogueReader, warehouse_id: str) -> Warehouse:
    return _found(catalogue.warehouse(warehouse_id), f"warehouse {warehouse_id} is not registered")


def known_merchant(catalogue: CatalogueReader, merchant_id: str) -> Merchant:
    return _found(catalogue.merchant(merchant_id), f"merchant {merchant_id} is not registered")


def _found(value: T | None, missing: str) -> T:
    if value is None:
        raise NotFound(missing)
    return value
