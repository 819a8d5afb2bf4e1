"""The reconciliation projection: money events become balanced ledger entries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
)

from ecomcore.domain.after_sales import RefundKind
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.order import Order
from ecomcore_projections.base import (
    Projection,
    ProjectionInconsistency,
    UtcDateTime,
    handles,
)
from ecomcore_projections.reconciliation.accounts import (
    FUNDED_DISCOUNTS_MEMO,
    LATE_PAYMENT_SUSPENSE,
    PLATFORM_SUBSIDY,
    PROVIDER_CASH,
    Entry,
    EntryKind,
    MoneyEventKind,
    customer_account,
    merchant_freight,
    merchant_funded_discounts,
    merchant_goods,
    money_column,
    share_refund,
    utc_day,
)
from ecomcore_projections.rows import Batch, Row


class ReconciliationProjection(Projection):
    """The money ledger and the facts it is checked against."""

    name = "reconciliation"
    schema_version = 2  # 2: 64-bit quantities and versions

    @classmethod
    def define_tables(cls, metadata: MetaData, table_name: Callable[[str], str]) -> dict[str, Table]:
        orders = Table(
            table_name("reconciliation_orders"),
            metadata,
            Column("order_id", String(36), primary_key=True),
            Column("checkout_id", String(36), nullable=False),
            Column("customer_id", String(64), nullable=False),
            Column("merchant_id", String(64), nullable=False),
            Column("currency", String(3), nullable=False),
            Column("state", String(16), nullable=False),  # placed | paid | cancelled
            Column("placed_at", UtcDateTime, nullable=False),
            money_column("payable"),
            money_column("goods_net"),
            money_column("freight"),
            money_column("platform_share"),
            money_column("merchant_funded"),
            money_column("paid"),
            Column("paid_at", UtcDateTime, nullable=True),
            money_column("refunded"),  # refunds of goods and freight (not late payments)
            money_column("freight_refunded"),
            money_column("late_received"),
            money_column("late_refunded"),
            Column("cancelled_at", UtcDateTime, nullable=True),
            Column("last_version", BigInteger, nullable=False),
        )
        lines = Table(
            table_name("reconciliation_order_lines"),
            metadata,
            Column("order_id", String(36), primary_key=True),
            Column("line_no", Integer, primary_key=True),
            Column("sku_id", String(64), nullable=False),
            Column("quantity", BigInteger, nullable=False),
            money_column("gross"),
            money_column("promotion_discount"),
            money_column("merchant_coupon_discount"),
            money_column("platform_coupon_discount"),
            money_column("net"),
            Column("refunded_units", BigInteger, nullable=False),
            money_column("refunded_amount"),
            money_column("subsidy_reversed"),
            money_column("funded_reversed"),
        )
        money_events = Table(
            table_name("reconciliation_money_events"),
            metadata,
            Column("position", BigInteger, primary_key=True, autoincrement=False),
            Column("at", UtcDateTime, nullable=False),
            Column("day", Date, nullable=False),  # UTC
            Column("order_id", String(36), nullable=False, index=True),
            Column("merchant_id", String(64), nullable=False),
            Column("kind", String(16), nullable=False),  # MoneyEventKind
            money_column("amount"),
            Column("payment_id", String(128), nullable=True),
            # A provider txn or a refund id (a late-payment refund's is "late:<payment id>:<order id>").
            Column("reference", String(200), nullable=False),
        )
        ledger = Table(
            table_name("reconciliation_ledger"),
            metadata,
            Column("entry_id", String(32), primary_key=True),  # f"{position}:{n}"
            Column("position", BigInteger, nullable=False, index=True),
            Column("n", Integer, nullable=False),
            Column("at", UtcDateTime, nullable=False),
            Column("day", Date, nullable=False, index=True),  # UTC
            Column("order_id", String(36), nullable=False, index=True),
            Column("merchant_id", String(64), nullable=False),
            Column("line_no", Integer, nullable=True),
            Column("kind", String(32), nullable=False),  # EntryKind
            Column("debit_account", String(128), nullable=False),
            Column("credit_account", String(128), nullable=False),
            money_column("amount"),
            Column("reference", String(200), nullable=True),
        )
        return {
            "reconciliation_orders": orders,
            "reconciliation_order_lines": lines,
            "reconciliation_money_events": money_events,
            "reconciliation_ledger": ledger,
        }

    def prepare(self, batch: Batch, events: Sequence[tuple[int, DomainEvent]]) -> None:
        order_ids = [str(e.originator_id) for _, e in events]
        batch.load("reconciliation_orders", ((order_id,) for order_id in order_ids))
        batch.load_all("reconciliation_order_lines", order_ids)

    def apply(self, batch: Batch, event: DomainEvent, position: int) -> None:
        if isinstance(event, Order.Placed):
            super().apply(batch, event, position)
            return
        order = self._order(batch, event)
        super().apply(batch, event, position)
        order["last_version"] = event.originator_version

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _order(batch: Batch, event: DomainEvent) -> Row:
        row = batch.rows("reconciliation_orders").get((str(event.originator_id),))
        if row is None:
            raise ProjectionInconsistency(f"order {event.originator_id} was never placed")
        if event.originator_version <= row["last_version"]:
            raise ProjectionInconsistency(
                f"order {event.originator_id} v{event.originator_version} arrived after v{row['last_version']}"
            )
        return row

    @staticmethod
    def _lines(batch: Batch, order_id: str) -> dict[int, Row]:
        return {row["line_no"]: row for row in batch.rows("reconciliation_order_lines").children(order_id)}

    @staticmethod
    def _record_money(
        batch: Batch,
        order: Row,
        event: DomainEvent,
        position: int,
        kind: MoneyEventKind,
        amount: int,
        reference: str,
        payment_id: str | None = None,
    ) -> None:
        batch.rows("reconciliation_money_events").append(
            {
                "position": position,
                "at": event.timestamp,
                "day": utc_day(event.timestamp),
                "order_id": order["order_id"],
                "merchant_id": order["merchant_id"],
                "kind": kind.value,
                "amount": amount,
                "payment_id": payment_id,
                "reference": reference,
            }
        )

    @staticmethod
    def _post(batch: Batch, order: Row, event: DomainEvent, position: int, entries: Iterable[Entry]) -> None:
        ledger = batch.rows("reconciliation_ledger")
        n = 0
        for entry in entries:
            if entry.amount < 0:
                raise ProjectionInconsistency(
                    f"{entry.kind} of {entry.amount} on order {order['order_id']}: amounts are never negative"
                )
            if entry.amount == 0:
                continue
            n += 1
            ledger.append(
                {
                    "entry_id": f"{position}:{n}",
                    "position": position,
                    "n": n,
                    "at": event.timestamp,
                    "day": utc_day(event.timestamp),
                    "order_id": order["order_id"],
                    "merchant_id": order["merchant_id"],
                    "line_no": entry.line_no,
                    "kind": entry.kind.value,
                    "debit_account": entry.debit,
                    "credit_account": entry.credit,
                    "amount": entry.amount,
                    "reference": entry.reference,
                }
            )

    # -- one method per event ----------------------------------------------------------

    @handles(Order.Placed)
    def _placed(self, batch: Batch, e: Order.Placed, position: int) -> None:
        order_id = str(e.originator_id)
        if e.originator_version != 1:
            raise ProjectionInconsistency(f"order {order_id} placed at version {e.originator_version}")
        batch.rows("reconciliation_orders").insert(
            {
                "order_id": order_id,
                "checkout_id": str(e.checkout_id),
                "customer_id": e.customer_id,
                "merchant_id": e.merchant_id,
                "currency": e.currency,
                "state": "placed",
                "placed_at": e.timestamp,
                "payable": e.payable,
                "goods_net": sum(line.net for line in e.lines),
                "freight": e.freight,
                "platform_share": sum(line.platform_coupon_discount for line in e.lines),
                "merchant_funded": sum(line.promotion_discount + line.merchant_coupon_discount for line in e.lines),
                "paid": 0,
                "paid_at": None,
                "refunded": 0,
                "freight_refunded": 0,
                "late_received": 0,
                "late_refunded": 0,
                "cancelled_at": None,
                "last_version": e.originator_version,
            }
        )
        lines = batch.rows("reconciliation_order_lines")
        for line in e.lines:
            lines.insert(
                {
                    "order_id": order_id,
                    "line_no": line.line_no,
                    "sku_id": line.sku.sku_id,
                    "quantity": line.quantity,
                    "gross": line.gross,
                    "promotion_discount": line.promotion_discount,
                    "merchant_coupon_discount": line.merchant_coupon_discount,
                    "platform_coupon_discount": line.platform_coupon_discount,
                    "net": line.net,
                    "refunded_units": 0,
                    "refunded_amount": 0,
                    "subsidy_reversed": 0,
                    "funded_reversed": 0,
                }
            )

    @handles(Order.Paid)
    def _paid(self, batch: Batch, e: Order.Paid, position: int) -> None:
        order = self._order_row(batch, e)
        if order["state"] != "placed":
            raise ProjectionInconsistency(
                f"order {order['order_id']} is {order['state']}: only a placed order is paid "
                "(late money is a late payment)"
            )
        m, customer = order["merchant_id"], customer_account(order["order_id"])
        lines = self._lines(batch, order["order_id"]).values()
        self._record_money(batch, order, e, position, MoneyEventKind.PAYMENT, e.amount, e.provider_txn, e.payment_id)
        self._post(
            batch,
            order,
            e,
            position,
            [
                Entry(EntryKind.PAYMENT, PROVIDER_CASH, customer, e.amount, reference=e.provider_txn),
                *(Entry(EntryKind.GOODS, customer, merchant_goods(m), line["net"], line["line_no"]) for line in lines),
                Entry(EntryKind.FREIGHT, customer, merchant_freight(m), order["freight"]),
                *(
                    Entry(
                        EntryKind.PLATFORM_SUBSIDY,
                        PLATFORM_SUBSIDY,
                        merchant_goods(m),
                        line["platform_coupon_discount"],
                        line["line_no"],
                    )
                    for line in lines
                ),
                *(
                    Entry(
                        EntryKind.FUNDED_DISCOUNT,
                        merchant_funded_discounts(m),
                        FUNDED_DISCOUNTS_MEMO,
                        line["promotion_discount"] + line["merchant_coupon_discount"],
                        line["line_no"],
                    )
                    for line in lines
                ),
            ],
        )
        order.update(state="paid", paid=order["paid"] + e.amount, paid_at=e.timestamp)

    @handles(Order.RefundIssued)
    def _refund_issued(self, batch: Batch, e: Order.RefundIssued, position: int) -> None:
        order = self._order_row(batch, e)
        if e.kind is RefundKind.LATE_PAYMENT:
            self._late_refund(batch, order, e, position)
        else:
            self._refund(batch, order, e, position)

    def _refund(self, batch: Batch, order: Row, e: Order.RefundIssued, position: int) -> None:
        if e.amount != sum(amount for _, amount in e.lines.values()) + e.freight:
            raise ProjectionInconsistency(
                f"refund {e.refund_id} of order {order['order_id']} is {e.amount}, "
                f"but its lines {e.lines} and freight {e.freight} add up to something else"
            )
        m, customer = order["merchant_id"], customer_account(order["order_id"])
        lines = self._lines(batch, order["order_id"])
        unknown = sorted(set(e.lines) - set(lines))
        if unknown:
            raise ProjectionInconsistency(
                f"refund {e.refund_id} names line(s) {unknown} that order {order['order_id']} does not have"
            )
        entries = [
            Entry(EntryKind.REFUND, customer, PROVIDER_CASH, e.amount, reference=e.refund_id),
            *(
                Entry(EntryKind.GOODS_REFUND, merchant_goods(m), customer, amount, line_no, e.refund_id)
                for line_no, (_, amount) in sorted(e.lines.items())
            ),
            Entry(EntryKind.FREIGHT_REFUND, merchant_freight(m), customer, e.freight, reference=e.refund_id),
        ]
        for line_no, (units, amount) in sorted(e.lines.items()):
            line = lines[line_no]
            subsidy = share_refund(line["platform_coupon_discount"], line["quantity"], line["refunded_units"], units)
            funded = share_refund(
                line["promotion_discount"] + line["merchant_coupon_discount"],
                line["quantity"],
                line["refunded_units"],
                units,
            )
            entries.append(
                Entry(EntryKind.SUBSIDY_REVERSAL, merchant_goods(m), PLATFORM_SUBSIDY, subsidy, line_no, e.refund_id)
            )
            entries.append(
                Entry(
                    EntryKind.FUNDED_DISCOUNT_REVERSAL,
                    FUNDED_DISCOUNTS_MEMO,
                    merchant_funded_discounts(m),
                    funded,
                    line_no,
                    e.refund_id,
                )
            )
            line.update(
                refunded_units=line["refunded_units"] + units,
                refunded_amount=line["refunded_amount"] + amount,
                subsidy_reversed=line["subsidy_reversed"] + subsidy,
                funded_reversed=line["funded_reversed"] + funded,
            )
        self._record_money(batch, order, e, position, MoneyEventKind.REFUND, e.amount, e.refund_id)
        self._post(batch, order, e, position, entries)
        order.update(refunded=order["refunded"] + e.amount, freight_refunded=order["freight_refunded"] + e.freight)

    @handles(Order.LatePaymentReceived)
    def _late_payment(self, batch: Batch, e: Order.LatePaymentReceived, position: int) -> None:
        order = self._order_row(batch, e)
        customer = customer_account(order["order_id"])
        self._record_money(
            batch, order, e, position, MoneyEventKind.LATE_PAYMENT, e.amount, e.provider_txn, e.payment_id
        )
        self._post(
            batch,
            order,
            e,
            position,
            [
                Entry(EntryKind.LATE_PAYMENT, PROVIDER_CASH, customer, e.amount, reference=e.provider_txn),
                Entry(
                    EntryKind.LATE_PAYMENT_HELD, customer, LATE_PAYMENT_SUSPENSE, e.amount, reference=e.provider_txn
                ),
            ],
        )
        order["late_received"] += e.amount

    def _late_refund(self, batch: Batch, order: Row, e: Order.RefundIssued, position: int) -> None:
        if e.lines or e.freight:
            raise ProjectionInconsistency(
                f"late-payment refund {e.refund_id} of order {order['order_id']} names goods or freight"
            )
        customer = customer_account(order["order_id"])
        self._record_money(batch, order, e, position, MoneyEventKind.LATE_REFUND, e.amount, e.refund_id)
        self._post(
            batch,
            order,
            e,
            position,
            [
                Entry(EntryKind.LATE_REFUND_RELEASE, LATE_PAYMENT_SUSPENSE, customer, e.amount, reference=e.refund_id),
                Entry(EntryKind.LATE_REFUND, customer, PROVIDER_CASH, e.amount, reference=e.refund_id),
            ],
        )
        order["late_refunded"] += e.amount

    @handles(Order.Cancelled)
    def _cancelled(self, batch: Batch, e: Order.Cancelled, position: int) -> None:
        order = self._order_row(batch, e)
        if order["state"] != "placed":
            raise ProjectionInconsistency(
                f"order {order['order_id']} is {order['state']}: only an unpaid order is cancelled"
            )
        order.update(state="cancelled", cancelled_at=e.timestamp)

    @staticmethod
    def _order_row(batch: Batch, event: DomainEvent) -> Row:
        row = batch.rows("reconciliation_orders").get((str(event.originator_id),))
        assert row is not None  # checked by apply
        return row
