"""What the day did: the tallies the script keeps while it runs, the summary they become,
and the summary as a person reads it.

The tallies are only what the shop cannot answer afterwards (refused checkouts, money
taken on time, what the sweep reported…); everything else the summary reads back from
the shop, over the checkouts and parcels of this run only, since the store may hold
earlier runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ecomcore.application.receipts import CheckoutReceipt, PaymentReceipt, RefundReceipt
from ecomcore.application.shop import Shop
from ecomcore.domain.checkout import CancelReason
from ecomcore.domain.money import format_amount
from ecomcore.domain.order import OrderState
from ecomcore.domain.shipment import ShipmentState
from ecomcore.simulation.catalogue import LISTINGS, stocked_items


class LowStockAlert(BaseModel):
    """A stock item at or below its safety stock: a reorder suggestion (采购建议)."""

    model_config = ConfigDict(frozen=True)
    sku_id: str
    warehouse_id: str
    available: int
    safety_stock: int


class DaySummary(BaseModel):
    """What the day did, over the checkouts, orders and shipments of this run only."""

    model_config = ConfigDict(frozen=True)
    trading_day: date
    currency: str
    orders_by_state: dict[OrderState, int]
    checkouts_placed: int
    checkouts_refused_for_stock: int
    #: Cancelled by the customer before paying.
    checkouts_cancelled: int
    #: Cancelled for payment timeout (by the sweeper, or by a late payment's arrival).
    checkouts_expired: int
    #: The sum of on-time payments.
    money_taken: int
    late_payments_refunded: int
    late_payments_refunded_amount: int
    coupons_issued: int
    stock_left: dict[str, int]
    low_stock_alerts: tuple[LowStockAlert, ...]
    #: Units the evening stocktake found missing against what orders had reserved.
    stocktake_shortage: int
    shipments_dispatched: int
    shipments_delivered: int
    shipments_failed: int
    #: What the final sweep did, a week later.
    orders_completed_by_sweep: int
    coupons_expired_by_sweep: int
    #: After-sales (售后): refunds only (before dispatch, lost parcel, missing item).
    refunds_only: int
    refunds_only_amount: int
    returns_requested: int
    returns_rejected: int
    returns_refunded: int
    returns_refunded_amount: int
    #: Returned units put back on the shelf, and returned units found damaged.
    units_restocked: int
    units_damaged: int
    #: Coupons that became available again because their orders were refunded in full.
    coupons_returned: int

    def render(self, *, orders: int, seed: int, sections: Sequence[str] | None = None) -> str:
        """The day in a few lines a person can read: the headline figures, then ``sections``
        (by default the shop's own ``state_and_stock_sections``; the read side passes its own,
        from its read models)."""
        if sections is None:
            sections = state_and_stock_sections(self.orders_by_state, self.stock_left, self.low_stock_alerts)
        return "\n".join([
            f"Trading day {self.trading_day:%Y-%m-%d} (seed {seed}, {orders} checkout attempts)",
            "",
            *self._figures(),
            *sections,
        ])

    def _figures(self) -> list[str]:
        def money(amount: int) -> str:
            return format_amount(amount, self.currency)

        figures = {
            "checkouts placed": self.checkouts_placed,
            "refused for stock": self.checkouts_refused_for_stock,
            "cancelled by customers": self.checkouts_cancelled,
            "expired unpaid": self.checkouts_expired,
            "money taken": money(self.money_taken),
            "late payments refunded": f"{self.late_payments_refunded} ({money(self.late_payments_refunded_amount)})",
            "coupons issued": f"{self.coupons_issued} ({self.coupons_expired_by_sweep} expired unused)",
            "shipments": f"{self.shipments_dispatched} dispatched, {self.shipments_delivered} delivered, "
            f"{self.shipments_failed} failed",
            "stocktake shortage": f"{self.stocktake_shortage} unit(s) fewer than reserved",
            "refunds only": f"{self.refunds_only} ({money(self.refunds_only_amount)})",
            "returns": f"{self.returns_requested} requested, {self.returns_rejected} rejected, "
            f"{self.returns_refunded} refunded ({money(self.returns_refunded_amount)})",
            "returned units": f"{self.units_restocked} restocked, {self.units_damaged} damaged",
            "coupons returned": self.coupons_returned,
        }
        return [f"  {label:<26}{value}" for label, value in figures.items()]


def state_and_stock_sections(
    orders_by_state: Mapping[OrderState, int],
    stock_left: Mapping[str, int],
    low_stock_alerts: Iterable[LowStockAlert],
    *,
    orders_title: str = "Orders by state",
) -> list[str]:
    """The summary's sections on orders by state, stock left and reorder suggestions, each
    after a blank line; whoever counts them (the shop, or a read model) prints them alike."""
    alerts = [
        f"  {alert.sku_id} in {alert.warehouse_id}: available {alert.available}, safety stock {alert.safety_stock}"
        for alert in low_stock_alerts
    ]
    return [
        "",
        orders_title,
        *count_rows((state.value, count) for state, count in orders_by_state.items()),
        "",
        "Stock left (available, all warehouses)",
        *count_rows(stock_left.items()),
        "",
        "Low-stock alerts (reorder suggestions)",
        *(alerts or ["  none"]),
    ]


def count_rows(rows: Iterable[tuple[str, int]]) -> list[str]:
    """One indented line per name, its count right-aligned."""
    return [f"  {name:<24}{count:>5}" for name, count in rows]


@dataclass
class DayTally:
    """The day's running record: the one place the script counts what happened."""

    #: Every checkout placed this run, in the order placed (its number is its position).
    checkouts: list[CheckoutReceipt] = field(default_factory=list)
    refused_for_stock: int = 0
    coupons_issued: int = 0
    #: On-time payments only; late ones go straight back and are listed apart.
    money_taken: int = 0
    paid_parcels: list[UUID] = field(default_factory=list)
    late_payments: list[PaymentReceipt] = field(default_factory=list)
    stocktake_shortage: int = 0
    refunds_only: list[RefundReceipt] = field(default_factory=list)
    returns_requested: int = 0
    returns_rejected: int = 0
    return_refunds: list[RefundReceipt] = field(default_factory=list)
    units_restocked: int = 0
    units_damaged: int = 0
    #: What the final sweep reported, by kind of work.
    swept: dict[str, int] = field(default_factory=dict)


#: Shipment states of parcels that never left the warehouse.
_NOT_LEFT = (ShipmentState.PLANNED, ShipmentState.CANCELLED)


def summarise(shop: Shop, tally: DayTally, *, trading_day: date, now: datetime) -> DaySummary:
    """The summary of a finished day: ``tally`` completed by what ``shop`` holds at ``now``."""
    checkouts = [shop.checkout_of(receipt.checkout_id) for receipt in tally.checkouts]
    orders = Counter(shop.order(oid).state for receipt in tally.checkouts for oid in receipt.order_ids)
    parcels = Counter(shop.shipment(sid).state for sid in tally.paid_parcels)
    refunds = (*tally.refunds_only, *tally.return_refunds)
    return DaySummary(
        trading_day=trading_day,
        currency=shop.settings.currency,
        orders_by_state={state: orders[state] for state in OrderState if orders[state]},
        checkouts_placed=len(tally.checkouts),
        checkouts_refused_for_stock=tally.refused_for_stock,
        checkouts_cancelled=sum(c.cancelled_reason is CancelReason.CUSTOMER for c in checkouts),
        checkouts_expired=sum(c.cancelled_reason is CancelReason.TIMEOUT for c in checkouts),
        money_taken=tally.money_taken,
        late_payments_refunded=len(tally.late_payments),
        late_payments_refunded_amount=sum(p.amount for p in tally.late_payments),
        coupons_issued=tally.coupons_issued,
        stock_left={listing.sku.sku_id: shop.available(listing.sku.sku_id) for listing in LISTINGS},
        low_stock_alerts=_low_stock_alerts(shop, now),
        stocktake_shortage=tally.stocktake_shortage,
        shipments_dispatched=sum(n for state, n in parcels.items() if state not in _NOT_LEFT),
        shipments_delivered=parcels[ShipmentState.DELIVERED],
        shipments_failed=parcels[ShipmentState.FAILED],
        orders_completed_by_sweep=tally.swept.get("completed_orders", 0),
        coupons_expired_by_sweep=tally.swept.get("expired_coupons", 0),
        refunds_only=len(tally.refunds_only),
        refunds_only_amount=sum(r.amount for r in tally.refunds_only),
        returns_requested=tally.returns_requested,
        returns_rejected=tally.returns_rejected,
        returns_refunded=len(tally.return_refunds),
        returns_refunded_amount=sum(r.amount for r in tally.return_refunds),
        units_restocked=tally.units_restocked,
        units_damaged=tally.units_damaged,
        coupons_returned=sum(len(r.returned_coupon_ids) for r in refunds),
    )


def _low_stock_alerts(shop: Shop, now: datetime) -> tuple[LowStockAlert, ...]:
    return tuple(
        LowStockAlert(
            sku_id=item.sku_id, warehouse_id=item.warehouse_id,
            available=item.available(now), safety_stock=item.safety_stock,
        )
        for item in stocked_items(shop)
        if item.low_stock_flagged
    )
