"""Trading hours: customers claim coupons, check out multi-merchant carts, then pay (at
once, a few minutes later, or too late), cancel or walk away, while the warehouses
dispatch in waves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from ecomcore.application.receipts import CheckoutReceipt, PaymentReceipt
from ecomcore.domain.checkout import CancelReason
from ecomcore.domain.coupon import IssueChannel
from ecomcore.domain.errors import CouponNotUsable, InsufficientStock
from ecomcore.domain.pricing import PLATFORM
from ecomcore.simulation.after_sales import change_of_mind
from ecomcore.simulation.catalogue import ADDRESSES
from ecomcore.simulation.customers import (
    Fate,
    HeldCoupon,
    PlannedAction,
    coupons_worth_trying,
    fill_cart,
)
from ecomcore.simulation.day import Day
from ecomcore.simulation.opening import hand_out_coupon
from ecomcore.simulation.shipping import dispatch_wave

#: ``progress(done, total)`` after each checkout attempt.
Progress = Callable[[int, int], None]


def trade(day: Day, progress: Progress) -> None:
    """Twelve hours from nine: the day's checkout attempts, spread unevenly."""
    day.wait_until(0, 9)
    step = timedelta(hours=12) / day.orders
    wave_every = max(2, day.orders // 12)
    for n in range(1, day.orders + 1):
        day.clock.advance(step * day.rng.uniform(0.5, 1.5))
        customers_act(day)
        _a_customer_checks_out(day)
        if n % wave_every == 0:
            dispatch_wave(day, n / day.orders)
        progress(n, day.orders)
    customers_act(day, until=day.clock.now() + timedelta(hours=1))


def customers_act(day: Day, until: datetime | None = None) -> None:
    """Do what customers planned to do by now (or by ``until``, moving the clock)."""
    until = until or day.clock.now()
    for action in day.customers.due_by(until):
        day.clock.set(max(action.due, day.clock.now()))
        if action.fate is Fate.PAY_SOON:
            pay(day, action.receipt)
        else:
            day.shop.cancel(checkout_id=action.receipt.checkout_id, reason=CancelReason.CUSTOMER)
            # The coupons are unlocked: the customer keeps them for another cart.
            day.customers.wallets[action.customer_id].extend(action.coupons)
    day.clock.set(max(until, day.clock.now()))


def pay(day: Day, receipt: CheckoutReceipt) -> PaymentReceipt:
    payment_id = day.ids.next("pay")
    provider_txn = f"alipay-{payment_id}"
    paid = day.shop.pay(
        checkout_id=receipt.checkout_id, payment_id=payment_id, amount=receipt.payable, provider_txn=provider_txn,
    )
    day.provider.took(provider_txn, paid.amount, day.clock.now())
    if paid.outcome == "refunded":
        # Too late: the shop refunds it at once, and the provider returns the transaction in full.
        day.provider.refunded(provider_txn, paid.amount, day.clock.now())
        day.tally.late_payments.append(paid)
        return paid
    day.tally.money_taken += paid.amount
    day.tally.paid_parcels.extend(paid.shipment_ids)
    day.paid_orders.extend(paid.order_ids)
    for shipment_id in paid.shipment_ids:
        day.parcels.warehouse_of[shipment_id] = day.shop.shipment(shipment_id).warehouse_id
        day.parcels.awaiting_truck.append(shipment_id)
    change_of_mind(day, paid)
    return paid


def payment_deadlines_pass(day: Day) -> None:
    """One customer pays after the deadline, before the sweeper runs; then the sweeper
    expires the rest; then another late payment arrives for an expired checkout."""
    abandoned = day.customers.abandoned
    if not abandoned:
        return
    last_deadline = max(receipt.payment_deadline for receipt in abandoned)
    day.clock.set(max(day.clock.now(), last_deadline + timedelta(minutes=30)))
    pay(day, abandoned[0])
    day.shop.expire_overdue_orders(day.clock.now())
    if len(abandoned) >= 3:
        day.clock.advance(timedelta(hours=2))
        pay(day, abandoned[-1])


def _a_customer_checks_out(day: Day) -> None:
    customer_id = day.rng.choice(day.customers.ids)
    _browse_for_coupons(day, customer_id)
    cart = fill_cart(day.rng)
    receipt, coupons = _checkout(day, customer_id, cart)
    if receipt is None:
        return
    day.tally.checkouts.append(receipt)
    number = len(day.tally.checkouts)
    fate = day.customers.fate_of(number, day.rng)
    if fate is Fate.PAY_NOW:
        pay(day, receipt)
    elif fate is Fate.ABANDON:
        day.customers.abandoned.append(receipt)
    else:
        delay = day.minutes(2, 20) if fate is Fate.PAY_SOON else day.minutes(3, 30)
        day.customers.plan(PlannedAction(day.clock.now() + delay, number, fate, receipt, customer_id, coupons))


def _browse_for_coupons(day: Day, customer_id: str) -> None:
    if day.rng.random() < 0.35:
        hand_out_coupon(day, PLATFORM, customer_id, IssueChannel.CLAIM)
    if day.rng.random() < 0.15:
        hand_out_coupon(day, day.rng.choice(("m-bookshop", "m-homegoods")), customer_id, IssueChannel.CLAIM)


def _checkout(
    day: Day, customer_id: str, cart: dict[str, int]
) -> tuple[CheckoutReceipt | None, tuple[HeldCoupon, ...]]:
    """The cart with the coupons the storefront picked, else without coupons; ``None`` if out of stock."""
    wallet = day.customers.wallets[customer_id]
    merchant_coupons, platform_coupon = coupons_worth_trying(wallet, cart)
    request_id = day.ids.next("checkout")
    attempts: list[tuple[tuple[HeldCoupon, ...], HeldCoupon | None]] = [
        (merchant_coupons, platform_coupon),
        ((), None),
    ]
    for merchant_choice, platform_choice in attempts:
        try:
            receipt = day.shop.checkout(
                customer_id=customer_id,
                items=[{"sku_id": sku_id, "quantity": quantity} for sku_id, quantity in cart.items()],
                merchant_coupon_ids=tuple(c.coupon_id for c in merchant_choice),
                platform_coupon_id=platform_choice.coupon_id if platform_choice else None,
                shipping_address=ADDRESSES[int(customer_id[-4:]) % len(ADDRESSES)],
                client_request_id=request_id,
            )
        except InsufficientStock:
            day.tally.refused_for_stock += 1
            return None, ()
        except CouponNotUsable:
            # The storefront's guess was wrong (a promotion took the cart below a
            # threshold): the customer checks out without coupons.
            continue
        used = (*merchant_choice, *([platform_choice] if platform_choice else []))
        for coupon in used:
            wallet.remove(coupon)
        return receipt, used
    raise AssertionError("a checkout without coupons cannot be refused for its coupons")
