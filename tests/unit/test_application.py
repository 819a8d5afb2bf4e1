"""The application layer's plumbing: the Shop's typed signatures and the retrying transaction."""

from __future__ import annotations

import inspect
import typing
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from ecomcore import ConcurrencyConflict, Merchant, Promotion, Shop, Sku, Warehouse
from ecomcore.application import commands
from ecomcore.application.unit_of_work import UnitOfWork, transact
from ecomcore.infrastructure.store import StoreConflict

#: Each command method of the Shop and the command it validates its keywords into.
COMMAND_OF: dict[str, type[BaseModel]] = {
    "set_up_stock": commands.SetUpStock,
    "receive_stock": commands.ReceiveStock,
    "count_stock": commands.CountStock,
    "write_off_stock": commands.WriteOffStock,
    "create_campaign": commands.CreateCampaign,
    "issue_coupon": commands.IssueCoupon,
    "checkout": commands.PlaceCheckout,
    "pay": commands.PayCheckout,
    "cancel": commands.CancelCheckout,
    "confirm_receipt": commands.ConfirmReceipt,
    "dispatch": commands.DispatchShipment,
    "update_tracking": commands.UpdateTracking,
    "deliver": commands.DeliverShipment,
    "report_delivery_failure": commands.ReportDeliveryFailure,
    "refund_only": commands.RefundOnly,
    "request_return": commands.RequestReturn,
    "approve_return": commands.ApproveReturn,
    "reject_return": commands.RejectReturn,
    "ship_return": commands.ShipReturn,
    "receive_return": commands.ReceiveReturn,
    "refund_return": commands.RefundReturn,
}


def test_every_command_class_has_its_shop_method() -> None:
    """No command is left without a method that sends it."""
    sent = set(COMMAND_OF.values()) | {commands.RecommendCoupons, commands.CartItem}
    defined = {
        value
        for value in vars(commands).values()
        if isinstance(value, type) and issubclass(value, commands.Command) and value is not commands.Command
    }
    assert defined == sent


@pytest.mark.parametrize("method", COMMAND_OF)
def test_a_command_method_takes_exactly_its_commands_fields_as_keywords(method: str) -> None:
    """Keyword-only parameters named as the command's fields, required where the field is,
    with the field's default otherwise: the signature and the command cannot drift apart."""
    parameters = list(inspect.signature(getattr(Shop, method)).parameters.values())[1:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    fields = COMMAND_OF[method].model_fields
    assert {p.name for p in parameters} == set(fields)
    for p in parameters:
        field = fields[p.name]
        if field.is_required():
            assert p.default is inspect.Parameter.empty, p.name
        else:
            assert p.default == field.default, p.name


@pytest.mark.parametrize(
    ("method", "value_type"),
    [
        ("register_sku", Sku),
        ("register_warehouse", Warehouse),
        ("register_merchant", Merchant),
        ("add_promotion", Promotion),
    ],
)
def test_a_catalogue_registration_takes_the_value_or_its_fields(method: str, value_type: type[BaseModel]) -> None:
    """One overload takes the value itself, the other its fields as keywords, required as they are."""
    by_value, by_fields = typing.get_overloads(getattr(Shop, method))
    assert [p.annotation for p in inspect.signature(by_value).parameters.values()][1:] == [value_type.__name__]
    keywords = {p.name: p for p in inspect.signature(by_fields).parameters.values() if p.kind is p.KEYWORD_ONLY}
    assert set(keywords) == set(value_type.model_fields)
    for name, field in value_type.model_fields.items():
        assert (keywords[name].default is inspect.Parameter.empty) == field.is_required(), name


class _FakeStore:
    """Records nothing; its save fails with a storage conflict the first ``conflicts`` times."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.saves = 0

    def save(self, *aggregates: Any) -> list[Any]:
        self.saves += 1
        if self.saves <= self.conflicts:
            raise StoreConflict("another writer got there first")
        return list(aggregates)

    def give_back(self, aggregates: Any) -> None:
        pass


class _Changed:
    id = "a"
    has_pending_events = True


def _run(store: _FakeStore, max_attempts: int) -> tuple[str, int]:
    runs = 0

    def begin() -> UnitOfWork:
        return UnitOfWork(store, now=datetime(2026, 1, 1, tzinfo=UTC), catalogue=None, settings=None)  # type: ignore[arg-type]

    def handler(uow: UnitOfWork, answer: str) -> str:
        nonlocal runs
        runs += 1
        uow.add(_Changed())  # type: ignore[type-var]
        return answer

    return transact(begin, max_attempts, handler, "done"), runs


def test_a_transaction_that_lost_a_race_runs_again_from_the_start() -> None:
    """Each conflict runs the handler again on a fresh unit of work; the first save that
    succeeds ends it with that run's result."""
    assert _run(_FakeStore(conflicts=2), max_attempts=3) == ("done", 3)


def test_a_transaction_gives_up_after_max_attempts() -> None:
    """After ``max_attempts`` conflicts the caller gets ``ConcurrencyConflict``, caused by the last one."""
    store = _FakeStore(conflicts=3)
    with pytest.raises(ConcurrencyConflict) as gave_up:
        _run(store, max_attempts=3)
    assert gave_up.value.code == "concurrency_conflict"
    assert isinstance(gave_up.value.__cause__, StoreConflict)
    assert store.saves == 3
