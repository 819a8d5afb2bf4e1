"""After-sales (售后): refunds without a return (仅退款), and returns from request to refund.

Refunds are priced by the order from its own history (a ``RefundPlan``) and then issued;
the same refund id again answers the receipt of the refund it named.
"""

from __future__ import annotations

from uuid import UUID, uuid4, uuid5

from ecomcore.application.commands import (
    ApproveReturn,
    ReceiveReturn,
    RefundOnly,
    RefundReturn,
    RejectReturn,
    RequestReturn,
    ShipReturn,
)
from ecomcore.application.handlers.checkout import customer_order
from ecomcore.application.handlers.stock import stock_item
from ecomcore.application.receipts import RefundReceipt
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.after_sales import RefundKind, RefundPlan
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.coupon import Coupon
from ecomcore.domain.order import Order
from ecomcore.domain.shipment import ParcelItem, Shipment, return_shipment_id_for
from ecomcore.domain.stock_item import ReleaseReason, StockItem, stock_item_id


def refund_only(uow: UnitOfWork, c: RefundOnly) -> RefundReceipt:
    """仅退款: refund units whose goods do not come back, priced from the order's history.

    Units not dispatched yet leave their planned parcels (which shrink or are
    cancelled) and their stock reservations are released; units of lost parcels
    and delivered units the customer keeps are refunded as they are.
    """
    order = uow.get(Order, c.order_id, "order")
    earlier = order.earlier_refund(c.refund_id, RefundKind.REFUND_ONLY, c.lines)
    if earlier is not None:
        return RefundReceipt.of(order, earlier)
    plan = order.plan_refund_only(c.lines, c.shipment_id)
    _withdraw_from_parcels(uow, order, plan)
    return _issue_refund(uow, order, c.refund_id, plan, c.reason)


def request_return(uow: UnitOfWork, c: RequestReturn) -> UUID:
    """退货: the customer asks to send delivered units back; returns the return id."""
    return_id = uuid5(c.order_id, f"return-request:{c.request_id}") if c.request_id else uuid4()
    order = customer_order(uow, c.order_id, c.customer_id)
    order.request_return(return_id, c.lines, c.reason, uow.settings.after_sales_window, uow.now)
    return return_id


def approve_return(uow: UnitOfWork, c: ApproveReturn) -> None:
    uow.get(Order, c.order_id, "order").approve_return(c.return_id, uow.now)


def reject_return(uow: UnitOfWork, c: RejectReturn) -> None:
    uow.get(Order, c.order_id, "order").reject_return(c.return_id, c.reason, uow.now)


def ship_return(uow: UnitOfWork, c: ShipReturn) -> UUID:
    """The customer sends an approved return with a carrier; returns the return shipment's id.

    The parcel goes back to the warehouse that sent the returned goods (the first
    one, if they came from several); sending the same waybill again is a no-op.
    """
    order = uow.get(Order, c.order_id, "order")
    case = order.return_case(c.return_id)
    if case.shipment_id is not None:
        sent = uow.get(Shipment, case.shipment_id)
        if (sent.carrier, sent.tracking_number) == (c.carrier, c.tracking_number):
            return sent.id
    shipment_id = return_shipment_id_for(order.id, case.return_id)
    order.return_shipped(case.return_id, shipment_id, uow.now)
    assert order.checkout_id is not None
    uow.add(
        Shipment.send_return(
            shipment_id,
            uow.now,
            order_id=order.id,
            checkout_id=order.checkout_id,
            merchant_id=order.merchant_id,
            warehouse_id=uow.get(Shipment, order.return_parcel(case.return_id)).warehouse_id,
            return_id=case.return_id,
            items=tuple(
                ParcelItem(
                    line_no=line_no,
                    sku_id=order.line(line_no).sku.sku_id,
                    quantity=units,
                    weight_g=units * order.line(line_no).sku.weight_g,
                )
                for line_no, units in case.lines.items()
            ),
            carrier=c.carrier,
            tracking_number=c.tracking_number,
        )
    )
    return shipment_id


def receive_return(uow: UnitOfWork, c: ReceiveReturn) -> None:
    """Check a return in: sellable units go back into stock, damaged ones are written off."""
    now = uow.now
    order = uow.get(Order, c.order_id, "order")
    case = order.return_case(c.return_id)
    order.return_received(case.return_id, c.sellable, c.damaged, now)
    assert case.shipment_id is not None
    shipment = uow.get(Shipment, case.shipment_id)
    received = order.returns[case.return_id]
    shipment.check_in_return(received.sellable, received.damaged, now)
    for line_no in case.lines:
        stock = stock_item(uow, order.line(line_no).sku.sku_id, shipment.warehouse_id)
        if sellable := c.sellable.get(line_no, 0):
            stock.restock_return(order.id, sellable, now)
        if damaged := c.damaged.get(line_no, 0):
            stock.write_off_return(order.id, damaged, f"damaged in return {case.return_id}", now)


def refund_return(uow: UnitOfWork, c: RefundReturn) -> RefundReceipt:
    """Refund a received return; the same refund id again is a no-op."""
    order = uow.get(Order, c.order_id, "order")
    case = order.return_case(c.return_id)
    earlier = order.earlier_refund(c.refund_id, RefundKind.RETURN, case.lines, case.return_id)
    if earlier is not None:
        return RefundReceipt.of(order, earlier)
    plan = order.plan_return_refund(case.return_id)
    return _issue_refund(uow, order, c.refund_id, plan, case.reason)


def _withdraw_from_parcels(uow: UnitOfWork, order: Order, plan: RefundPlan) -> None:
    """Refunded units that have not left: shrink their parcels, release their reservations."""
    for shipment_id, units in plan.withdrawn.items():
        shipment = uow.get(Shipment, shipment_id)
        shipment.withdraw(units, "refunded before dispatch", uow.now)
        for line_no, n in units.items():
            stock = uow.get(StockItem, stock_item_id(order.line(line_no).sku.sku_id, shipment.warehouse_id))
            stock.release(order.id, ReleaseReason.REFUNDED, uow.now, quantity=n)


def _issue_refund(uow: UnitOfWork, order: Order, refund_id: str, plan: RefundPlan, reason: str) -> RefundReceipt:
    """Issue the planned refund; a fully refunded order gives back its still-valid coupons."""
    now = uow.now
    record = order.issue_refund(refund_id, plan, reason, now)
    returned: list[UUID] = []
    if order.is_fully_refunded:
        assert order.checkout_id is not None
        for coupon_id in uow.get(Checkout, order.checkout_id).coupon_ids:
            if uow.get(Coupon, coupon_id).order_refunded(order.id, now):
                returned.append(coupon_id)
    return RefundReceipt.of(order, record, tuple(returned))
