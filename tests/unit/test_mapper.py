"""PydanticMapper (spec §2, §8): stored JSON with class versions, round trips, upcasting, refusal of bad state."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.utils import get_topic
from strategies import T0, make_line

from ecomcore.domain.after_sales import RefundKind
from ecomcore.domain.aggregate import Aggregate, DomainEvent, Snapshot
from ecomcore.domain.checkout import CancelReason, Checkout
from ecomcore.domain.coupon import Coupon, CouponCampaign, IssueChannel, Validity
from ecomcore.domain.errors import StoreCorrupted
from ecomcore.domain.order import Order
from ecomcore.domain.parcels import PlannedParcel
from ecomcore.domain.pricing import CouponKind, CouponTerms, Scope
from ecomcore.domain.renames import RENAMED_TOPICS, former_topics
from ecomcore.domain.shipment import ParcelItem, Shipment, TrackingUpdate
from ecomcore.domain.stock_item import ReleaseReason, StockItem
from ecomcore.infrastructure.mapper import PydanticMapper

ORDER = UUID("00000000-0000-4000-8000-0000000000e1")
OTHER_ORDER = UUID("00000000-0000-4000-8000-0000000000e2")
CHECKOUT = UUID("00000000-0000-4000-8000-0000000000d1")
CAMPAIGN = UUID("00000000-0000-4000-8000-0000000000c1")
S1 = UUID("00000000-0000-4000-8000-000000000051")
S2 = UUID("00000000-0000-4000-8000-000000000052")
S3 = UUID("00000000-0000-4000-8000-000000000053")
S4 = UUID("00000000-0000-4000-8000-000000000054")
HOUR = timedelta(hours=1)
AGGREGATES: tuple[type[Aggregate], ...] = (StockItem, CouponCampaign, Coupon, Checkout, Order, Shipment)


def mapper(**kwargs: Any) -> PydanticMapper:
    return PydanticMapper(transcoder=JSONTranscoder(), **kwargs)


def every_event() -> list[DomainEvent]:
    """At least one real event of every type the aggregates record, made by their own commands."""
    events: list[DomainEvent] = []

    stock = StockItem.register("sku-1", "w1", T0, safety_stock=2, reorder_quantity=10)
    stock.receive(10, "po-1", T0)
    stock.reserve(ORDER, 4, T0 + HOUR, T0)
    stock.confirm(ORDER, T0)
    stock.dispatch(ORDER, S1, 2, T0)
    stock.reserve(OTHER_ORDER, 3, T0 + HOUR, T0)
    stock.release(OTHER_ORDER, ReleaseReason.CANCELLED, T0)
    stock.restock_return(ORDER, 1, T0)
    stock.write_off(1, "damaged", T0)
    stock.write_off_return(ORDER, 1, "damaged in return", T0)
    stock.count(3, "stocktake", T0)  # available 1: low
    stock.receive(20, "po-2", T0)  # cleared
    stock.set_safety_stock(5, 30, T0)
    events += stock.collect_events()

    campaign = CouponCampaign.create(
        CAMPAIGN,
        T0,
        name="Double 11",
        terms=CouponTerms(
            kind=CouponKind.PERCENTAGE, percent_off_bp=1500, cap=2000, scope=Scope(brand_ids=("b1",)), funding="m1"
        ),
        claim_starts_at=T0,
        claim_ends_at=T0 + 24 * HOUR,
        validity=Validity(valid_from=T0, valid_until=T0 + 48 * HOUR),
        total_quantity=10,
        per_customer_limit=2,
    )
    first = campaign.issue("cust-1", IssueChannel.CLAIM, T0)
    second = campaign.issue("cust-1", IssueChannel.COMPENSATION, T0)
    campaign.stop("done", T0)
    events += campaign.collect_events()
    first.lock("cust-1", CHECKOUT, (ORDER, OTHER_ORDER), T0)
    first.unlock("cancelled", T0)
    first.lock("cust-1", CHECKOUT, (ORDER,), T0)
    first.redeem(CHECKOUT, T0)
    events += first.collect_events()
    first.order_refunded(ORDER, T0)  # OrderRefunded, then Reinstated
    events += first.collect_events()
    second.expire(T0 + 48 * HOUR)
    events += second.collect_events()

    checkout = Checkout.place(
        CHECKOUT, T0, customer_id="cust-1", order_ids=(ORDER,), payable=5000, payment_deadline=T0 + 24 * HOUR,
        client_request_id=None, coupon_ids=(first.id,),
    )
    checkout.mark_paid("pay-1", 5000, "txn-1", T0)
    checkout.record_late_payment("pay-2", 5000, "txn-2", T0)
    events += checkout.collect_events()
    events.append(
        Checkout.Cancelled(originator_id=CHECKOUT, originator_version=4, timestamp=T0, reason=CancelReason.TIMEOUT)
    )

    order = Order.place(
        ORDER, T0, checkout_id=CHECKOUT, customer_id="cust-1", merchant_id="m1", currency="CNY",
        lines=(make_line(1, "sku-1", 3, allocations={"w1": 2, "w2": 1}),), promotion_id="promo-1",
        merchant_coupon_id=first.id, platform_coupon_id=None, freight=800, payable=3800,
        payment_deadline=T0 + 24 * HOUR, shipping_address="1 Tea Street",
    )
    order.pay("pay-1", 3800, "txn-1", T0)
    order.record_late_payment("pay-2", 3800, "txn-2", T0)
    order.plan_shipments(
        (PlannedParcel(shipment_id=S1, lines={1: 2}), PlannedParcel(shipment_id=S2, lines={1: 1})), T0
    )
    order.shipment_dispatched(S1, T0)
    order.shipment_dispatched(S2, T0)
    order.shipment_failed(S2, "lost", T0)
    order.shipment_delivered(S1, T0)
    order.issue_refund("r-1", order.plan_refund_only({1: 1}), "lost parcel", T0)
    returned = UUID("00000000-0000-4000-8000-0000000000f1")
    rejected = UUID("00000000-0000-4000-8000-0000000000f2")
    order.request_return(rejected, {1: 1}, "changed mind", 7 * 24 * HOUR, T0)
    order.reject_return(rejected, "worn", T0)
    order.request_return(returned, {1: 1}, "wrong size", 7 * 24 * HOUR, T0)
    order.approve_return(returned, T0)
    order.return_shipped(returned, S3, T0)
    order.return_received(returned, {}, {1: 1}, T0)
    order.issue_refund("r-2", order.plan_return_refund(returned), "wrong size", T0)
    events += order.collect_events()
    events += [
        Order.Completed(originator_id=ORDER, originator_version=order.version + 1, timestamp=T0, how="automatic"),
        Order.Cancelled(originator_id=OTHER_ORDER, originator_version=2, timestamp=T0, reason=CancelReason.CUSTOMER),
    ]

    back = Shipment.send_return(
        S3, T0, order_id=ORDER, checkout_id=CHECKOUT, merchant_id="m1", warehouse_id="w1", return_id=returned,
        items=(ParcelItem(line_no=1, sku_id="sku-1", quantity=1, weight_g=500),), carrier="SF", tracking_number="R1",
    )
    back.check_in_return({}, {1: 1}, T0)
    events += back.collect_events()
    shrinking = Shipment.plan(
        S4, T0, order_id=ORDER, checkout_id=CHECKOUT, merchant_id="m1", warehouse_id="w1",
        items=(ParcelItem(line_no=1, sku_id="sku-1", quantity=2, weight_g=1000),),
    )
    shrinking.withdraw({1: 1}, "refunded before dispatch", T0)
    events += shrinking.collect_events()

    shipment = Shipment.plan(
        S1, T0, order_id=ORDER, checkout_id=CHECKOUT, merchant_id="m1", warehouse_id="w1",
        items=(ParcelItem(line_no=1, sku_id="sku-1", quantity=2, weight_g=1000),),
    )
    shipment.dispatch("SF", "SF123", T0)
    shipment.track(TrackingUpdate(occurred_at=T0 + HOUR, status="in_transit", location="Hangzhou"), T0 + HOUR)
    shipment.deliver(T0 + 2 * HOUR)
    events += shipment.collect_events()
    events += [
        Shipment.Failed(originator_id=S2, originator_version=3, timestamp=T0, reason="refused"),
        Shipment.Cancelled(originator_id=S2, originator_version=2, timestamp=T0, reason="refunded"),
    ]

    events.append(Snapshot.take(stock))
    events.append(Snapshot.take(campaign))
    return events


EVENTS = every_event()


def _name(event: DomainEvent) -> str:
    return f"{type(event).__qualname__}-v{event.originator_version}"


def test_sample_covers_every_event_type() -> None:
    """The round-trip sample holds every event type of every aggregate (so a new event type is tested too)."""
    declared = {event_type for aggregate in AGGREGATES for event_type in aggregate._handlers}
    assert declared - {type(e) for e in EVENTS} == set()
    assert Snapshot in {type(e) for e in EVENTS}


@pytest.mark.parametrize("event", EVENTS, ids=_name)
def test_every_event_round_trips(event: DomainEvent) -> None:
    """to_stored_event then to_domain_event gives back an equal event of the same type."""
    m = mapper()
    stored = m.to_stored_event(event)
    assert (stored.originator_id, stored.originator_version) == (event.originator_id, event.originator_version)
    assert stored.topic == get_topic(type(event))
    back = m.to_domain_event(stored)
    assert type(back) is type(event)
    assert back == event


@pytest.mark.parametrize("event", EVENTS, ids=_name)
def test_stored_json_carries_class_version_and_no_floats(event: DomainEvent) -> None:
    """The stored state is JSON with the event's class_version and no float anywhere."""
    state = json.loads(mapper().to_stored_event(event).state, parse_float=lambda s: pytest.fail(f"float {s}"))
    assert state["class_version"] == type(event).class_version
    assert "timestamp" in state


def test_round_trip_with_compression() -> None:
    """With a compressor configured, events still round-trip."""
    m = mapper(compressor=ZlibCompressor())
    for event in EVENTS:
        assert m.to_domain_event(m.to_stored_event(event)) == event


def test_snapshot_round_trip_restores_aggregate() -> None:
    """A stored StockItem snapshot reads back and restores the same state."""
    stock = StockItem.register("sku-1", "w1", T0)
    stock.receive(5, "po", T0)
    stock.reserve(ORDER, 2, T0 + HOUR, T0)
    stock.confirm(ORDER, T0)
    m = mapper()
    restored = m.to_domain_event(m.to_stored_event(Snapshot.take(stock))).restore()
    assert isinstance(restored, StockItem)
    assert (restored.on_hand, restored.reservations, restored.version) == (5, stock.reservations, stock.version)


# ------------------------------------------------------------------ renamed and moved classes


def test_every_former_topic_names_a_class_that_is_now_elsewhere() -> None:
    """Each former topic differs from its class's current topic, and ``former_topics`` lists it back."""
    for former, current in RENAMED_TOPICS.items():
        assert get_topic(current) != former
        assert former in former_topics(current)
    assert former_topics(Coupon.Reinstated) == ("ecomcore.domain.coupon:Coupon.Returned",)
    assert former_topics(Checkout.Placed) == ("ecomcore.domain.order:Checkout.Placed",)
    assert former_topics(Coupon.Issued) == ()


def test_renamed_events_keep_their_data_shape() -> None:
    """The renamed event classes still have the fields their stored events carry."""
    assert set(Coupon.Reinstated.model_fields) - _ENVELOPE == {"reason"}
    assert set(Shipment.ReturnCheckedIn.model_fields) - _ENVELOPE == {"sellable", "damaged"}
    assert set(Shipment.UnitsWithdrawn.model_fields) - _ENVELOPE == {"units", "reason"}


_ENVELOPE = {"originator_id", "originator_version", "timestamp"}


def test_an_event_stored_under_a_former_topic_loads_as_its_current_class() -> None:
    """An event stored under a former topic (e.g. Coupon.Returned) reads back as its current class."""
    m = mapper()
    for former, current in RENAMED_TOPICS.items():
        if "." not in former.partition(":")[2]:
            continue  # an aggregate class (snapshots), not an event
        event = next(e for e in EVENTS if type(e) is current)
        stored = m.to_stored_event(event)
        old = StoredEvent(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=former,
            state=stored.state,
        )
        back = m.to_domain_event(old)
        assert type(back) is current and back == event, former


# ------------------------------------------------------------------ class versions and upcasting


class ParcelWeighed(DomainEvent):
    """Test-only event at version 2: v1 stored ``weight_kg`` (int); v2 stores ``weight_g`` and a ``unit``."""

    class_version: ClassVar[int] = 2
    weight_g: int
    unit: str

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["weight_g"] = state.pop("weight_kg") * 1000
        state["unit"] = "g"


class ParcelWeighedV3(DomainEvent):
    """Test-only event at version 3, with two upcasters in a chain."""

    class_version: ClassVar[int] = 3
    weight_g: int
    checked: bool

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["weight_g"] = state.pop("weight_kg") * 1000

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["checked"] = False


def _stored(cls: type[DomainEvent], state: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=ORDER, originator_version=3, topic=get_topic(cls), state=json.dumps(state).encode()
    )


@pytest.mark.parametrize(
    ("reason", "kind"), [("late_payment", RefundKind.LATE_PAYMENT), ("missing item", RefundKind.REFUND_ONLY)]
)
def test_refund_issued_v1_is_upcast_with_its_kind(reason: str, kind: RefundKind) -> None:
    """A v1 RefundIssued (no kind) reads back as a late-payment refund or a refund only, by its reason."""
    old = {
        "timestamp": T0.isoformat(), "refund_id": "r-1", "amount": 500, "reason": reason,
        "lines": {} if kind is RefundKind.LATE_PAYMENT else {"1": [1, 500]}, "freight": 0, "class_version": 1,
    }
    event = mapper().to_domain_event(_stored(Order.RefundIssued, old))
    assert isinstance(event, Order.RefundIssued)
    assert (event.kind, event.amount, event.withdrawn, event.return_id) == (kind, 500, {}, None)


def test_new_event_is_stored_with_its_class_version() -> None:
    """An event of a class at version 2 is stored with class_version 2 and reads back unchanged."""
    event = ParcelWeighed(originator_id=ORDER, originator_version=3, timestamp=T0, weight_g=2500, unit="g")
    stored = mapper().to_stored_event(event)
    assert json.loads(stored.state)["class_version"] == 2
    assert mapper().to_domain_event(stored) == event


@pytest.mark.parametrize("with_version", [True, False])
def test_old_v1_state_is_upcast(with_version: bool) -> None:
    """A v1 stored state (with class_version 1, or none at all) is upcast to the current class."""
    old = {"timestamp": T0.isoformat(), "weight_kg": 3}
    if with_version:
        old["class_version"] = 1
    event = mapper().to_domain_event(_stored(ParcelWeighed, old))
    assert isinstance(event, ParcelWeighed)
    assert (event.weight_g, event.unit, event.originator_id, event.originator_version) == (3000, "g", ORDER, 3)
    assert event.timestamp == T0


def test_upcasters_chain_across_versions() -> None:
    """A v1 state runs through every upcaster in order up to the current version."""
    old = {"timestamp": T0.isoformat(), "weight_kg": 2, "class_version": 1}
    event = mapper().to_domain_event(_stored(ParcelWeighedV3, old))
    assert isinstance(event, ParcelWeighedV3) and (event.weight_g, event.checked) == (2000, False)
    newer = mapper().to_domain_event(
        _stored(ParcelWeighedV3, {"timestamp": T0.isoformat(), "weight_g": 7, "class_version": 2})
    )
    assert (newer.weight_g, newer.checked) == (7, False)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ stored state that no longer fits


@pytest.mark.parametrize(
    "state",
    [
        {"timestamp": T0.isoformat(), "reference": "po", "class_version": 1},  # quantity missing
        {"timestamp": T0.isoformat(), "quantity": 0, "reference": "po", "class_version": 1},  # fails gt=0
        {"timestamp": T0.isoformat(), "quantity": 5, "reference": "po", "extra": 1, "class_version": 1},
        {"timestamp": "not a time", "quantity": 5, "reference": "po", "class_version": 1},
    ],
    ids=["missing-field", "invalid-value", "unknown-field", "bad-timestamp"],
)
def test_state_that_no_longer_validates_raises(state: dict[str, Any]) -> None:
    """A stored state that does not validate against its class raises instead of loading half an event."""
    with pytest.raises(StoreCorrupted):
        mapper().to_domain_event(_stored(StockItem.Received, state))


def test_undecodable_state_raises_store_corrupted() -> None:
    """Bytes that are not JSON raise StoreCorrupted naming the event."""
    bad = StoredEvent(
        originator_id=ORDER, originator_version=3, topic=get_topic(StockItem.Received), state=b"\x00{not json"
    )
    with pytest.raises(StoreCorrupted) as caught:
        mapper().to_domain_event(bad)
    assert "Received" in str(caught.value)


class _NoUpcaster(DomainEvent):
    """Test-only event at version 2 that forgot its upcaster."""

    class_version: ClassVar[int] = 2
    size: int


def test_v1_state_without_upcaster_raises() -> None:
    """An old state whose upcaster is missing is not loaded silently."""
    with pytest.raises(StoreCorrupted, match="no upcaster"):
        mapper().to_domain_event(_stored(_NoUpcaster, {"timestamp": T0.isoformat(), "class_version": 1}))
