"""Receipts: what a Shop command answers, read from the aggregates it changed.

A command run again with the same idempotency key (a client request id, a payment id, a
refund id) answers the same receipt, built the same way from what was recorded.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ecomcore.domain.after_sales import RefundKind, RefundRecord
from ecomcore.domain.checkout import Checkout
from ecomcore.domain.order import Order, OrderState, RefundStatus
from ecomcore.domain.values import Value


class Receipt(Value):
    """What a command did, for its caller: frozen, built only by the Shop."""


class CheckoutReceipt(Receipt):
    checkout_id: UUID
    order_ids: tuple[UUID, ...]
    payable: int
    payment_deadline: datetime

    @classmethod
    def of(cls, checkout: Checkout) -> CheckoutReceipt:
        assert checkout.payment_deadline is not None
        return cls(
            checkout_id=checkout.id,
            order_ids=checkout.order_ids,
            payable=checkout.payable,
            payment_deadline=checkout.payment_deadline,
        )


class PaymentReceipt(Receipt):
    checkout_id: UUID
    payment_id: str
    amount: int
    #: "paid", or "refunded" when the money came too late and went straight back.
    outcome: str
    order_ids: tuple[UUID, ...]
    shipment_ids: tuple[UUID, ...] = ()

    @classmethod
    def of(cls, checkout: Checkout, orders: list[Order], payment_id: str) -> PaymentReceipt:
        """The payment ``payment_id`` of ``checkout``: the one that paid it, or a late one."""
        on_time = checkout.payment_id == payment_id
        return cls(
            checkout_id=checkout.id,
            payment_id=payment_id,
            amount=checkout.paid_amount if on_time else checkout.late_payments[payment_id],
            outcome="paid" if on_time else "refunded",
            order_ids=checkout.order_ids,
            shipment_ids=tuple(sid for order in orders for sid in order.shipments) if on_time else (),
        )


class RefundReceipt(Receipt):
    order_id: UUID
    refund_id: str
    kind: RefundKind
    amount: int
    freight: int
    #: line_no → (units, amount)
    lines: dict[int, tuple[int, int]]
    order_state: OrderState
    refund_status: RefundStatus
    #: Coupons that became available again because this refund completed their orders.
    returned_coupon_ids: tuple[UUID, ...] = ()

    @classmethod
    def of(cls, order: Order, record: RefundRecord, returned: tuple[UUID, ...] = ()) -> RefundReceipt:
        return cls(
            order_id=order.id,
            refund_id=record.refund_id,
            kind=record.kind,
            amount=record.amount,
            freight=record.freight,
            lines=record.lines,
            order_state=order.state,
            refund_status=order.refund_status,
            returned_coupon_ids=returned,
        )
