"""Catalogue inputs: SKUs, warehouses, merchants and their promotions (not aggregates).

Orders snapshot the SKU data they used, so replaying history never needs the
catalogue as it is today.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Protocol

from pydantic import AfterValidator, Field, model_validator

from ecomcore.domain.money import Amount
from ecomcore.domain.pricing import FreightTemplate, PromotionTerms
from ecomcore.domain.pricing.terms import Scope
from ecomcore.domain.values import MAX_PROMOTION_TIERS, MAX_SCOPE_IDS, Line, Moment, UnitPrice, UnitWeight, Value

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def require_scope_bounded(scope: Scope) -> None:
    """Refuse (``ValueError``, for a validator) a scope listing more than ``MAX_SCOPE_IDS``
    ids in one list, or an id that is not an ``Id``. Coupon events record scopes as they
    were given (history must load), so new ones are bounded here."""
    for name, ids in scope:
        if len(ids) > MAX_SCOPE_IDS:
            raise ValueError(f"scope.{name} lists {len(ids)} ids; at most {MAX_SCOPE_IDS}")
        for found in ids:
            if not isinstance(found, str) or not _ID_PATTERN.match(found):
                raise ValueError(f"scope.{name} holds {found!r}, which is not an id (1-64 of A-Z a-z 0-9 . _ : -)")


def _promotion_terms_bounded(terms: PromotionTerms) -> PromotionTerms:
    if len(terms.tiers) > MAX_PROMOTION_TIERS:
        raise ValueError(f"a promotion has at most {MAX_PROMOTION_TIERS} tiers, got {len(terms.tiers)}")
    if not _ID_PATTERN.match(terms.merchant_id):
        raise ValueError(f"merchant_id {terms.merchant_id!r} is not an id")
    require_scope_bounded(terms.scope)
    return terms


class RecordedSku(Value):
    """A SKU as an order recorded it (``OrderLine.sku``, inside ``Order.Placed``).

    Recorded history must always load, so this keeps the looser rules SKUs were once
    registered under; new SKUs come through :class:`Sku`, whose values are bounded.
    """

    sku_id: Id
    spu_id: Id
    merchant_id: Id
    #: Back-office category tree, root first, at most four levels.
    category_path: tuple[Id, ...] = Field(min_length=1, max_length=4)
    brand_id: Id
    unit_price: Amount
    weight_g: Amount
    title: str = Field(min_length=1, max_length=200)


class Sku(RecordedSku):
    """A SKU (库存量单位): one sellable variant of a product (SPU).

    Bounded so that every order of it fits the read models (see ``ecomcore.domain.values``).
    """

    unit_price: UnitPrice
    #: Of one unit, in grams.
    weight_g: UnitWeight
    title: Line


class Warehouse(Value):
    warehouse_id: Id
    region: Line
    #: 1 is the first choice; larger numbers are tried later (the catalogue keeps it
    #: in a 32-bit integer column).
    priority: int = Field(ge=1, le=2**31 - 1)


class Merchant(Value):
    """A merchant (店铺) and its freight template."""

    merchant_id: Id
    name: Line
    freight: FreightTemplate | None = None


class Promotion(Value):
    """A merchant's automatic promotion (满减) over a time window."""

    promotion_id: Id
    terms: Annotated[PromotionTerms, AfterValidator(_promotion_terms_bounded)]
    starts_at: Moment
    ends_at: Moment

    @model_validator(mode="after")
    def _window(self) -> Promotion:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def conflicts_with(self, other: Promotion) -> bool:
        """Two promotions of one merchant clash when either is exclusive and they
        overlap in time and in the goods they cover."""
        return (
            other.promotion_id != self.promotion_id
            and other.terms.merchant_id == self.terms.merchant_id
            and (self.terms.exclusive or other.terms.exclusive)
            and self.starts_at < other.ends_at
            and other.starts_at < self.ends_at
            and self.terms.scope.overlaps(other.terms.scope)
        )


class CatalogueReader(Protocol):
    """Looking up the Shop's inputs."""

    def sku(self, sku_id: str) -> Sku | None: ...
    def warehouse(self, warehouse_id: str) -> Warehouse | None: ...
    def warehouses(self) -> list[Warehouse]: ...
    def merchant(self, merchant_id: str) -> Merchant | None: ...
    def promotions(self, merchant_id: str) -> list[Promotion]: ...


class Catalogue(CatalogueReader, Protocol):
    """Where the Shop keeps and looks up its inputs."""

    def add_sku(self, sku: Sku) -> None: ...
    def add_warehouse(self, warehouse: Warehouse) -> None: ...
    def add_merchant(self, merchant: Merchant) -> None: ...
    def add_promotion(self, promotion: Promotion) -> None: ...

    def current(self) -> CatalogueReader:
        """The catalogue as it is now, for one command: it may answer from memory what it
        looked up before, for as long as nothing in the catalogue changed since."""
        ...
