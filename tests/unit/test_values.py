"""Bounded values (spec §8): whatever a command accepts, every read model can hold.

Every bound and every forbidden character class is refused as ``InvalidCommand`` by the
real Shop commands, before anything is stored; the values right at the bounds and every
kind of text a person writes are accepted; history recorded under the looser rules of
before still loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import JSONTranscoder
from pydantic import TypeAdapter, ValidationError
from shop_fixtures import START
from strategies import T0

from ecomcore import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    MAX_STOCK_QUANTITY,
    MAX_UNIT_PRICE,
    MAX_WEIGHT_G,
    AmountTooLarge,
    InvalidCommand,
    ManualClock,
    Shop,
    Sku,
)
from ecomcore.domain.allocation import Allocation
from ecomcore.domain.catalogue import RecordedSku
from ecomcore.domain.order import Order, OrderLine
from ecomcore.domain.values import (
    LINE_MAX_LENGTH,
    MAX_CART_LINES,
    MAX_MOMENT,
    MAX_PROMOTION_TIERS,
    MAX_SCOPE_IDS,
    MAX_VALIDITY_DAYS,
    MIN_MOMENT,
    PROSE_MAX_LENGTH,
    BoundedAmount,
    Line,
    Prose,
    StockQuantity,
    UnitPrice,
    UnitWeight,
)
from ecomcore.infrastructure.mapper import PydanticMapper

LINE = TypeAdapter(Line)
PROSE = TypeAdapter(Prose)

#: Characters no text may hold, each standing for its class.
FORBIDDEN_EVERYWHERE = {
    "NUL": "\x00",
    "C0 SOH": "\x01",
    "C0 vertical tab": "\x0b",
    "C0 form feed": "\x0c",
    "C0 carriage return": "\r",
    "C0 escape": "\x1b",
    "C0 unit separator": "\x1f",
    "DEL": "\x7f",
    "C1 first": "\x80",
    "C1 next line": "\x85",
    "C1 last": "\x9f",
    "lone high surrogate": "\ud800",
    "lone low surrogate": "\udfff",
}
#: Characters prose may hold but a single line may not.
FORBIDDEN_IN_A_LINE = {"newline": "\n", "tab": "\t"}

#: Texts people write, all of which must be accepted (and come back unchanged).
ACCEPTED = {
    "CJK": "上海市浦东新区世纪大道100号 ",
    "emoji, astral plane": "📦🚚 👨‍👩‍👧 🇨🇳",
    "combining marks": "e\u0301 a\u0308 ก\u0e34\u0e4a",
    "RTL": "شارع الملك فهد ‏עברית",
    "quotes and backslash": "'\"`\\ \\n \\x00 \\\\",
    "percent and SQL": "100% '); DROP TABLE x; -- %s {0} $1",
    "NBSP and symbols": "\u00a0€£¥\u200b\ufeff\ufffd",
}


# ---------------------------------------------------------------------------- the types


@pytest.mark.parametrize("char", FORBIDDEN_EVERYWHERE.values(), ids=FORBIDDEN_EVERYWHERE.keys())
@pytest.mark.parametrize("adapter", [LINE, PROSE], ids=["Line", "Prose"])
def test_control_characters_and_lone_surrogates_are_refused(adapter: TypeAdapter[str], char: str) -> None:
    with pytest.raises(ValidationError):
        adapter.validate_python(f"a{char}b")


@pytest.mark.parametrize("char", FORBIDDEN_IN_A_LINE.values(), ids=FORBIDDEN_IN_A_LINE.keys())
def test_a_line_is_one_line_but_prose_may_have_newlines_and_tabs(char: str) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        LINE.validate_python(f"a{char}b")
    assert PROSE.validate_python(f"a{char}b") == f"a{char}b"


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_what_people_write_is_accepted(text: str) -> None:
    assert LINE.validate_python(text) == text
    assert PROSE.validate_python(f"{text}\n\t{text}") == f"{text}\n\t{text}"


def test_lengths_count_characters_not_bytes() -> None:
    assert LINE.validate_python("😀" * LINE_MAX_LENGTH) == "😀" * LINE_MAX_LENGTH
    assert PROSE.validate_python("語" * PROSE_MAX_LENGTH) == "語" * PROSE_MAX_LENGTH
    for adapter, longest in ((LINE, LINE_MAX_LENGTH), (PROSE, PROSE_MAX_LENGTH)):
        with pytest.raises(ValidationError, match="at most"):
            adapter.validate_python("x" * (longest + 1))
        with pytest.raises(ValidationError):
            adapter.validate_python("")


def test_the_message_names_the_character_and_where_it_is() -> None:
    with pytest.raises(ValidationError, match=r"U\+0000 at position 3"):
        LINE.validate_python("abc\x00")


@pytest.mark.parametrize(
    ("bounded", "largest"),
    [(BoundedAmount, MAX_AMOUNT), (UnitPrice, MAX_UNIT_PRICE), (UnitWeight, MAX_WEIGHT_G),
     (StockQuantity, MAX_STOCK_QUANTITY)],
    ids=["amount", "unit price", "unit weight", "stock quantity"],
)
def test_numbers_are_bounded_strict_integers(bounded: Any, largest: int) -> None:
    adapter = TypeAdapter(bounded)
    assert adapter.validate_python(largest) == largest
    assert adapter.validate_python(0) == 0
    for refused in (largest + 1, 2**63, -1, True, float(largest), str(largest)):
        with pytest.raises(ValidationError):
            adapter.validate_python(refused)


def test_the_bounds_keep_every_sum_of_one_checkout_far_below_2_to_the_63() -> None:
    """The arithmetic in ``ecomcore.domain.values``' docstring, checked."""
    assert MAX_UNIT_PRICE * MAX_QUANTITY == MAX_AMOUNT  # one line's gross is one amount
    assert MAX_CART_LINES * MAX_AMOUNT * 40 < 2**63  # a checkout's gross and discounts
    assert MAX_CART_LINES * MAX_QUANTITY * MAX_WEIGHT_G * 1000 < 2**63  # a checkout's grams
    # Freight alone is not bounded by its inputs (hence the payable check at checkout).
    assert MAX_CART_LINES * MAX_QUANTITY * MAX_WEIGHT_G * MAX_AMOUNT > 2**63


# ---------------------------------------------------------------------------- through the Shop


@dataclass
class Ids:
    checkout_id: UUID
    order_id: UUID
    shipment_id: UUID
    return_id: UUID


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A shop on a SQLite file with its SQL catalogue (no in-memory parts)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('values')}/store.sqlite"
    shop = Shop(url, clock=ManualClock(START))
    shop.register_merchant(merchant_id="m1", name="Tea House", freight={"first_fee": 800, "additional_fee": 300})
    shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
    shop.register_sku(
        sku_id="S1", spu_id="P1", merchant_id="m1", category_path=("food",), brand_id="b1",
        unit_price=1000, weight_g=500, title="Tea",
    )
    shop.receive_stock(sku_id="S1", warehouse_id="w1", quantity=10, reference="po-1")
    yield shop
    shop.close()


@pytest.fixture(scope="module")
def ids(shop: Shop) -> Ids:
    """A delivered order with a requested return: every command below has real targets."""
    receipt = shop.checkout(customer_id="alice", items=[{"sku_id": "S1", "quantity": 3}], shipping_address="1 Tea Rd")
    paid = shop.pay(checkout_id=receipt.checkout_id, payment_id="pay-1", amount=receipt.payable, provider_txn="t-1")
    (shipment_id,) = paid.shipment_ids
    shop.dispatch(shipment_id=shipment_id, carrier="SF", tracking_number="SF1")
    shop.deliver(shipment_id=shipment_id)
    (order_id,) = receipt.order_ids
    return_id = shop.request_return(order_id=order_id, customer_id="alice", lines={1: 1}, reason="too sweet")
    return Ids(receipt.checkout_id, order_id, shipment_id, return_id)


def refused(shop: Shop, command: Callable[[], Any]) -> InvalidCommand:
    """Run ``command``; it must raise InvalidCommand and store nothing."""
    head = shop.store.recorder.max_notification_id()
    with pytest.raises(InvalidCommand) as raised:
        command()
    assert raised.value.code == "invalid_command"
    assert shop.store.recorder.max_notification_id() == head
    return raised.value


#: Every free-text field of every command and catalogue value: (name, is prose, longest,
#: how to send a value through the Shop).
TEXT_FIELDS: dict[str, tuple[bool, int, Callable[[Shop, Ids, str], Any]]] = {
    "checkout.shipping_address": (True, PROSE_MAX_LENGTH, lambda s, i, v: s.checkout(
        customer_id="alice", items=[{"sku_id": "S1", "quantity": 1}], shipping_address=v)),
    "dispatch.carrier": (False, LINE_MAX_LENGTH, lambda s, i, v: s.dispatch(
        shipment_id=i.shipment_id, carrier=v, tracking_number="SF2")),
    "update_tracking.status": (False, 64, lambda s, i, v: s.update_tracking(
        shipment_id=i.shipment_id, occurred_at=T0, status=v)),
    "update_tracking.location": (False, LINE_MAX_LENGTH, lambda s, i, v: s.update_tracking(
        shipment_id=i.shipment_id, occurred_at=T0, status="scanned", location=v)),
    "report_delivery_failure.reason": (True, PROSE_MAX_LENGTH, lambda s, i, v: s.report_delivery_failure(
        shipment_id=i.shipment_id, reason=v)),
    "refund_only.reason": (True, PROSE_MAX_LENGTH, lambda s, i, v: s.refund_only(
        order_id=i.order_id, refund_id="r-1", lines={1: 1}, reason=v)),
    "request_return.reason": (True, PROSE_MAX_LENGTH, lambda s, i, v: s.request_return(
        order_id=i.order_id, customer_id="alice", lines={1: 1}, reason=v)),
    "reject_return.reason": (True, PROSE_MAX_LENGTH, lambda s, i, v: s.reject_return(
        order_id=i.order_id, return_id=i.return_id, reason=v)),
    "ship_return.carrier": (False, LINE_MAX_LENGTH, lambda s, i, v: s.ship_return(
        order_id=i.order_id, return_id=i.return_id, carrier=v, tracking_number="YT1")),
    "receive_stock.reference": (False, LINE_MAX_LENGTH, lambda s, i, v: s.receive_stock(
        sku_id="S1", warehouse_id="w1", quantity=1, reference=v)),
    "count_stock.reason": (True, PROSE_MAX_LENGTH, lambda s, i, v: s.count_stock(
        sku_id="S1", warehouse_id="w1", counted_quantity=5, reason=v)),
    "write_off_stock.reason": (True, PROSE_MAX_LENGTH, lambda s, i, v: s.write_off_stock(
        sku_id="S1", warehouse_id="w1", quantity=1, reason=v)),
    "create_campaign.name": (False, LINE_MAX_LENGTH, lambda s, i, v: s.create_campaign(
        name=v, terms={"kind": "cash", "amount_off": 100}, claim_starts_at=START,
        claim_ends_at=START + timedelta(days=1), validity={"days_from_issue": 7}, total_quantity=10)),
    "register_sku.title": (False, LINE_MAX_LENGTH, lambda s, i, v: s.register_sku(
        sku_id="S-new", spu_id="P1", merchant_id="m1", category_path=("food",), brand_id="b1",
        unit_price=1, weight_g=1, title=v)),
    "register_warehouse.region": (False, LINE_MAX_LENGTH, lambda s, i, v: s.register_warehouse(
        warehouse_id="w-new", region=v, priority=9)),
    "register_merchant.name": (False, LINE_MAX_LENGTH, lambda s, i, v: s.register_merchant(
        merchant_id="m-new", name=v)),
}

TEXT_CASES = [
    pytest.param(field, char, id=f"{field}-{label}")
    for field, (prose, _, _) in TEXT_FIELDS.items()
    for label, char in (FORBIDDEN_EVERYWHERE | ({} if prose else FORBIDDEN_IN_A_LINE)).items()
]


def catalogue_untouched(shop: Shop) -> None:
    assert shop.catalogue.sku("S-new") is None
    assert shop.catalogue.warehouse("w-new") is None
    assert shop.catalogue.merchant("m-new") is None


@pytest.mark.parametrize(("field", "char"), TEXT_CASES)
def test_every_text_field_refuses_control_characters(shop: Shop, ids: Ids, field: str, char: str) -> None:
    _, _, send = TEXT_FIELDS[field]
    error = refused(shop, lambda: send(shop, ids, f"ok{char}ok"))
    assert "control characters" in error.message or "unicode" in error.message
    catalogue_untouched(shop)


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_every_text_field_refuses_one_character_too_many(shop: Shop, ids: Ids, field: str) -> None:
    _, longest, send = TEXT_FIELDS[field]
    refused(shop, lambda: send(shop, ids, "字" * (longest + 1)))
    catalogue_untouched(shop)


def test_the_issues_examples_are_refused(shop: Shop, ids: Ids) -> None:
    """A payment of 2**63 and a NUL in a shipping address used to stop the read models."""
    error = refused(shop, lambda: shop.pay(
        checkout_id=ids.checkout_id, payment_id="late-1", amount=2**63, provider_txn="t-2"))
    assert error.problems[0]["loc"] == ("amount",)
    refused(shop, lambda: shop.checkout(
        customer_id="alice", items=[{"sku_id": "S1", "quantity": 1}], shipping_address="1 Tea Rd\x00"))


def in_the_window() -> dict[str, Any]:
    return {"starts_at": START - timedelta(days=1), "ends_at": START + timedelta(days=1)}


#: Every number a caller gives, one past its bound.
NUMBER_CASES: dict[str, Callable[[Shop, Ids], Any]] = {
    "register_sku.unit_price": lambda s, i: s.register_sku(
        sku_id="S-new", spu_id="P1", merchant_id="m1", category_path=("food",), brand_id="b1",
        unit_price=MAX_UNIT_PRICE + 1, weight_g=1, title="t"),
    "register_sku.weight_g": lambda s, i: s.register_sku(
        sku_id="S-new", spu_id="P1", merchant_id="m1", category_path=("food",), brand_id="b1",
        unit_price=1, weight_g=MAX_WEIGHT_G + 1, title="t"),
    "register_merchant.freight.first_fee": lambda s, i: s.register_merchant(
        merchant_id="m-new", name="n", freight={"first_fee": MAX_AMOUNT + 1, "additional_fee": 0}),
    "register_merchant.freight.additional_fee": lambda s, i: s.register_merchant(
        merchant_id="m-new", name="n", freight={"first_fee": 0, "additional_fee": MAX_AMOUNT + 1}),
    "register_merchant.freight.free_threshold": lambda s, i: s.register_merchant(
        merchant_id="m-new", name="n",
        freight={"first_fee": 0, "additional_fee": 0, "free_threshold": MAX_AMOUNT + 1}),
    "register_warehouse.priority": lambda s, i: s.register_warehouse(
        warehouse_id="w-new", region="east", priority=2**31),
    "add_promotion.threshold": lambda s, i: s.add_promotion(
        promotion_id="promo", terms={"merchant_id": "m1", "tiers": [{"threshold": MAX_AMOUNT + 1, "amount_off": 1}]},
        **in_the_window()),
    "add_promotion.amount_off": lambda s, i: s.add_promotion(
        promotion_id="promo", terms={"merchant_id": "m1", "tiers": [{"threshold": 1, "amount_off": MAX_AMOUNT + 1}]},
        **in_the_window()),
    "create_campaign.amount_off": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "cash", "amount_off": MAX_AMOUNT + 1}, claim_starts_at=START,
        claim_ends_at=START + timedelta(days=1), validity={"days_from_issue": 7}, total_quantity=10),
    "create_campaign.threshold": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "threshold", "threshold": MAX_AMOUNT + 1, "amount_off": 1}, claim_starts_at=START,
        claim_ends_at=START + timedelta(days=1), validity={"days_from_issue": 7}, total_quantity=10),
    "create_campaign.cap": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "percentage", "percent_off_bp": 100, "cap": MAX_AMOUNT + 1}, claim_starts_at=START,
        claim_ends_at=START + timedelta(days=1), validity={"days_from_issue": 7}, total_quantity=10),
    "pay.amount": lambda s, i: s.pay(
        checkout_id=i.checkout_id, payment_id="late-1", amount=MAX_AMOUNT + 1, provider_txn="t-2"),
    "count_stock.counted_quantity": lambda s, i: s.count_stock(
        sku_id="S1", warehouse_id="w1", counted_quantity=MAX_STOCK_QUANTITY + 1),
    "set_up_stock.safety_stock": lambda s, i: s.set_up_stock(
        sku_id="S1", warehouse_id="w1", safety_stock=MAX_STOCK_QUANTITY + 1),
    "set_up_stock.reorder_quantity": lambda s, i: s.set_up_stock(
        sku_id="S1", warehouse_id="w1", reorder_quantity=MAX_STOCK_QUANTITY + 1),
    "receive_stock.quantity": lambda s, i: s.receive_stock(
        sku_id="S1", warehouse_id="w1", quantity=MAX_QUANTITY + 1, reference="po"),
    "write_off_stock.quantity": lambda s, i: s.write_off_stock(
        sku_id="S1", warehouse_id="w1", quantity=MAX_QUANTITY + 1, reason="r"),
    "checkout.quantity": lambda s, i: s.checkout(
        customer_id="alice", items=[{"sku_id": "S1", "quantity": MAX_QUANTITY + 1}], shipping_address="a"),
    "checkout.quantity summed over items of one SKU": lambda s, i: s.checkout(
        customer_id="alice", items=[{"sku_id": "S1", "quantity": MAX_QUANTITY}, {"sku_id": "S1", "quantity": 1}],
        shipping_address="a"),
    "checkout.items": lambda s, i: s.checkout(
        customer_id="alice", items=[{"sku_id": "S1", "quantity": 1}] * 201, shipping_address="a"),
    "recommend_coupons.quantity summed": lambda s, i: s.recommend_coupons(
        "alice", [{"sku_id": "S1", "quantity": MAX_QUANTITY}, {"sku_id": "S1", "quantity": 1}]),
    "refund_only.units": lambda s, i: s.refund_only(
        order_id=i.order_id, refund_id="r-1", lines={1: MAX_QUANTITY + 1}, reason="r"),
    # Issue 11: days_from_issue=10**10 made every later issue_coupon raise OverflowError.
    "create_campaign.validity.days_from_issue": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "cash", "amount_off": 1}, claim_starts_at=START,
        claim_ends_at=START + timedelta(days=1), validity={"days_from_issue": MAX_VALIDITY_DAYS + 1},
        total_quantity=10),
    # Naive validity made sweep raise TypeError for the whole store.
    "create_campaign.validity naive": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "cash", "amount_off": 1}, claim_starts_at=START,
        claim_ends_at=START + timedelta(days=1),
        validity={"valid_from": datetime(2026, 11, 1), "valid_until": datetime(2026, 12, 1)}, total_quantity=10),
    "create_campaign.validity beyond the last moment": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "cash", "amount_off": 1}, claim_starts_at=START,
        claim_ends_at=START + timedelta(days=1),
        validity={"valid_from": START, "valid_until": MAX_MOMENT}, total_quantity=10),
    "create_campaign.claim naive": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "cash", "amount_off": 1}, claim_starts_at=datetime(2026, 11, 1),
        claim_ends_at=datetime(2026, 12, 1), validity={"days_from_issue": 7}, total_quantity=10),
    "create_campaign.scope ids": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "cash", "amount_off": 1,
                         "scope": {"sku_ids": [f"S{n}" for n in range(MAX_SCOPE_IDS + 1)]}},
        claim_starts_at=START, claim_ends_at=START + timedelta(days=1), validity={"days_from_issue": 7},
        total_quantity=10),
    "create_campaign.scope id with a NUL": lambda s, i: s.create_campaign(
        name="c", terms={"kind": "cash", "amount_off": 1, "scope": {"brand_ids": ["b\x00"]}},
        claim_starts_at=START, claim_ends_at=START + timedelta(days=1), validity={"days_from_issue": 7},
        total_quantity=10),
    # Naive promotion dates made every later checkout of the merchant's goods raise TypeError.
    "add_promotion naive": lambda s, i: s.add_promotion(
        promotion_id="promo", terms={"merchant_id": "m1", "tiers": [{"threshold": 1, "amount_off": 1}]},
        starts_at=datetime(2026, 11, 1), ends_at=datetime(2026, 12, 1)),
    "add_promotion.tiers": lambda s, i: s.add_promotion(
        promotion_id="promo", terms={"merchant_id": "m1", "tiers": [
            {"threshold": n + 1, "amount_off": 1} for n in range(MAX_PROMOTION_TIERS + 1)]},
        **in_the_window()),
    "add_promotion.scope ids": lambda s, i: s.add_promotion(
        promotion_id="promo", terms={"merchant_id": "m1", "tiers": [{"threshold": 1, "amount_off": 1}],
                                     "scope": {"excluded_sku_ids": ["x" * 65]}},
        **in_the_window()),
    # Converting these to UTC overflowed a read model's datetime column.
    "update_tracking.occurred_at latest": lambda s, i: s.update_tracking(
        shipment_id=i.shipment_id, occurred_at=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
        status="s"),
    "update_tracking.occurred_at earliest": lambda s, i: s.update_tracking(
        shipment_id=i.shipment_id, occurred_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), status="s"),
    "update_tracking.occurred_at just before": lambda s, i: s.update_tracking(
        shipment_id=i.shipment_id, occurred_at=MIN_MOMENT - timedelta(microseconds=1), status="s"),
    "update_tracking.occurred_at at the end": lambda s, i: s.update_tracking(
        shipment_id=i.shipment_id, occurred_at=MAX_MOMENT, status="s"),
}


@pytest.mark.parametrize("case", NUMBER_CASES)
def test_every_number_is_bounded(shop: Shop, ids: Ids, case: str) -> None:
    refused(shop, lambda: NUMBER_CASES[case](shop, ids))
    catalogue_untouched(shop)
    assert shop.catalogue.promotions("m1") == []


def test_a_pre_built_sku_over_its_bounds_cannot_even_be_made() -> None:
    """A catalogue value built by the caller is validated when it is built."""
    with pytest.raises(ValidationError):
        Sku(sku_id="S", spu_id="P", merchant_id="m1", category_path=("c",), brand_id="b",
            unit_price=MAX_UNIT_PRICE + 1, weight_g=1, title="t")


# ---------------------------------------------------------------------------- at the bounds


@pytest.fixture
def fresh(tmp_path) -> Iterator[Shop]:
    shop = Shop(f"sqlite:///{tmp_path}/store.sqlite", clock=ManualClock(START))
    yield shop
    shop.close()


def register_max_sku(shop: Shop, *, freight: dict[str, Any] | None) -> None:
    shop.register_merchant(merchant_id="m1", name="Gold", freight=freight)
    shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
    shop.register_sku(
        sku_id="GOLD", spu_id="P", merchant_id="m1", category_path=("c",), brand_id="b",
        unit_price=MAX_UNIT_PRICE, weight_g=1, title="金" * LINE_MAX_LENGTH,
    )
    shop.count_stock(sku_id="GOLD", warehouse_id="w1", counted_quantity=MAX_STOCK_QUANTITY, reason="盘点\n第1次\t✓")
    shop.set_up_stock(
        sku_id="GOLD", warehouse_id="w1", safety_stock=MAX_STOCK_QUANTITY, reorder_quantity=MAX_STOCK_QUANTITY
    )


def test_the_largest_checkout_is_accepted(fresh: Shop) -> None:
    register_max_sku(fresh, freight=None)
    address = "\n".join(ACCEPTED.values())
    receipt = fresh.checkout(
        customer_id="alice", items=[{"sku_id": "GOLD", "quantity": MAX_QUANTITY}], shipping_address=address
    )
    assert receipt.payable == MAX_AMOUNT
    order = fresh.order(receipt.order_ids[0])
    assert order.shipping_address == address
    assert order.lines[0].sku.title == "金" * LINE_MAX_LENGTH
    assert fresh.stock_item("GOLD", "w1").safety_stock == MAX_STOCK_QUANTITY


def test_a_checkout_whose_freight_takes_it_over_the_largest_amount_is_refused(fresh: Shop) -> None:
    """Freight is unbounded by its inputs (fee × started units): the payable is checked."""
    register_max_sku(fresh, freight={"first_fee": 1, "additional_fee": 0})
    head = fresh.store.recorder.max_notification_id()
    with pytest.raises(AmountTooLarge) as raised:
        fresh.checkout(customer_id="alice", items=[{"sku_id": "GOLD", "quantity": MAX_QUANTITY}], shipping_address="a")
    assert raised.value.code == "amount_too_large"
    assert raised.value.details["amount"] == MAX_AMOUNT + 1
    assert "at most 1000000000000000" in raised.value.message
    assert fresh.store.recorder.max_notification_id() == head
    assert fresh.available("GOLD", "w1") == MAX_STOCK_QUANTITY  # nothing was reserved


def test_tracking_and_stock_texts_come_back_unchanged(fresh: Shop) -> None:
    fresh.register_merchant(merchant_id="m1", name="‏متجر الشاي")
    fresh.register_warehouse(warehouse_id="w1", region="华东 🏭", priority=1)
    fresh.register_sku(
        sku_id="S1", spu_id="P", merchant_id="m1", category_path=("c",), brand_id="b",
        unit_price=100, weight_g=10, title=ACCEPTED["quotes and backslash"],
    )
    fresh.receive_stock(sku_id="S1", warehouse_id="w1", quantity=5, reference=ACCEPTED["percent and SQL"])
    receipt = fresh.checkout(customer_id="alice", items=[{"sku_id": "S1", "quantity": 1}], shipping_address="a\tb")
    paid = fresh.pay(checkout_id=receipt.checkout_id, payment_id="p", amount=receipt.payable, provider_txn="t")
    (shipment_id,) = paid.shipment_ids
    fresh.dispatch(shipment_id=shipment_id, carrier=ACCEPTED["CJK"].strip(), tracking_number="T1")
    fresh.update_tracking(
        shipment_id=shipment_id, occurred_at=START, status="🚚" * 64, location=ACCEPTED["combining marks"]
    )
    shipment = fresh.shipment(shipment_id)
    assert shipment.carrier == ACCEPTED["CJK"].strip()
    assert [(u.status, u.location) for u in shipment.tracking] == [("🚚" * 64, ACCEPTED["combining marks"])]
    assert fresh.catalogue.warehouse("w1").region == "华东 🏭"


# ---------------------------------------------------------------------------- history still loads


def test_orders_recorded_under_the_looser_rules_still_load() -> None:
    """Bounds apply to new input: a stored SKU snapshot outside them still reads back."""
    loose = RecordedSku(
        sku_id="S", spu_id="P", merchant_id="m1", category_path=("c",), brand_id="b",
        unit_price=10**18, weight_g=10**12, title="old\x00title\x85",
    )
    with pytest.raises(ValidationError):
        Sku.model_validate(loose.model_dump())
    line = OrderLine(
        line_no=1, sku=loose, quantity=1, gross=10**18, promotion_discount=0, merchant_coupon_discount=0,
        platform_coupon_discount=0, net=10**18, allocations=(Allocation(warehouse_id="w1", quantity=1),),
    )
    order_id = UUID(int=1)
    placed = Order.Placed(
        originator_id=order_id, originator_version=1, timestamp=T0, checkout_id=UUID(int=2), customer_id="c",
        merchant_id="m1", currency="CNY", lines=(line,), promotion_id=None, merchant_coupon_id=None,
        platform_coupon_id=None, freight=0, payable=10**18, payment_deadline=T0, shipping_address="a\x00b",
    )
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    assert mapper.to_domain_event(mapper.to_stored_event(placed)) == placed


def test_a_line_recorded_from_a_catalogue_sku_equals_itself_read_back() -> None:
    sku = Sku(sku_id="S", spu_id="P", merchant_id="m1", category_path=("c",), brand_id="b",
              unit_price=1, weight_g=1, title="t")
    line = OrderLine(
        line_no=1, sku=sku, quantity=1, gross=1, promotion_discount=0, merchant_coupon_discount=0,
        platform_coupon_discount=0, net=1, allocations=(Allocation(warehouse_id="w1", quantity=1),),
    )
    assert type(line.sku) is RecordedSku
    assert OrderLine.model_validate_json(line.model_dump_json()) == line


def test_a_campaign_recorded_with_any_number_of_days_still_issues_coupons() -> None:
    """History may hold a validity of any length (campaigns were once unbounded): issuing
    from it ends the coupon's window at the calendar's end instead of overflowing."""
    from ecomcore.domain.coupon import Validity

    start, end = Validity(days_from_issue=10**10).window(START)
    assert start == START and end.year == 9999
