"""Payment: paying a checkout confirms its stock, plans its shipments and redeems its
coupons; money that comes too late is recorded and refunded."""

from __future__ import annotations

from ecomcore.application.commands import PayCheckout
from ecomcore.application.handlers.checkout import cancel
from ecomcore.application.handlers.stock import allocated_stock
from ecomcore.application.receipts import PaymentReceipt
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.checkout import CancelReason, Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.order import Order
from ecomcore.domain.parcels import PlannedParcel
from ecomcore.domain.shipment import Shipment, plan_parcels, shipment_id_for


def pay_checkout(uow: UnitOfWork, c: PayCheckout) -> PaymentReceipt:
    """Record the payment of a whole checkout; the same payment id again is a no-op."""
    now = uow.now
    checkout = uow.get(Checkout, c.checkout_id, "checkout")
    orders = [uow.get(Order, oid) for oid in checkout.order_ids]
    if checkout.recorded_payment(c.payment_id, c.amount):
        return PaymentReceipt.of(checkout, orders, c.payment_id)
    if not checkout.takes_payment_on_time(now):
        return _take_late_payment(uow, checkout, orders, c)
    checkout.mark_paid(c.payment_id, c.amount, c.provider_txn, now)
    for order in orders:
        order.pay(c.payment_id, order.payable, c.provider_txn, now)
        _plan_shipments(uow, order)
    for coupon_id in checkout.coupon_ids:
        uow.get(Coupon, coupon_id).redeem(checkout.id, now)
    # Stock last: a busy stock item is locked from its read to the commit (PostgreSQL).
    for order in orders:
        for stock, _ in allocated_stock(uow, order.lines):
            stock.confirm(order.id, now)
    return PaymentReceipt.of(checkout, orders, c.payment_id)


def _take_late_payment(uow: UnitOfWork, checkout: Checkout, orders: list[Order], c: PayCheckout) -> PaymentReceipt:
    """Money that came after cancellation or the deadline is real: record it, refund it."""
    now = uow.now
    if checkout.is_open:
        cancel(uow, checkout, CancelReason.TIMEOUT, now)
    checkout.record_late_payment(c.payment_id, c.amount, c.provider_txn, now)
    shares = checkout.late_payment_shares(c.amount, [order.payable for order in orders])
    for order, share in zip(orders, shares, strict=True):
        if share:
            order.record_late_payment(c.payment_id, share, c.provider_txn, now)
    return PaymentReceipt.of(checkout, orders, c.payment_id)


def _plan_shipments(uow: UnitOfWork, order: Order) -> None:
    """Second split: delivery notes per warehouse, parcels by weight (发货拆单)."""
    assert order.checkout_id is not None
    parcels = plan_parcels(order.lines, uow.settings.parcel_weight_limit_g)
    planned = []
    for number, parcel in enumerate(parcels, start=1):
        shipment_id = shipment_id_for(order.id, number)
        uow.add(
            Shipment.plan(
                shipment_id,
                uow.now,
                order_id=order.id,
                checkout_id=order.checkout_id,
                merchant_id=order.merchant_id,
                warehouse_id=parcel.warehouse_id,
                items=parcel.items,
            )
        )
        lines = {item.line_no: item.quantity for item in parcel.items}
        planned.append(PlannedParcel(shipment_id=shipment_id, lines=lines))
    order.plan_shipments(tuple(planned), uow.now)
