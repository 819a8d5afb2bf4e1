"""After-sales (售后): refunds without a return, returns asked for, shipped back,
checked in and refunded, and a week later the window that closes it all."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from ecomcore.application.receipts import PaymentReceipt
from ecomcore.domain.after_sales import LineRefundable
from ecomcore.domain.order import Order, OrderState
from ecomcore.domain.shipment import ShipmentState
from ecomcore.simulation.day import Day


def change_of_mind(day: Day, paid: PaymentReceipt) -> None:
    """Right after paying, before the truck: the first customer who used coupons wants
    the whole checkout refunded (the coupons come back, the freight too); now and then
    a merchant is out of an item and refunds one unit."""
    shop = day.shop
    if not day.after_sales.refunded_a_checkout and shop.checkout_of(paid.checkout_id).coupon_ids:
        day.after_sales.refunded_a_checkout = True
        for order in (shop.order(oid) for oid in paid.order_ids):
            _refund(day, order.id, {line.line_no: line.quantity for line in order.lines}, "changed my mind")
    elif day.rng.random() < 0.08:
        order = shop.order(day.rng.choice(paid.order_ids))
        _refund(day, order.id, {day.rng.choice(order.lines).line_no: 1}, "the merchant is out of this item")
    else:
        return
    # Refunded units leave their parcels; a parcel left empty is cancelled and stays off the truck.
    for shipment_id in paid.shipment_ids:
        if shop.shipment(shipment_id).state is ShipmentState.CANCELLED:
            day.parcels.awaiting_truck.remove(shipment_id)


def refund_lost_parcel(day: Day, shipment_id: UUID) -> None:
    parcel = day.shop.shipment(shipment_id)
    assert parcel.order_id is not None
    lines = {item.line_no: item.quantity for item in parcel.items}
    _refund(day, parcel.order_id, lines, "parcel lost by the carrier", shipment_id=shipment_id)


def customers_ask_for_after_sales(day: Day) -> None:
    """Day 2 at noon: one customer reports a missing item; some ask to return goods,
    one of them without a good reason (rejected); the others send parcels back."""
    day.wait_until(2, 12)
    paid = (day.shop.order(oid) for oid in day.paid_orders)
    # Only orders with delivered units still kept: a line may have been refunded in full
    # before it shipped (a merchant out of the item).
    delivered = [order for order in paid if order.state is OrderState.DELIVERED and _kept_lines(order)]
    if not delivered:
        return
    day.rng.shuffle(delivered)
    missing = delivered.pop()
    _refund(day, missing.id, {_kept_lines(missing)[0].line_no: 1}, "one item missing from the parcel")
    for n, order in enumerate(delivered[: max(2, len(delivered) // 8)]):
        _ask_to_return(day, order, rejected=n == 0 and len(delivered) > 2)


def _ask_to_return(day: Day, order: Order, *, rejected: bool) -> None:
    """The customer sends back some delivered units, unless the merchant rejects the request."""
    shop = day.shop
    line = day.rng.choice(_kept_lines(order))
    units = day.rng.randint(1, line.delivered)
    return_id = shop.request_return(
        order_id=order.id, customer_id=order.customer_id, lines={line.line_no: units},
        reason=day.rng.choice(("wrong size", "not as described", "arrived damaged")),
    )
    day.tally.returns_requested += 1
    if rejected:
        shop.reject_return(order_id=order.id, return_id=return_id, reason="used, outside the policy")
        day.tally.returns_rejected += 1
        return
    shop.approve_return(order_id=order.id, return_id=return_id)
    shop.ship_return(
        order_id=order.id, return_id=return_id, carrier="SF", tracking_number=day.ids.return_waybill()
    )
    day.after_sales.open_returns.append((order.id, return_id))


def _kept_lines(order: Order) -> list[LineRefundable]:
    """The order's lines with delivered units the customer still has (not refunded, not on
    their way back)."""
    return [line for line in order.refundable().lines if line.delivered]


def returns_arrive(day: Day) -> None:
    """Day 4: the warehouses check the returned parcels in, unit by unit, and the
    refunds are issued; the first parcel holds a damaged unit."""
    day.wait_until(4, 10)
    shop = day.shop
    for n, (order_id, return_id) in enumerate(day.after_sales.open_returns):
        case = shop.return_case(order_id, return_id)
        sellable, damaged = {}, {}
        for line_no, units in case.lines.items():
            broken = 1 if n == 0 else sum(day.rng.random() < 0.15 for _ in range(units))
            sellable[line_no], damaged[line_no] = units - broken, broken
        shop.receive_return(order_id=order_id, return_id=return_id, sellable=sellable, damaged=damaged)
        day.tally.units_restocked += sum(sellable.values())
        day.tally.units_damaged += sum(damaged.values())
        refund = shop.refund_return(order_id=order_id, return_id=return_id, refund_id=day.ids.next("refund"))
        day.provider.refunded(refund.refund_id, refund.amount, day.clock.now())
        day.tally.return_refunds.append(refund)
    day.after_sales.open_returns.clear()


def after_sales_window_passes(day: Day) -> None:
    """A week after the first deliveries the sweeper completes those orders; the
    parcels delivered two days later are still inside their window."""
    window_closes = day.parcels.first_deliveries_at + day.shop.settings.after_sales_window
    day.clock.set(max(day.clock.now(), window_closes + timedelta(hours=2)))
    day.tally.swept = day.shop.sweep(day.clock.now())


def _refund(
    day: Day, order_id: UUID, lines: dict[int, int], reason: str, *, shipment_id: UUID | None = None
) -> None:
    """仅退款: refund ``lines`` without the goods coming back (from ``shipment_id`` if given)."""
    receipt = day.shop.refund_only(
        order_id=order_id, refund_id=day.ids.next("refund"), lines=lines, reason=reason, shipment_id=shipment_id
    )
    day.provider.refunded(receipt.refund_id, receipt.amount, day.clock.now())
    day.tally.refunds_only.append(receipt)
