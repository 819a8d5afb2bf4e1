"""Hostile callers (issue 11): every command and query of the Shop, on both stores, given
hostile values of every kind, either answers or raises a typed ``EcomcoreError``; a
refusal stores nothing; whatever was accepted projects into all three read models; and
nothing hangs (Hypothesis' deadline fails an example that takes too long).

Each example is a short session of calls against one long-lived shop (so ids returned by
accepted calls — checkouts, orders, shipments, coupons, returns — feed later calls), each
argument either plausible or hostile: wrong types, None, negative and huge numbers, floats,
NaN, control characters, megabyte strings, unknown ids, naive datetimes, 10,000-line carts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from shop_fixtures import START, stock_catalogue

from ecomcore import EcomcoreError, ManualClock, Settings, Shop
from ecomcore.domain.catalogue import Merchant, Sku, Warehouse
from ecomcore_projections.runner import Projector, ReadModels

# ------------------------------------------------------------------ the shop under attack


class Session:
    """One shop, its read models, and the ids accepted calls gave back."""

    def __init__(self, url: str, read_models_url: str) -> None:
        self.clock = ManualClock(START)
        self.shop = Shop(url, clock=self.clock, settings=Settings(store_url=url))
        stock_catalogue(self.shop)
        for sku_id, warehouse_id in (("A1", "w1"), ("B1", "w1"), ("C1", "w2"), ("E1", "w2")):
            self.shop.receive_stock(sku_id=sku_id, warehouse_id=warehouse_id, quantity=1000, reference="po")
        self.read_models = ReadModels(read_models_url)
        self.known: dict[str, list[Any]] = {
            "checkout_id": [], "order_id": [], "shipment_id": [], "return_id": [], "campaign_id": [],
            "coupon_id": [], "payable": [],
        }
        campaign = self.shop.create_campaign(
            name="welcome", terms={"kind": "cash", "amount_off": 100}, claim_starts_at=START - timedelta(days=1),
            claim_ends_at=START + timedelta(days=30), validity={"days_from_issue": 7}, total_quantity=1000,
            per_customer_limit=100,
        )
        self.remember(campaign, "campaign_id")

    def remember(self, result: Any, name: str | None = None) -> None:
        if isinstance(result, UUID) and name:
            self.known[name].append(result)
        for attribute in ("checkout_id", "order_ids", "shipment_ids", "payable"):
            value = getattr(result, attribute, None)
            if value is None:
                continue
            key = attribute.removesuffix("s") if attribute.endswith("ids") else attribute
            self.known[key].extend(value if isinstance(value, tuple | list) else [value])

    def events(self) -> int:
        return self.shop.store.recorder.max_notification_id() or 0

    def close(self) -> None:
        self.read_models.engine.dispose()
        self.shop.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("fuzz")
        url, read_models_url = f"sqlite:///{folder}/store.sqlite", f"sqlite:///{folder}/read_models.sqlite"
    else:
        import psycopg

        base, name = request.getfixturevalue("postgres_url"), f"fuzz_{uuid4().hex[:12]}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = read_models_url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    s = Session(url, read_models_url)
    yield s
    s.close()


# ------------------------------------------------------------------ values, plausible and hostile

AWARE = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
CONTROL = st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cs", "Co", "Zl"]), min_size=1, max_size=5)

HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 2**63 - 1, 10**15 + 1, 10**20]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -0.0, 1.5]),
    st.text(max_size=30),
    CONTROL,
    st.builds(lambda c, n: "x" * n + c, CONTROL, st.integers(0, 300)),
    st.sampled_from(["", " ", "not-a-uuid", "x" * 1_000_000, "\x00", "\ud800", "A1\x00"]),
    st.binary(max_size=10),
    st.uuids(),
    st.datetimes(),  # naive
    st.datetimes(timezones=st.timezones()),  # anywhere in years 1-9999
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just([{"sku_id": "A1", "quantity": 1}] * 10_000),
    st.just({n: 1 for n in range(1, 10_001)}),
)


def _plausible(name: str, s: Session) -> st.SearchStrategy[Any]:
    """A value that could be right for a parameter of this name (often, not always, valid)."""
    ids = {"checkout_id", "order_id", "shipment_id", "return_id", "campaign_id", "coupon_id"}
    # Draws never depend on what the session holds (Hypothesis replays them): an index is
    # drawn, and mapped onto the ids accepted calls gave back, or a fresh UUID if none yet.
    if name in ids:
        return st.integers(0, 2**16).map(lambda n: _pick(s.known[name], n, uuid4))
    texts = {
        "sku_id": ["A1", "B1", "C1", "E1", "NEW-1"], "warehouse_id": ["w1", "w2", "w3"],
        "merchant_id": ["m1", "m2"], "customer_id": ["alice", "bob"], "spu_id": ["P1"], "brand_id": ["b1"],
        "reason": ["customer", "damaged", "changed my mind"], "channel": ["claim", "push", "compensation"],
    }
    if name in texts:
        return st.sampled_from(texts[name])
    if name in ("items", "cart"):
        return st.lists(
            st.fixed_dictionaries({"sku_id": st.sampled_from(["A1", "B1", "C1", "E1"]), "quantity": st.integers(1, 3)}),
            min_size=1, max_size=4,
        )
    if name in ("lines", "sellable", "damaged"):
        return st.dictionaries(st.integers(1, 3), st.integers(1, 2), max_size=2)
    if name == "amount":
        return st.integers(1, 10**6).map(lambda n: _pick(s.known["payable"], n, lambda: n))
    if name in ("quantity", "counted_quantity", "safety_stock", "reorder_quantity", "total_quantity",
                "per_customer_limit", "priority", "unit_price", "weight_g", "version"):
        return st.integers(1, 50)
    if name in ("now", "occurred_at", "claim_starts_at", "starts_at"):
        return AWARE
    if name in ("claim_ends_at", "ends_at"):
        return st.just(START + timedelta(days=60))
    if name == "terms":
        return st.sampled_from([
            {"kind": "cash", "amount_off": 100},
            {"merchant_id": "m1", "tiers": [{"threshold": 1000, "amount_off": 100}], "exclusive": False},
        ])
    if name == "validity":
        return st.just({"days_from_issue": 7})
    if name == "category_path":
        return st.just(("food",))
    if name in ("merchant_coupon_ids",):
        return st.lists(st.integers(0, 2**16).map(lambda n: _pick(s.known["coupon_id"], n, uuid4)), max_size=1)
    if name == "freight":
        return st.none()
    return st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=12)


def _pick(known: list[Any], n: int, otherwise: Any) -> Any:
    return known[n % len(known)] if known else otherwise()


#: Catalogue registrations take the fields of their value.
CATALOGUE_FIELDS = {
    "register_sku": list(Sku.model_fields), "register_warehouse": list(Warehouse.model_fields),
    "register_merchant": list(Merchant.model_fields),
    "add_promotion": ["promotion_id", "terms", "starts_at", "ends_at"],
}
#: Every public method but ``close``.
METHODS = sorted(
    name for name, _ in inspect.getmembers(Shop, inspect.isfunction) if not name.startswith("_") and name != "close"
)


def _parameters(method: str) -> list[str]:
    if method in CATALOGUE_FIELDS:
        return CATALOGUE_FIELDS[method]
    signature = inspect.signature(getattr(Shop, method))
    return [name for name in signature.parameters if name != "self"]


@st.composite
def calls(draw: st.DrawFn, s: Session) -> tuple[str, dict[str, Any]]:
    method = draw(st.sampled_from(METHODS))
    names = _parameters(method)
    # Plausible throughout (so that sessions build up state), one hostile argument, or any mix.
    mode = draw(st.sampled_from(["plausible", "one hostile", "mixed"]))
    odd_one = draw(st.sampled_from(names)) if names else None
    arguments = {}
    for name in names:
        if mode == "plausible":
            kind = "plausible"
        elif mode == "one hostile":
            kind = "hostile" if name == odd_one else "plausible"
        else:
            kind = draw(st.sampled_from(["plausible"] * 6 + ["hostile"] * 3 + ["left out"]))
        if kind == "plausible":
            arguments[name] = draw(_plausible(name, s))
        elif kind == "hostile":
            arguments[name] = draw(HOSTILE)
    return method, arguments


# ------------------------------------------------------------------ the test


@pytest.mark.slow
@settings(
    max_examples=300, deadline=timedelta(seconds=30),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_calls_get_a_typed_error_or_are_accepted_and_project(session: Session, data: st.DataObject) -> None:
    s = session
    for _ in range(data.draw(st.integers(1, 6), label="calls")):
        method, arguments = data.draw(calls(s), label="call")
        before = s.events()
        try:
            result = getattr(s.shop, method)(**arguments)
        except EcomcoreError as error:
            event(f"refused: {error.code}")
            assert s.events() == before, f"{method} refused but stored events"
        except TypeError as error:
            # Only a missing required argument, a Python-level call error of the test's own making.
            assert "required" in str(error) and "argument" in str(error), f"{method}: {error!r}"
            assert s.events() == before
        else:
            event("accepted, stored events" if s.events() > before else "accepted")
            s.remember(result, _id_kind(method))
        s.clock.advance(timedelta(minutes=data.draw(st.integers(0, 600), label="minutes")))
    Projector(s.shop.store, s.read_models).catch_up()


def _id_kind(method: str) -> str | None:
    return {"create_campaign": "campaign_id", "issue_coupon": "coupon_id", "request_return": "return_id"}.get(method)
