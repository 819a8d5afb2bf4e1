"""A store written by ecomcore 0.1.0 still loads, projects and trades (spec §2: history is never rewritten).

``tests/data/store-0.1.0.sqlite.gz`` is a 40-order demo stored by 0.1.0, with every event type
of that version, including those renamed or moved since (``Coupon.Returned``,
``Shipment.Received``, ``Shipment.Shrunk``, ``ecomcore.domain.order:Checkout.*``; see
``ecomcore.domain.renames``).  ``store-0.1.0.expected.json`` is what it projected to then.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from ecomcore import CheckoutReceipt, ManualClock, Settings, Shop
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.renames import RENAMED_TOPICS
from ecomcore.domain.shipment import Shipment
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections import OrderStatusQueries, Projector, ReadModels, ReconciliationQueries, rebuild

DATA = Path(__file__).resolve().parents[1] / "data"
EXPECTED = json.loads((DATA / "store-0.1.0.expected.json").read_text(encoding="utf-8"))

@pytest.fixture
def old_store_url(tmp_path: Path) -> str:
    """A private copy of the 0.1.0 store."""
    path = tmp_path / "store-0.1.0.sqlite"
    with gzip.open(DATA / "store-0.1.0.sqlite.gz") as packed, path.open("wb") as unpacked:
        shutil.copyfileobj(packed, unpacked)
    return f"sqlite:///{path}"


@pytest.fixture
def old_store(old_store_url: str) -> Iterator[EventStore]:
    opened = EventStore(Settings(store_url=old_store_url, aggregate_cache_size=0))
    yield opened
    opened.close()


def stored_topics(old_store_url: str) -> dict[UUID, list[str]]:
    """Each aggregate's stored topics, in version order, read from the table itself."""
    with sqlite3.connect(_path(old_store_url)) as db:
        rows = db.execute("SELECT originator_id, topic FROM stored_events ORDER BY originator_id, originator_version")
        found: dict[UUID, list[str]] = {}
        for originator_id, topic in rows:
            found.setdefault(UUID(originator_id), []).append(topic)
    return found


def test_the_store_holds_every_renamed_topic(old_store_url: str) -> None:
    """The 0.1.0 store really exercises the renames: each old topic is stored at least once."""
    topics = Counter(topic for history in stored_topics(old_store_url).values() for topic in history)
    assert sum(topics.values()) == EXPECTED["events"]
    renamed_events = {topic for topic in RENAMED_TOPICS if "." in topic.partition(":")[2]}
    assert {topic for topic in renamed_events if topics[topic]} == renamed_events


def test_every_aggregate_loads_and_renamed_events_come_back_under_their_new_names(
    old_store_url: str, old_store: EventStore
) -> None:
    """Every aggregate of the old store loads; an event stored under a former topic loads as its new class."""
    histories = stored_topics(old_store_url)
    for aggregate_id, topics in histories.items():
        aggregate = old_store.load(aggregate_id)
        assert aggregate.version == len(topics)
        events = list(old_store.events.get(aggregate_id))
        for topic, event in zip(topics, events, strict=True):
            if topic in RENAMED_TOPICS:
                assert type(event) is RENAMED_TOPICS[topic], topic
    renamed = {type(event) for aggregate_id in histories for event in old_store.events.get(aggregate_id)}
    assert {Coupon.Reinstated, Shipment.ReturnCheckedIn, Shipment.UnitsWithdrawn, Checkout.Placed} <= renamed


def test_the_old_store_projects_to_what_it_projected_to_then(old_store_url: str, old_store: EventStore) -> None:
    """Projected from zero, the old store gives the same orders by state and ledger balances as under 0.1.0,
    every stored event a projection handles is applied, and a rebuild finds no difference."""
    read_models = ReadModels(old_store_url)
    projector = Projector(old_store, read_models)
    applied = projector.catch_up()

    handled = 0
    for notification in old_store.recorder.select_notifications(1, EXPECTED["events"] + 1):
        event_type = type(old_store.mapper.to_domain_event(notification))
        handled += sum(event_type in type(projection).handles for projection in projector.projections.values())
    assert applied == handled

    by_state = OrderStatusQueries(read_models.engine, read_models.tables["order_status"]).count_by_state()
    assert {state.value: n for state, n in by_state.items() if n} == EXPECTED["orders_by_state"]
    balances = ReconciliationQueries(read_models.engine, read_models.tables["reconciliation"]).balances()
    assert balances == EXPECTED["balances"]
    for name in read_models.classes:
        assert rebuild(old_store, read_models, name, check=True).differences == (), name
    read_models.engine.dispose()


def test_a_shop_on_the_old_store_keeps_trading(old_store_url: str) -> None:
    """A Shop opened on the old store sells from its stock, takes the payment and plans the parcel;
    sweeping the old checkouts (paid or cancelled under 0.1.0) cancels none of them."""
    clock = ManualClock(_last_recorded(old_store_url) + timedelta(hours=1))
    with Shop(old_store_url, clock=clock) as shop:
        sku, before, receipt = _buy_one(shop, old_store_url)
        paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="compat", amount=receipt.payable, provider_txn="t")
        assert paid.outcome == "paid" and paid.shipment_ids
        assert shop.available(sku) == before - 1
        assert shop.expire_overdue_orders(clock.now() + timedelta(days=30)) == []


def test_an_unpaid_checkout_stored_under_the_former_topic_is_swept_when_overdue(old_store_url: str) -> None:
    """A checkout placed under 0.1.0 (its events under ``ecomcore.domain.order:Checkout.*``) and never paid
    is still found by the sweeper and cancelled once overdue, its stock released."""
    clock = ManualClock(_last_recorded(old_store_url) + timedelta(hours=1))
    with Shop(old_store_url, clock=clock) as shop:
        sku, before, receipt = _buy_one(shop, old_store_url)
    with sqlite3.connect(_path(old_store_url)) as db:
        moved = db.execute(
            "UPDATE stored_events SET topic = replace(topic, 'ecomcore.domain.checkout:', 'ecomcore.domain.order:') "
            "WHERE originator_id = ?",
            (receipt.checkout_id.hex,),
        ).rowcount
    assert moved == 1  # its Checkout.Placed, as 0.1.0 stored it
    with Shop(old_store_url, clock=clock) as shop:
        assert shop.available(sku) == before - 1
        assert shop.expire_overdue_orders(receipt.payment_deadline) == [receipt.checkout_id]
        assert shop.checkout_of(receipt.checkout_id).is_cancelled
        assert shop.available(sku) == before


def _buy_one(shop: Shop, old_store_url: str) -> tuple[str, int, CheckoutReceipt]:
    """One unit of the first SKU in stock: the SKU, what was available before, and the checkout."""
    with sqlite3.connect(_path(old_store_url)) as db:
        skus = [sku_id for (sku_id,) in db.execute("SELECT sku_id FROM catalogue_skus ORDER BY sku_id")]
    sku = next(sku_id for sku_id in skus if shop.available(sku_id) > 0)
    before = shop.available(sku)
    receipt = shop.checkout(customer_id="compat", items=[{"sku_id": sku, "quantity": 1}], shipping_address="1 Old Rd")
    return sku, before, receipt


def _last_recorded(old_store_url: str) -> datetime:
    with sqlite3.connect(_path(old_store_url)) as db:
        query = "SELECT max(json_extract(CAST(state AS TEXT), '$.timestamp')) FROM stored_events"
        (last,) = db.execute(query).fetchone()
    return datetime.fromisoformat(last)


def _path(old_store_url: str) -> str:
    return old_store_url.removeprefix("sqlite:///")
