"""After-sales through the public Shop API (spec §3, §5.1, §5.3).

These are business rules, so they run on the in-memory store (``pytest --all-stores``
runs them on SQLite and PostgreSQL too); the shop is conftest's worked-example ``shop``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from shop_fixtures import campaign, place_worked_example, stored_events

from ecomcore import (
    PLATFORM,
    CouponState,
    CouponTerms,
    IllegalTransition,
    InvalidCommand,
    NotFound,
    OrderState,
    RefundKind,
    RefundRefused,
    RefundStatus,
    ReturnRefused,
    ReturnStatus,
    ShipmentState,
)

DAY = timedelta(days=1)

pytestmark = pytest.mark.stores("memory")


def worked_example(shop):
    """The worked example of ``place_worked_example``, paid."""
    receipt, merchant_coupon, platform_coupon = place_worked_example(shop)
    assert receipt.payable == 17882
    shop.pay(checkout_id=receipt.checkout_id, payment_id="pay-1", amount=17882, provider_txn="txn-1")
    m1, m2 = receipt.order_ids
    return m1, m2, merchant_coupon, platform_coupon


def ship_everything(shop, order_id):
    for n, shipment_id in enumerate(shop.order(order_id).shipments):
        if shop.shipment(shipment_id).state is ShipmentState.PLANNED:
            shop.dispatch(shipment_id=shipment_id, carrier="SF", tracking_number=f"SF{order_id.hex[:6]}{n}")
            shop.deliver(shipment_id=shipment_id)


def test_worked_example_lines_carry_their_shares(shop):
    """The worked example records each line's promotion, merchant and platform shares and net exactly."""
    m1, m2, _, _ = worked_example(shop)
    o1, o2 = shop.order(m1), shop.order(m2)
    assert [
        (l.sku.sku_id, l.promotion_discount, l.merchant_coupon_discount, l.platform_coupon_discount, l.net)
        for l in (*o1.lines, *o2.lines)
    ] == [
        ("A1", 444, 665, 487, 4384),
        ("B1", 334, 501, 367, 3298),
        ("C1", 222, 334, 244, 2200),
        ("E1", 0, 0, 600, 5400),
    ]
    assert (o1.freight, o1.paid, o2.freight, o2.paid) == (1400, 11282, 1200, 6600)


def test_refunding_every_unit_before_dispatch_returns_exactly_what_was_paid(shop):
    """Unit-by-unit refunds before dispatch sum to each line's net; the last one of an order adds freight."""
    m1, m2, merchant_coupon, platform_coupon = worked_example(shop)
    amounts = []
    for order_id, units in ((m1, [(1, 2), (2, 1), (3, 3)]), (m2, [(1, 2)])):
        for line_no, quantity in units:
            for k in range(quantity):
                receipt = shop.refund_only(
                    order_id=order_id, refund_id=f"re-{order_id.hex[:6]}-{line_no}-{k}", lines={line_no: 1},
                    reason="changed mind",
                )
                amounts.append((line_no, receipt.amount - receipt.freight, receipt.freight))
    assert amounts == [
        (1, 2192, 0), (1, 2192, 0), (2, 3298, 0), (3, 733, 0), (3, 733, 0), (3, 734, 1400),
        (1, 2700, 0), (1, 2700, 1200),
    ]
    assert sum(a + f for _, a, f in amounts) == 17882
    for order_id in (m1, m2):
        order = shop.order(order_id)
        assert (order.state, order.refund_status, order.refunded) == (OrderState.CLOSED, RefundStatus.FULL, order.paid)
        assert {shop.shipment(s).state for s in order.shipments} == {ShipmentState.CANCELLED}
    # Every reservation is released: the stock is as it was before the checkout.
    assert [shop.available(s) for s in ("A1", "B1", "C1", "E1")] == [10, 5, 10, 10]
    assert shop.coupon(merchant_coupon).state is CouponState.AVAILABLE
    assert shop.coupon(platform_coupon).state is CouponState.AVAILABLE


def test_refund_before_dispatch_shrinks_the_parcel_and_releases_its_reservation(shop):
    """Refunding one unit not yet dispatched shrinks its parcel and makes the unit available again."""
    m1, _, _, _ = worked_example(shop)
    c1_parcel = next(s for s in shop.order(m1).shipments if shop.shipment(s).warehouse_id == "w2")
    assert shop.available("C1") == 7
    receipt = shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="out of stock")
    assert (receipt.amount, receipt.freight, receipt.lines) == (733, 0, {3: (1, 733)})
    assert (receipt.order_state, receipt.refund_status) == (OrderState.PAID, RefundStatus.PARTIAL)
    parcel = shop.shipment(c1_parcel)
    assert parcel.state is ShipmentState.PLANNED
    assert [(i.sku_id, i.quantity, i.weight_g) for i in parcel.items] == [("C1", 2, 200)]
    assert shop.available("C1") == 8
    # Dispatching the shrunk parcel takes only the units still ordered.
    shop.dispatch(shipment_id=c1_parcel, carrier="SF", tracking_number="SF1")
    assert shop.stock_item("C1", "w2").on_hand == 8


def test_refunds_after_delivery_and_a_return_with_damaged_units(shop, clock):
    """A missing unit refunded after delivery and a part-damaged return sum to the goods; freight is kept."""
    m1, m2, merchant_coupon, platform_coupon = worked_example(shop)
    shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="out of stock")  # 733, before dispatch
    ship_everything(shop, m1)
    clock.advance(DAY)
    missing = shop.refund_only(order_id=m1, refund_id="re-2", lines={1: 1}, reason="one unit missing")
    assert (missing.amount, missing.order_state) == (2192, OrderState.DELIVERED)

    return_id = shop.request_return(order_id=m1, customer_id="alice", lines={1: 1, 2: 1, 3: 2}, reason="wrong size")
    shop.approve_return(order_id=m1, return_id=return_id)
    back = shop.ship_return(order_id=m1, return_id=return_id, carrier="SF", tracking_number="RET-1")
    assert shop.shipment(back).is_return and shop.shipment(back).state is ShipmentState.DISPATCHED
    a1_on_hand, b1_on_hand = shop.stock_item("A1", "w1").on_hand, shop.stock_item("B1", "w1").on_hand
    shop.receive_return(order_id=m1, return_id=return_id, sellable={1: 1, 3: 1}, damaged={2: 1, 3: 1})
    assert shop.shipment(back).state is ShipmentState.RECEIVED
    # The parcel goes back to the first warehouse of the returned goods (w1): C1 is stocked there now.
    assert shop.stock_item("A1", "w1").on_hand == a1_on_hand + 1
    assert shop.stock_item("B1", "w1").on_hand == b1_on_hand  # damaged: written off, never sellable
    assert shop.stock_item("C1", "w1").on_hand == 1
    refund = shop.refund_return(order_id=m1, return_id=return_id, refund_id="re-3")
    # A1: 4384 − 2192; B1: 3298; C1: floor(2200·3/3) − floor(2200·1/3) = 1467.
    assert refund.lines == {1: (1, 2192), 2: (1, 3298), 3: (2, 1467)}
    assert (refund.kind, refund.amount, refund.freight) == (RefundKind.RETURN, 6957, 0)
    order = shop.order(m1)
    assert order.state is OrderState.CLOSED and order.refunded == 733 + 2192 + 6957 == order.goods_net
    assert order.paid - order.refunded == order.freight == 1400  # dispatched: freight is not refunded
    assert shop.return_case(m1, return_id).status is ReturnStatus.REFUNDED
    # The merchant coupon covered only m1: it comes back.  The platform coupon waits for m2.
    assert refund.returned_coupon_ids == (merchant_coupon,)
    assert shop.coupon(merchant_coupon).state is CouponState.AVAILABLE
    assert shop.coupon(platform_coupon).state is CouponState.REDEEMED
    whole = shop.refund_only(order_id=m2, refund_id="re-4", lines={1: 2}, reason="changed mind")
    assert (whole.amount, whole.freight, whole.returned_coupon_ids) == (6600, 1200, (platform_coupon,))
    assert shop.coupon(platform_coupon).state is CouponState.AVAILABLE
    history = [(r.refund_id, r.kind, r.amount) for r in shop.refunds(m1)]
    assert history == [
        ("re-1", RefundKind.REFUND_ONLY, 733), ("re-2", RefundKind.REFUND_ONLY, 2192), ("re-3", RefundKind.RETURN, 6957)
    ]


def test_refund_summary_is_computed_from_history(shop):
    """refundable() shows per line what was paid, refunded and can still be refunded, and where the units are."""
    m1, _, _, _ = worked_example(shop)
    shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="out of stock")
    w1_parcel = next(s for s in shop.order(m1).shipments if shop.shipment(s).warehouse_id == "w1")
    shop.dispatch(shipment_id=w1_parcel, carrier="SF", tracking_number="SF1")
    summary = shop.refundable(m1)
    assert (summary.paid, summary.refunded, summary.refundable_amount) == (11282, 733, 9882 - 733)
    assert [
        (l.line_no, l.net, l.refunded_units, l.refunded_amount, l.refundable_now, l.not_dispatched, l.on_the_way)
        for l in summary.lines
    ] == [(1, 4384, 0, 0, 0, 0, 2), (2, 3298, 0, 0, 0, 0, 1), (3, 2200, 1, 733, 2, 2, 0)]


def test_same_refund_id_twice_is_a_no_op(shop):
    """Issuing a refund id again returns the same refund and stores nothing; other units under it are refused."""
    m1, _, _, _ = worked_example(shop)
    first = shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="out of stock")
    before = stored_events(shop)
    again = shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="out of stock")
    assert again == first and stored_events(shop) == before
    with pytest.raises(RefundRefused):
        shop.refund_only(order_id=m1, refund_id="re-1", lines={1: 1}, reason="other")
    assert stored_events(shop) == before and shop.order(m1).refunded == 733


def test_refusals_are_typed_and_store_nothing(shop):
    """Refund above refundable, undelivered units, unpaid order, bad returns, approving twice: typed, nothing stored."""
    m1, _, _, _ = worked_example(shop)
    unpaid = shop.checkout(customer_id="bob", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    parcels = {shop.shipment(s).warehouse_id: s for s in shop.order(m1).shipments}
    shop.dispatch(shipment_id=parcels["w1"], carrier="SF", tracking_number="SF1")  # A1, B1 on their way
    shop.dispatch(shipment_id=parcels["w2"], carrier="SF", tracking_number="SF2")
    shop.deliver(shipment_id=parcels["w2"])  # C1 delivered
    return_id = shop.request_return(order_id=m1, customer_id="alice", lines={3: 1}, reason="wrong size")
    shop.approve_return(order_id=m1, return_id=return_id)
    attempts = [
        # 3 of C1 delivered, 1 of them is being returned: 2 can be refunded.
        (RefundRefused, lambda: shop.refund_only(order_id=m1, refund_id="r1", lines={3: 3}, reason="all")),
        (RefundRefused, lambda: shop.refund_only(order_id=m1, refund_id="r2", lines={1: 1}, reason="on its way")),
        (RefundRefused, lambda: shop.refund_only(order_id=unpaid.order_ids[0], refund_id="r3", lines={1: 1}, reason="x")),
        (RefundRefused, lambda: shop.refund_only(order_id=m1, refund_id="r4", lines={9: 1}, reason="no such line")),
        (ReturnRefused, lambda: shop.request_return(order_id=m1, customer_id="alice", lines={1: 1}, reason="x")),
        (ReturnRefused, lambda: shop.request_return(order_id=m1, customer_id="alice", lines={3: 3}, reason="x")),
        (NotFound, lambda: shop.request_return(order_id=m1, customer_id="mallory", lines={3: 1}, reason="x")),
        (IllegalTransition, lambda: shop.approve_return(order_id=m1, return_id=return_id)),
        (RefundRefused, lambda: shop.refund_return(order_id=m1, return_id=return_id, refund_id="r5")),
        (InvalidCommand, lambda: shop.refund_only(order_id=m1, refund_id="r6", lines={3: 0}, reason="zero")),
        (InvalidCommand, lambda: shop.refund_only(order_id=m1, refund_id="r7", lines={}, reason="nothing")),
    ]
    before = stored_events(shop)
    for error, attempt in attempts:
        with pytest.raises(error) as caught:
            attempt()
        assert caught.value.code == error.code
    assert stored_events(shop) == before
    assert shop.order(m1).refunded == 0


def test_units_on_their_way_cannot_be_refunded_until_delivered_or_lost(shop):
    """Refund only of a dispatched unit is refused; once its parcel is lost it is refunded and the order delivers."""
    m1, _, _, _ = worked_example(shop)
    parcels = {shop.shipment(s).warehouse_id: s for s in shop.order(m1).shipments}
    for n, parcel in enumerate(parcels.values()):
        shop.dispatch(shipment_id=parcel, carrier="SF", tracking_number=f"SF{n}")
    before = stored_events(shop)
    with pytest.raises(RefundRefused) as caught:
        shop.refund_only(order_id=m1, refund_id="re-1", lines={3: 1}, reason="too slow")
    assert "on the way" in caught.value.message and stored_events(shop) == before
    shop.deliver(shipment_id=parcels["w1"])
    shop.report_delivery_failure(shipment_id=parcels["w2"], reason="lost by carrier")
    assert shop.order(m1).state is OrderState.SHIPPED
    lost = shop.refund_only(order_id=m1, refund_id="re-2", lines={3: 3}, reason="parcel lost")
    assert (lost.amount, lost.freight, lost.order_state) == (2200, 0, OrderState.DELIVERED)


def test_return_request_is_refused_after_the_after_sales_window(shop, clock):
    """A return can be requested while the after-sales window since delivery is open, not after."""
    m1, _, _, _ = worked_example(shop)
    ship_everything(shop, m1)
    clock.advance(7 * DAY - timedelta(seconds=1))
    early = shop.request_return(order_id=m1, customer_id="alice", lines={1: 1}, reason="wrong size")
    clock.advance(timedelta(seconds=1))
    with pytest.raises(ReturnRefused):
        shop.request_return(order_id=m1, customer_id="alice", lines={2: 1}, reason="too late")
    # An open return keeps the order from completing automatically.
    assert shop.complete_orders(clock.now() + DAY) == []
    shop.reject_return(order_id=m1, return_id=early, reason="worn")
    assert shop.complete_orders(clock.now() + DAY) == [m1]


def test_rejected_return_frees_its_units_and_requests_are_idempotent(shop):
    """A rejected return can be asked again; the same request id names the same return."""
    m1, _, _, _ = worked_example(shop)
    ship_everything(shop, m1)
    first = shop.request_return(order_id=m1, customer_id="alice", lines={1: 2}, reason="r", request_id="rq-1")
    assert shop.request_return(order_id=m1, customer_id="alice", lines={1: 2}, reason="r", request_id="rq-1") == first
    with pytest.raises(ReturnRefused):
        shop.request_return(order_id=m1, customer_id="alice", lines={1: 1}, reason="again")
    shop.reject_return(order_id=m1, return_id=first, reason="no proof")
    assert shop.return_case(m1, first).status is ReturnStatus.REJECTED
    second = shop.request_return(order_id=m1, customer_id="alice", lines={1: 1}, reason="again")
    assert second != first and shop.return_case(m1, second).status is ReturnStatus.REQUESTED


def test_receiving_a_return_must_mark_every_unit(shop):
    """Every returned unit is marked sellable or damaged; a wrong count is refused and stores nothing."""
    m1, _, _, _ = worked_example(shop)
    ship_everything(shop, m1)
    return_id = shop.request_return(order_id=m1, customer_id="alice", lines={1: 2}, reason="r")
    shop.approve_return(order_id=m1, return_id=return_id)
    shop.ship_return(order_id=m1, return_id=return_id, carrier="SF", tracking_number="RET-1")
    assert shop.ship_return(order_id=m1, return_id=return_id, carrier="SF", tracking_number="RET-1")  # no-op
    before = stored_events(shop)
    with pytest.raises(ReturnRefused):
        shop.receive_return(order_id=m1, return_id=return_id, sellable={1: 1})
    assert stored_events(shop) == before
    shop.receive_return(order_id=m1, return_id=return_id, sellable={1: 1}, damaged={1: 1})
    with pytest.raises(IllegalTransition):
        shop.receive_return(order_id=m1, return_id=return_id, sellable={1: 1}, damaged={1: 1})


def test_coupon_is_not_returned_when_it_has_expired(shop, clock):
    """A fully refunded order gives back its coupon only while the coupon is still valid; otherwise it expires."""
    m1, m2, merchant_coupon, platform_coupon = worked_example(shop)
    clock.advance(8 * DAY)  # the coupons were valid for 7 days from issue
    shop.refund_only(order_id=m2, refund_id="re-1", lines={1: 2}, reason="r")
    receipt = shop.refund_only(order_id=m1, refund_id="re-2", lines={1: 2, 2: 1, 3: 3}, reason="r")
    assert receipt.returned_coupon_ids == ()
    assert shop.coupon(merchant_coupon).state is CouponState.EXPIRED
    assert shop.coupon(platform_coupon).state is CouponState.EXPIRED


def test_partial_refund_never_returns_a_coupon(shop):
    """Refunding all but one unit of an order leaves its coupons redeemed."""
    m1, m2, merchant_coupon, platform_coupon = worked_example(shop)
    shop.refund_only(order_id=m2, refund_id="re-1", lines={1: 2}, reason="r")
    receipt = shop.refund_only(order_id=m1, refund_id="re-2", lines={1: 2, 2: 1, 3: 2}, reason="r")
    assert receipt.refund_status is RefundStatus.PARTIAL and receipt.returned_coupon_ids == ()
    assert shop.coupon(merchant_coupon).state is CouponState.REDEEMED
    assert shop.coupon(platform_coupon).state is CouponState.REDEEMED


def test_late_payment_appears_in_refund_history(shop, clock):
    """The automatic refund of a late payment is in the order's refund history with its reason."""
    receipt = shop.checkout(customer_id="bob", items=[{"sku_id": "A1", "quantity": 1}], shipping_address="x")
    clock.advance(25 * timedelta(hours=1))
    shop.pay(checkout_id=receipt.checkout_id, payment_id="pay-late", amount=receipt.payable, provider_txn="t")
    (record,) = shop.refunds(receipt.order_ids[0])
    assert (record.kind, record.reason, record.amount) == (RefundKind.LATE_PAYMENT, "late_payment", receipt.payable)
    assert shop.order(receipt.order_ids[0]).refund_status is RefundStatus.NONE


def test_recommended_coupons_are_the_best_usable_combination(shop, clock):
    """recommend_coupons picks the customer's usable coupons that save most; checkout with them costs that."""
    threshold = shop.issue_coupon(
        campaign_id=campaign(shop, CouponTerms(kind="threshold", threshold=10000, amount_off=1500, funding="m1")),
        customer_id="alice",
    )
    small_cash = campaign(shop, CouponTerms(kind="cash", amount_off=500, funding="m1"), days=3)
    shop.issue_coupon(campaign_id=small_cash, customer_id="alice")
    platform_campaign = campaign(shop, CouponTerms(kind="percentage", percent_off_bp=1000, cap=2000, funding=PLATFORM))
    platform = shop.issue_coupon(campaign_id=platform_campaign, customer_id="alice")
    shop.issue_coupon(campaign_id=platform_campaign, customer_id="bob")  # not alice's
    cart = [{"sku_id": "A1", "quantity": 2}, {"sku_id": "B1", "quantity": 1}, {"sku_id": "E1", "quantity": 2}]
    before = stored_events(shop)
    best = shop.recommend_coupons("alice", cart)
    assert stored_events(shop) == before
    assert (best.merchant_coupons, best.platform_coupon) == ({"m1": str(threshold)}, str(platform))
    receipt = shop.checkout(
        customer_id="alice", items=cart, merchant_coupon_ids=[threshold], platform_coupon_id=platform,
        shipping_address="x",
    )
    assert receipt.payable == best.payable
    # Those two are locked now: only the small cash coupon is left to recommend.
    again = shop.recommend_coupons("alice", cart)
    assert again.platform_coupon is None and again.discount == 500 and list(again.merchant_coupons) == ["m1"]
    assert shop.recommend_coupons("carol", cart).coupon_ids == ()


def test_refund_of_a_lost_parcel_can_name_the_parcel(shop):
    """With a line split over a lost parcel and a planned one, naming the lost parcel refunds its units;
    without a name the units that have not left go first."""
    shop.receive_stock(sku_id="D1", warehouse_id="w1", quantity=5, reference="po-2")
    receipt = shop.checkout(customer_id="dan", items=[{"sku_id": "D1", "quantity": 3}], shipping_address="x")
    shop.pay(checkout_id=receipt.checkout_id, payment_id="pay-d", amount=receipt.payable, provider_txn="t")
    (order_id,) = receipt.order_ids
    first, second = shop.order(order_id).shipments  # 9 kg units: 2 + 1
    shop.dispatch(shipment_id=first, carrier="SF", tracking_number="SF-D1")
    shop.report_delivery_failure(shipment_id=first, reason="lost")
    lost = shop.refund_only(order_id=order_id, refund_id="re-lost", lines={1: 2}, reason="lost", shipment_id=first)
    assert lost.amount == 30000 and shop.shipment(second).state is ShipmentState.PLANNED
    with pytest.raises(RefundRefused):
        shop.refund_only(order_id=order_id, refund_id="re-more", lines={1: 1}, reason="lost", shipment_id=first)
    shop.dispatch(shipment_id=second, carrier="SF", tracking_number="SF-D2")
    shop.deliver(shipment_id=second)
    assert shop.order(order_id).state is OrderState.DELIVERED  # the lost parcel is settled by its refund
