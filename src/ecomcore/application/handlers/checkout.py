"""Checkout: placing one (an Order per merchant, stock reserved, coupons locked, all or
nothing), cancelling one before payment, and the customer confirming an order received."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from ecomcore.application.commands import CancelCheckout, ConfirmReceipt, PlaceCheckout
from ecomcore.application.handlers.cart import SplitCart
from ecomcore.application.handlers.catalogue import known_sku
from ecomcore.application.handlers.coupons import usable_coupon
from ecomcore.application.handlers.stock import allocated_stock
from ecomcore.application.receipts import CheckoutReceipt
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.allocation import Allocation, allocate
from ecomcore.domain.catalogue import CatalogueReader, Warehouse
from ecomcore.domain.checkout import CancelReason, Checkout, checkout_id_for_request
from ecomcore.domain.coupon import Coupon, CouponState
from ecomcore.domain.errors import NotFound
from ecomcore.domain.order import Order, OrderLine, OrderState, order_id_for
from ecomcore.domain.pricing import CheckoutPrice, CouponSlots, OrderPrice, price_checkout
from ecomcore.domain.stock_item import StockItem, stock_item_id
from ecomcore.domain.values import require_amount_within


def place_checkout(uow: UnitOfWork, c: PlaceCheckout) -> CheckoutReceipt:
    """Split the cart by merchant, reserve all stock and lock the coupons, all or nothing."""
    checkout_id = checkout_id_for_request(c.client_request_id) if c.client_request_id else uuid4()
    cart = SplitCart.of(uow.catalogue, c.items)
    warehouses = uow.catalogue.warehouses()
    existing = uow.find(Checkout, checkout_id)
    if existing is not None:
        return CheckoutReceipt.of(existing)
    now = uow.now
    deadline = now + uow.settings.payment_timeout
    coupons = _coupon_slots(uow, c, set(cart.by_merchant))
    price = price_checkout(cart.priced(uow.catalogue, coupons, now), coupons.platform)
    # One payment settles the checkout, and no amount may exceed MAX_AMOUNT; this also
    # bounds freight, which the inputs alone do not (see ecomcore.domain.values).
    require_amount_within("the checkout's payable", price.payable)
    # Stock last: on PostgreSQL a busy stock item is locked from here to the commit
    # (ecomcore.infrastructure.locks), so the pricing above stays outside that window.
    allocations = _allocate(uow, cart, warehouses)
    order_ids = tuple(order_id_for(checkout_id, merchant_id) for merchant_id in cart.by_merchant)
    for order_id, order_price in zip(order_ids, price.orders, strict=True):
        lines = _order_lines(uow.catalogue, order_price, cart, allocations)
        for stock, allocation in allocated_stock(uow, lines):
            stock.reserve(order_id, allocation.quantity, deadline, now)
        merchant_coupon = coupons.merchant.get(order_price.merchant_id)
        uow.add(
            Order.place(
                order_id,
                now,
                checkout_id=checkout_id,
                customer_id=c.customer_id,
                merchant_id=order_price.merchant_id,
                currency=uow.settings.currency,
                lines=lines,
                promotion_id=order_price.promotion_id,
                merchant_coupon_id=UUID(merchant_coupon.coupon_id) if merchant_coupon else None,
                platform_coupon_id=c.platform_coupon_id if price.platform_coupon_discount else None,
                freight=order_price.freight,
                payable=order_price.payable,
                payment_deadline=deadline,
                shipping_address=c.shipping_address,
            )
        )
    coupon_ids = (*c.merchant_coupon_ids, *([c.platform_coupon_id] if c.platform_coupon_id else []))
    _lock_coupons(uow, coupon_ids, c.customer_id, checkout_id, order_ids, price)
    checkout = uow.add(
        Checkout.place(
            checkout_id,
            now,
            customer_id=c.customer_id,
            order_ids=order_ids,
            payable=price.payable,
            payment_deadline=deadline,
            client_request_id=c.client_request_id,
            coupon_ids=coupon_ids,
        )
    )
    return CheckoutReceipt.of(checkout)


def cancel_checkout(uow: UnitOfWork, c: CancelCheckout) -> None:
    """Cancel a whole checkout before payment: stock released, coupons unlocked."""
    cancel(uow, uow.get(Checkout, c.checkout_id, "checkout"), c.reason, uow.now)


def cancel(uow: UnitOfWork, checkout: Checkout, reason: CancelReason, now: datetime) -> None:
    """Cancel the checkout and all its orders: stock released, coupons unlocked."""
    if not checkout.cancel(reason, now):
        return  # cancelled already
    release_reason = reason.release_reason
    orders = [uow.get(Order, oid) for oid in checkout.order_ids]
    for order in orders:
        order.cancel(reason, now)
        for stock, _ in allocated_stock(uow, order.lines):
            stock.release(order.id, release_reason, now)
    for coupon_id in checkout.coupon_ids:
        coupon = uow.get(Coupon, coupon_id)
        if coupon.state is CouponState.LOCKED and coupon.checkout_id == checkout.id:
            coupon.unlock(release_reason, now)


def confirm_receipt(uow: UnitOfWork, c: ConfirmReceipt) -> None:
    """The customer confirms the goods arrived (确认收货): the order completes."""
    order = customer_order(uow, c.order_id, c.customer_id)
    if order.state is not OrderState.COMPLETED:
        order.confirm_receipt(uow.now)


def customer_order(uow: UnitOfWork, order_id: UUID, customer_id: str) -> Order:
    """The order, if it is this customer's; ``NotFound`` otherwise, as if it did not exist."""
    order = uow.get(Order, order_id, "order")
    if order.customer_id != customer_id:
        raise NotFound(f"customer {customer_id} has no order {order_id}")
    return order


def _allocate(uow: UnitOfWork, cart: SplitCart, warehouses: list[Warehouse]) -> dict[str, tuple[Allocation, ...]]:
    """What every warehouse has available of the cart's SKUs, allocated by the domain's rule."""
    available: dict[tuple[str, str], int] = {}
    for skus in cart.by_merchant.values():
        for sku in skus:
            for warehouse in warehouses:
                item = uow.find(StockItem, stock_item_id(sku.sku_id, warehouse.warehouse_id))
                available[sku.sku_id, warehouse.warehouse_id] = item.available(uow.now) if item else 0
    return allocate(cart.merchant_orders(), warehouses, available)


def _coupon_slots(uow: UnitOfWork, c: PlaceCheckout, merchants: set[str]) -> CouponSlots:
    """The chosen coupons, each checked usable by this customer now, in their slots."""
    merchant_coupons = [usable_coupon(uow, coupon_id, c.customer_id) for coupon_id in c.merchant_coupon_ids]
    platform_coupon = (
        usable_coupon(uow, c.platform_coupon_id, c.customer_id) if c.platform_coupon_id is not None else None
    )
    return CouponSlots.fill(merchant_coupons, platform_coupon, merchants)


def _order_lines(
    catalogue: CatalogueReader, order_price: OrderPrice, cart: SplitCart, allocations: dict[str, tuple[Allocation, ...]]
) -> tuple[OrderLine, ...]:
    return tuple(
        OrderLine(
            line_no=n,
            sku=known_sku(catalogue, line.key),
            quantity=cart.quantities[line.key],
            gross=line.gross,
            promotion_discount=line.promotion_discount,
            merchant_coupon_discount=line.merchant_coupon_discount,
            platform_coupon_discount=line.platform_coupon_discount,
            net=line.net,
            allocations=allocations[line.key],
        )
        for n, line in enumerate(order_price.lines, start=1)
    )


def _lock_coupons(
    uow: UnitOfWork,
    coupon_ids: tuple[UUID, ...],
    customer_id: str,
    checkout_id: UUID,
    order_ids: tuple[UUID, ...],
    price: CheckoutPrice,
) -> None:
    """Lock each coupon for the orders it covers: a platform coupon all, a merchant's its own."""
    for coupon_id in coupon_ids:
        coupon = uow.get(Coupon, coupon_id)
        assert coupon.terms is not None
        locked_for = tuple(
            oid
            for oid, op in zip(order_ids, price.orders, strict=True)
            if coupon.terms.is_platform or op.merchant_id == coupon.terms.funding
        )
        coupon.lock(customer_id, checkout_id, locked_for, uow.now)
