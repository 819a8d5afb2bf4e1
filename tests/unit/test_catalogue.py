"""The catalogue registries behave alike in memory, on SQLite and on PostgreSQL (spec §4)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ecomcore.domain.catalogue import Catalogue, Merchant, Promotion, Sku, Warehouse
from ecomcore.domain.pricing import (
    FreightBasis,
    FreightTemplate,
    PromotionTerms,
    PromotionTier,
    Scope,
)
from ecomcore.infrastructure.catalogue import (
    InMemoryCatalogue,
    SqlCatalogue,
    open_catalogue,
    sqlalchemy_url,
)
from ecomcore.infrastructure.store import StoreUrlError

T0 = datetime(2024, 11, 11, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def catalogue(request: pytest.FixtureRequest, tmp_path) -> Iterator[Catalogue]:
    """One catalogue per implementation; PostgreSQL gets a fresh database."""
    if request.param == "memory":
        yield InMemoryCatalogue()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    sql_catalogue = SqlCatalogue(url)
    try:
        yield sql_catalogue
    finally:
        sql_catalogue.dispose()


def a_sku(sku_id: str = "sku-1", **changes: object) -> Sku:
    values: dict[str, object] = dict(
        sku_id=sku_id,
        spu_id="spu-1",
        merchant_id="m-1",
        category_path=("c1", "c1.2", "c1.2.3", "c1.2.3.4"),
        brand_id="b-1",
        unit_price=12_345,
        weight_g=250,
        title="羽绒服 down jacket, size M",
    )
    return Sku.model_validate(values | changes)


def a_merchant(merchant_id: str = "m-1", **changes: object) -> Merchant:
    freight = FreightTemplate(
        basis=FreightBasis.COUNT,
        first_unit=2,
        first_fee=800,
        additional_unit=3,
        additional_fee=500,
        free_threshold=9_900,
    )
    return Merchant.model_validate(dict(merchant_id=merchant_id, name="店铺一", freight=freight) | changes)


def a_promotion(promotion_id: str, merchant_id: str = "m-1", starts_at: datetime = T0) -> Promotion:
    terms = PromotionTerms(
        merchant_id=merchant_id,
        tiers=(
            PromotionTier(threshold=20_000, amount_off=2_000),
            PromotionTier(threshold=30_000, amount_off=4_000),
        ),
        scope=Scope(category_ids=("c1",), excluded_sku_ids=("sku-9",), excluded_brand_ids=("b-9",)),
        exclusive=False,
    )
    return Promotion(
        promotion_id=promotion_id, terms=terms, starts_at=starts_at, ends_at=starts_at + timedelta(days=3)
    )


def test_sku_round_trips_every_field(catalogue: Catalogue) -> None:
    """A stored SKU comes back equal, category path and all."""
    sku = a_sku()
    catalogue.add_sku(sku)
    assert catalogue.sku("sku-1") == sku


def test_merchant_round_trips_its_freight_template(catalogue: Catalogue) -> None:
    """A merchant comes back with every field of its freight template, or with none."""
    with_freight, without = a_merchant("m-1"), a_merchant("m-2", freight=None)
    catalogue.add_merchant(with_freight)
    catalogue.add_merchant(without)
    assert catalogue.merchant("m-1") == with_freight
    assert catalogue.merchant("m-2") == without


def test_promotion_round_trips_terms_and_window(catalogue: Catalogue) -> None:
    """A promotion comes back with its tiers, scope, exclusivity and time zone."""
    promotion = a_promotion("p-1")
    catalogue.add_promotion(promotion)
    [stored] = catalogue.promotions("m-1")
    assert stored == promotion
    assert stored.starts_at.utcoffset() == timedelta(hours=8)


def test_warehouse_round_trips(catalogue: Catalogue) -> None:
    """A stored warehouse comes back equal."""
    warehouse = Warehouse(warehouse_id="wh-sh", region="上海", priority=2)
    catalogue.add_warehouse(warehouse)
    assert catalogue.warehouse("wh-sh") == warehouse


def test_adding_an_existing_id_replaces_the_value(catalogue: Catalogue) -> None:
    """Catalogue data is reference data: re-adding an id replaces what was there."""
    catalogue.add_sku(a_sku(unit_price=100))
    catalogue.add_sku(a_sku(unit_price=90, title="new title"))
    catalogue.add_warehouse(Warehouse(warehouse_id="wh", region="north", priority=1))
    catalogue.add_warehouse(Warehouse(warehouse_id="wh", region="south", priority=5))
    catalogue.add_merchant(a_merchant(name="old"))
    catalogue.add_merchant(a_merchant(name="new"))
    catalogue.add_promotion(a_promotion("p-1", merchant_id="m-1"))
    catalogue.add_promotion(a_promotion("p-1", merchant_id="m-2"))

    assert catalogue.sku("sku-1") == a_sku(unit_price=90, title="new title")
    assert catalogue.warehouses() == [Warehouse(warehouse_id="wh", region="south", priority=5)]
    assert catalogue.merchant("m-1") == a_merchant(name="new")
    assert catalogue.promotions("m-1") == []
    assert catalogue.promotions("m-2") == [a_promotion("p-1", merchant_id="m-2")]


def test_unknown_ids_give_none_or_nothing(catalogue: Catalogue) -> None:
    """Looking up what was never added gives None (or an empty list), not an error."""
    assert catalogue.sku("nope") is None
    assert catalogue.warehouse("nope") is None
    assert catalogue.merchant("nope") is None
    assert catalogue.warehouses() == []
    assert catalogue.promotions("nope") == []


def test_warehouses_come_by_priority_then_id(catalogue: Catalogue) -> None:
    """Warehouses are listed first choice first, ties broken by id."""
    for warehouse_id, priority in [("wh-c", 2), ("wh-b", 1), ("wh-a", 2), ("wh-d", 10)]:
        catalogue.add_warehouse(Warehouse(warehouse_id=warehouse_id, region="r", priority=priority))
    assert [w.warehouse_id for w in catalogue.warehouses()] == ["wh-b", "wh-a", "wh-c", "wh-d"]


def test_promotions_are_per_merchant_by_start_then_id(catalogue: Catalogue) -> None:
    """Only the merchant's own promotions are listed, earliest start first, ties by id."""
    catalogue.add_promotion(a_promotion("p-late", starts_at=T0 + timedelta(days=1)))
    catalogue.add_promotion(a_promotion("p-b", starts_at=T0))
    # The same instant written with another UTC offset still ties with p-b.
    catalogue.add_promotion(a_promotion("p-a", starts_at=T0.astimezone(UTC)))
    catalogue.add_promotion(a_promotion("p-other", merchant_id="m-2"))

    assert [p.promotion_id for p in catalogue.promotions("m-1")] == ["p-a", "p-b", "p-late"]
    assert [p.promotion_id for p in catalogue.promotions("m-2")] == ["p-other"]


def test_sql_in_values_is_stored_as_text(catalogue: Catalogue) -> None:
    """Values are bound parameters: SQL in a title round-trips and breaks nothing."""
    sku = a_sku(title="'; DROP TABLE catalogue_skus; --")
    catalogue.add_sku(sku)
    catalogue.add_sku(a_sku("sku-2"))
    assert catalogue.sku("sku-1") == sku
    assert catalogue.sku("sku-2") == a_sku("sku-2")


def test_sql_catalogue_persists_across_instances(store_url: str) -> None:
    """A second catalogue on the same URL sees what the first one stored."""
    first = SqlCatalogue(store_url)
    first.add_sku(a_sku())
    first.dispose()
    second = SqlCatalogue(store_url)
    try:
        assert second.sku("sku-1") == a_sku()
    finally:
        second.dispose()


def test_constructing_does_not_connect(tmp_path) -> None:
    """A catalogue on an unreachable database can be built; only using it connects."""
    SqlCatalogue("postgresql://nobody:secret@127.0.0.1:1/nowhere").dispose()
    missing_dir = tmp_path / "no" / "such" / "dir"
    SqlCatalogue(f"sqlite:///{missing_dir}/store.sqlite").dispose()
    assert not missing_dir.exists()


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("sqlite:///var/data/store.sqlite", "sqlite:///var/data/store.sqlite"),
        ("postgresql://u:pw@db:5433/shop", "postgresql+psycopg://u:pw@db:5433/shop"),
        ("postgres://u@db/shop", "postgresql+psycopg://u@db/shop"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/sock",
            "postgresql+psycopg://postgres:@/postgres?host=/tmp/sock",
        ),
    ],
)
def test_store_urls_become_sqlalchemy_urls(store: str, expected: str) -> None:
    """PostgreSQL URLs go through psycopg 3 with their query kept; SQLite ones are used as is."""
    assert sqlalchemy_url(store) == expected


def test_unknown_url_schemes_are_refused() -> None:
    """A URL that is neither SQLite nor PostgreSQL fails at once, naming the URL."""
    with pytest.raises(StoreUrlError, match="mysql://x/y"):
        open_catalogue("mysql://x/y")


def test_open_catalogue_chooses_by_url(tmp_path) -> None:
    """None or "memory" give the in-memory catalogue, a store URL the SQL one."""
    assert isinstance(open_catalogue(None), InMemoryCatalogue)
    assert isinstance(open_catalogue("memory"), InMemoryCatalogue)
    sql_catalogue = open_catalogue(f"sqlite:///{tmp_path}/store.sqlite")
    assert isinstance(sql_catalogue, SqlCatalogue)
    sql_catalogue.dispose()
