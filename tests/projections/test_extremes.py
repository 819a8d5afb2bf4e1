"""Whatever a command accepts, every read model can hold (spec §8, the bounded values).

One shop on each store, driven with the largest values every command accepts and
texts with every kind of character the commands accept, projected into all three read
models: nothing stops, a rebuild from zero equals the live tables, and the texts come
back identical through the queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta, timezone
from uuid import UUID

import pytest
from shop_fixtures import START

from ecomcore import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    MAX_STOCK_QUANTITY,
    MAX_UNIT_PRICE,
    MAX_WEIGHT_G,
    FreightTemplate,
    InvalidCommand,
    ManualClock,
    Settings,
    Shop,
    Validity,
)
from ecomcore.domain.values import LINE_MAX_LENGTH, MAX_MOMENT, MIN_MOMENT, PROSE_MAX_LENGTH
from ecomcore_projections.order_status import OrderDetail, OrderStatusQueries
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.reconciliation import ReconciliationQueries
from ecomcore_projections.runner import Projector, ReadModels
from ecomcore_projections.stock import StockQueries

#: Every kind of character a person may type: CJK, emoji (astral plane, ZWJ sequence,
#: flag), combining marks, right-to-left text and marks, quotes, backslashes, percent
#: and format strings, SQL, NBSP, zero-width and BOM characters.
KINDS = (
    "上海市浦东新区世纪大道100号 📦🚚👨‍👩‍👧🇨🇳 e\u0301 a\u0308 ก\u0e34\u0e4a "
    "شارع الملك فهد \u200fעברית\u200e '\"`\\ \\n \\x00 100% %s {0} $1 "
    "'); DROP TABLE x; -- \u00a0€\u200b\ufeff\ufffd "
)


def filled(length: int, *, prose: bool = False, salt: str = "") -> str:
    """A text of exactly ``length`` characters made of ``KINDS`` (and, in prose, newlines
    and tabs), which neither begins nor ends with whitespace (commands strip it)."""
    unit = salt + (KINDS.replace(" 📦", "\n📦").replace(" شارع", "\t\tشارع") if prose else KINDS)
    text = (unit * (length // len(unit) + 1))[:length]
    return "字" + text[1:-1] + "。" if length > 1 else "字"


def ascii_id(length: int, salt: str) -> str:
    """An external id of ``length`` printable ASCII characters, quotes and backslashes included."""
    unit = f"{salt}'\"\\%;--/*`~"
    return (unit * (length // len(unit) + 1))[:length]


def word_id(salt: str) -> str:
    """A catalogue or customer id of the full 64 characters."""
    return (salt + "-" + "x" * 64)[:64]


MERCHANT, CUSTOMER = word_id("M"), word_id("C")
W1, W2 = word_id("W1"), word_id("W2")
GOLD, TEA = word_id("GOLD"), word_id("TEA")
TEA_PRICE, TEA_WEIGHT, TEA_UNITS = 1000, 500, 3
RETURNED = MAX_QUANTITY - 1

TEXT = {
    "merchant": filled(LINE_MAX_LENGTH, salt="店"),
    "region W1": filled(LINE_MAX_LENGTH, salt="东"),
    "region W2": filled(LINE_MAX_LENGTH, salt="西"),
    "gold title": filled(LINE_MAX_LENGTH, salt="金"),
    "tea title": filled(LINE_MAX_LENGTH, salt="茶"),
    "count reason": filled(PROSE_MAX_LENGTH, prose=True, salt="盘"),
    "receipt reference": filled(LINE_MAX_LENGTH, salt="入"),
    "write-off reason": filled(PROSE_MAX_LENGTH, prose=True, salt="损"),
    "campaign": filled(LINE_MAX_LENGTH, salt="券"),
    "address": filled(PROSE_MAX_LENGTH, prose=True, salt="址"),
    "carrier": filled(LINE_MAX_LENGTH, salt="顺"),
    "status": filled(64, salt="运"),
    "location": filled(LINE_MAX_LENGTH, salt="地"),
    "tea carrier": filled(LINE_MAX_LENGTH, salt="圆"),
    "failure": filled(PROSE_MAX_LENGTH, prose=True, salt="失"),
    "refund reason": filled(PROSE_MAX_LENGTH, prose=True, salt="退"),
    "return reason": filled(PROSE_MAX_LENGTH, prose=True, salt="还"),
    "reject reason": filled(PROSE_MAX_LENGTH, prose=True, salt="拒"),
    "second return reason": filled(PROSE_MAX_LENGTH, prose=True, salt="再"),
    "return carrier": filled(LINE_MAX_LENGTH, salt="回"),
}

#: First kilogram and every started kilogram after it: the freight of the whole cart
#: (10¹³ g of gold and 1.5 kg of tea) is about 5·10¹⁴.
FREIGHT = FreightTemplate(
    first_fee=50_000, additional_fee=50_000, free_threshold=MAX_AMOUNT, first_unit=1000, additional_unit=1000
)
GROSS = MAX_UNIT_PRICE * MAX_QUANTITY + TEA_PRICE * TEA_UNITS
FREIGHT_FEE = FREIGHT.fee(
    weight_g=MAX_WEIGHT_G * MAX_QUANTITY + TEA_WEIGHT * TEA_UNITS,
    item_count=MAX_QUANTITY + TEA_UNITS,
    goods_after_discounts=0,
)
#: The merchant coupon that brings the payable to exactly MAX_AMOUNT.
COUPON_OFF = GROSS + FREIGHT_FEE - MAX_AMOUNT
EARLIEST = MIN_MOMENT.astimezone(timezone(timedelta(hours=-12)))
LATEST = (MAX_MOMENT - timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=14)))


@dataclass
class History:
    order_id: UUID
    gold_parcel: UUID
    tea_parcel: UUID
    return_parcel: UUID
    payment_id: str


@pytest.fixture
def shop(store_url: str, clock: ManualClock) -> Iterator[Shop]:
    # The catalogue in the store's database too.  Ten tonnes a unit: one parcel carries
    # the whole line rather than a million parcels.
    shop = Shop(store_url, clock=clock, settings=Settings(store_url=store_url, parcel_weight_limit_g=10**14))
    yield shop
    shop.close()


def extreme_history(shop: Shop, clock: ManualClock) -> History:
    shop.register_merchant(merchant_id=MERCHANT, name=TEXT["merchant"], freight=FREIGHT)
    shop.register_warehouse(warehouse_id=W1, region=TEXT["region W1"], priority=1)
    shop.register_warehouse(warehouse_id=W2, region=TEXT["region W2"], priority=2**31 - 1)
    for sku_id, price, weight, title in (
        (GOLD, MAX_UNIT_PRICE, MAX_WEIGHT_G, TEXT["gold title"]),
        (TEA, TEA_PRICE, TEA_WEIGHT, TEXT["tea title"]),
    ):
        shop.register_sku(
            sku_id=sku_id, spu_id=word_id("P" + sku_id), merchant_id=MERCHANT,
            category_path=tuple(word_id(f"cat{n}") for n in range(4)), brand_id=word_id("B"),
            unit_price=price, weight_g=weight, title=title,
        )

    shop.count_stock(sku_id=GOLD, warehouse_id=W1, counted_quantity=MAX_STOCK_QUANTITY, reason=TEXT["count reason"])
    shop.set_up_stock(
        sku_id=GOLD, warehouse_id=W1, safety_stock=MAX_STOCK_QUANTITY, reorder_quantity=MAX_STOCK_QUANTITY
    )
    shop.receive_stock(sku_id=TEA, warehouse_id=W2, quantity=MAX_QUANTITY, reference=TEXT["receipt reference"])
    shop.write_off_stock(sku_id=TEA, warehouse_id=W2, quantity=MAX_QUANTITY - 10, reason=TEXT["write-off reason"])
    shop.set_up_stock(sku_id=TEA, warehouse_id=W2, safety_stock=MAX_STOCK_QUANTITY, reorder_quantity=MAX_STOCK_QUANTITY)

    campaign_id = shop.create_campaign(
        name=TEXT["campaign"],
        terms={"kind": "threshold", "threshold": MAX_AMOUNT, "amount_off": COUPON_OFF, "funding": MERCHANT},
        claim_starts_at=START - timedelta(hours=1),
        claim_ends_at=START + timedelta(days=30),
        validity=Validity(days_from_issue=7),
        total_quantity=MAX_QUANTITY,
        per_customer_limit=MAX_QUANTITY,
    )
    coupon_id = shop.issue_coupon(campaign_id=campaign_id, customer_id=CUSTOMER)

    receipt = shop.checkout(
        customer_id=CUSTOMER,
        items=[{"sku_id": GOLD, "quantity": MAX_QUANTITY}, {"sku_id": TEA, "quantity": TEA_UNITS}],
        merchant_coupon_ids=[coupon_id],
        shipping_address=TEXT["address"],
        client_request_id=ascii_id(128, "req"),
    )
    assert receipt.payable == MAX_AMOUNT
    (order_id,) = receipt.order_ids
    payment_id = ascii_id(128, "pay")
    paid = shop.pay(
        checkout_id=receipt.checkout_id, payment_id=payment_id, amount=MAX_AMOUNT, provider_txn=ascii_id(128, "txn")
    )
    gold_parcel, tea_parcel = paid.shipment_ids
    assert {item.sku_id for item in shop.shipment(gold_parcel).items} == {GOLD}
    # A payment for the already-paid checkout: recorded, then refunded in full.
    late = shop.pay(
        checkout_id=receipt.checkout_id, payment_id=ascii_id(128, "late"), amount=MAX_AMOUNT,
        provider_txn=ascii_id(128, "ltx"),
    )
    assert late.outcome == "refunded"

    clock.advance(timedelta(hours=1))
    shop.dispatch(shipment_id=gold_parcel, carrier=TEXT["carrier"], tracking_number=ascii_id(128, "SF"))
    shop.update_tracking(
        shipment_id=gold_parcel, occurred_at=clock.now(), status=TEXT["status"], location=TEXT["location"]
    )
    shop.update_tracking(shipment_id=gold_parcel, occurred_at=clock.now() + timedelta(minutes=1), status="签收")
    # The earliest and latest scan times, at the offsets furthest from UTC.
    shop.update_tracking(shipment_id=gold_parcel, occurred_at=EARLIEST, status="最早")
    shop.update_tracking(shipment_id=gold_parcel, occurred_at=LATEST, status="最晚")
    shop.deliver(shipment_id=gold_parcel)

    shop.dispatch(shipment_id=tea_parcel, carrier=TEXT["tea carrier"], tracking_number=ascii_id(128, "YT"))
    shop.report_delivery_failure(shipment_id=tea_parcel, reason=TEXT["failure"])
    shop.refund_only(
        order_id=order_id, refund_id=ascii_id(128, "rf"), lines={2: TEA_UNITS}, reason=TEXT["refund reason"],
        shipment_id=tea_parcel,
    )

    clock.advance(timedelta(hours=1))
    rejected = shop.request_return(
        order_id=order_id, customer_id=CUSTOMER, lines={1: 2}, reason=TEXT["return reason"],
        request_id=ascii_id(128, "rq1"),
    )
    shop.reject_return(order_id=order_id, return_id=rejected, reason=TEXT["reject reason"])
    return_id = shop.request_return(
        order_id=order_id, customer_id=CUSTOMER, lines={1: RETURNED}, reason=TEXT["second return reason"],
        request_id=ascii_id(128, "rq2"),
    )
    shop.approve_return(order_id=order_id, return_id=return_id)
    return_parcel = shop.ship_return(
        order_id=order_id, return_id=return_id, carrier=TEXT["return carrier"], tracking_number=ascii_id(128, "RT")
    )
    shop.receive_return(order_id=order_id, return_id=return_id, sellable={1: RETURNED - 1}, damaged={1: 1})
    shop.refund_return(order_id=order_id, return_id=return_id, refund_id=ascii_id(128, "rr"))
    return History(order_id, gold_parcel, tea_parcel, return_parcel, payment_id)


def test_the_largest_values_and_every_kind_of_text_reach_every_read_model(
    shop: Shop, clock: ManualClock, read_models: ReadModels, store_url: str
) -> None:
    history = extreme_history(shop, clock)

    Projector(shop.store, read_models).catch_up()
    for name in ("order_status", "stock", "reconciliation"):
        report = rebuild(shop.store, read_models, name, check=True)
        assert report.differences == (), name

    order = OrderStatusQueries(read_models.engine, read_models.tables["order_status"]).order(history.order_id)
    assert order is not None
    texts_come_back(order, history)
    amounts_come_back(order)

    levels = StockQueries(read_models.engine, read_models.tables["stock"]).levels(clock.now())
    gold = next(level for level in levels if level.sku_id == GOLD)
    assert (gold.safety_stock, gold.reorder_quantity) == (MAX_STOCK_QUANTITY, MAX_STOCK_QUANTITY)
    assert gold.on_hand == MAX_STOCK_QUANTITY - MAX_QUANTITY + RETURNED - 1
    assert shop.catalogue.sku(GOLD).title == TEXT["gold title"]
    assert shop.catalogue.warehouse(W2).region == TEXT["region W2"]

    # The ledger of a late payment of MAX_AMOUNT (refunded at once), a payment of
    # MAX_AMOUNT and two refunds holds together.
    ledger = ReconciliationQueries(read_models.engine, read_models.tables["reconciliation"])
    assert ledger.discrepancies() == []


def texts_come_back(order: OrderDetail, history: History) -> None:
    assert order.shipping_address == TEXT["address"]
    assert order.customer_id == CUSTOMER
    assert order.payment_id == history.payment_id
    assert [line.title for line in order.lines] == [TEXT["gold title"], TEXT["tea title"]]
    parcels = {shipment.shipment_id: shipment for shipment in order.shipments}
    gold = parcels[history.gold_parcel]
    assert gold.carrier == TEXT["carrier"]
    assert gold.tracking_number == ascii_id(128, "SF")
    assert [(scan.status, scan.location) for scan in gold.tracking] == [
        ("最早", ""),
        (TEXT["status"], TEXT["location"]),
        ("签收", ""),
        ("最晚", ""),
    ]
    assert (gold.tracking[0].occurred_at, gold.tracking[-1].occurred_at) == (EARLIEST, LATEST)
    tea = parcels[history.tea_parcel]
    assert (tea.carrier, tea.reason) == (TEXT["tea carrier"], TEXT["failure"])
    assert parcels[history.return_parcel].carrier == TEXT["return carrier"]
    timeline = "\n".join(entry.description for entry in order.timeline)
    for reason in ("refund reason", "return reason", "reject reason", "second return reason", "failure"):
        assert TEXT[reason] in timeline, reason


def amounts_come_back(order: OrderDetail) -> None:
    gold, tea = order.lines
    assert (gold.unit_price, gold.quantity, gold.gross) == (MAX_UNIT_PRICE, MAX_QUANTITY, MAX_AMOUNT)
    assert order.gross == GROSS
    assert order.merchant_coupon_discount == COUPON_OFF
    assert order.freight == FREIGHT_FEE
    assert (order.payable, order.paid) == (MAX_AMOUNT, MAX_AMOUNT)
    assert (order.late_payments, order.late_refunded) == (MAX_AMOUNT, MAX_AMOUNT)
    assert tea.refunded_units == TEA_UNITS
    assert gold.refunded_units == RETURNED
    assert next(s for s in order.shipments if s.carrier == TEXT["carrier"]).weight_g == MAX_WEIGHT_G * MAX_QUANTITY


def test_what_the_read_models_could_not_hold_is_refused_before_anything_is_stored(shop: Shop) -> None:
    """Before the bounds, these were accepted and stopped a projection for good."""
    shop.register_merchant(merchant_id=MERCHANT, name="m")
    shop.register_warehouse(warehouse_id=W1, region="r", priority=1)
    shop.register_sku(
        sku_id=TEA, spu_id="P", merchant_id=MERCHANT, category_path=("c",), brand_id="b",
        unit_price=TEA_PRICE, weight_g=TEA_WEIGHT, title="tea",
    )
    shop.receive_stock(sku_id=TEA, warehouse_id=W1, quantity=10, reference="po")
    head = shop.store.recorder.max_notification_id()
    for address in ("1 Tea Rd\x00", "1 Tea Rd\ud800", "1 Tea\x1bRd"):
        with pytest.raises(InvalidCommand):
            shop.checkout(customer_id=CUSTOMER, items=[{"sku_id": TEA, "quantity": 1}], shipping_address=address)
    assert shop.store.recorder.max_notification_id() == head
    receipt = shop.checkout(customer_id=CUSTOMER, items=[{"sku_id": TEA, "quantity": 1}], shipping_address="a")
    shop.pay(checkout_id=receipt.checkout_id, payment_id="p1", amount=receipt.payable, provider_txn="t1")
    head = shop.store.recorder.max_notification_id()
    with pytest.raises(InvalidCommand):
        shop.pay(checkout_id=receipt.checkout_id, payment_id="p2", amount=2**63, provider_txn="t2")
    assert shop.store.recorder.max_notification_id() == head
