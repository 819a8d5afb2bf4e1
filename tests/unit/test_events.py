"""The ``assert_events`` helper (tests/events.py) fails whenever type or data differ."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from events import an_event, assert_events
from pydantic import ValidationError
from strategies import T0

from ecomcore.domain.stock_item import StockItem

ORDER = UUID("00000000-0000-4000-8000-00000000000a")


def recorded() -> list:
    item = StockItem.register("sku-1", "w1", T0)
    item.receive(5, "po-1", T0)
    item.collect_events()
    item.reserve(ORDER, 2, T0 + timedelta(hours=1), T0)
    return item.collect_events()


def test_equal_types_and_data_pass() -> None:
    """Matching types and data pass; the envelope comes from the recorded event."""
    expected = an_event(StockItem.Reserved, order_id=ORDER, quantity=2, expires_at=T0 + timedelta(hours=1))
    assert_events(recorded(), expected)


def test_different_data_fails_naming_the_field() -> None:
    """A field that differs fails, naming the field and both values."""
    with pytest.raises(AssertionError, match="quantity: recorded 2, expected 3"):
        assert_events(
            recorded(), an_event(StockItem.Reserved, order_id=ORDER, quantity=3, expires_at=T0 + timedelta(hours=1))
        )


def test_different_types_or_count_fail() -> None:
    """Another type, a missing or an extra event fails."""
    reserved = an_event(StockItem.Reserved, order_id=ORDER, quantity=2, expires_at=T0 + timedelta(hours=1))
    with pytest.raises(AssertionError, match="expected"):
        assert_events(recorded(), an_event(StockItem.Received, quantity=2, reference="po"))
    with pytest.raises(AssertionError):
        assert_events(recorded())
    with pytest.raises(AssertionError):
        assert_events(recorded(), reserved, reserved)


def test_envelope_is_compared_when_given() -> None:
    """A timestamp or version given in the expectation is compared too."""
    data = {"order_id": ORDER, "quantity": 2, "expires_at": T0 + timedelta(hours=1)}
    assert_events(recorded(), an_event(StockItem.Reserved, originator_version=3, timestamp=T0, **data))
    with pytest.raises(AssertionError, match="originator_version"):
        assert_events(recorded(), an_event(StockItem.Reserved, originator_version=4, **data))


def test_a_misspelt_or_missing_field_fails() -> None:
    """The expected event is built by its class: unknown or missing fields fail validation."""
    with pytest.raises(ValidationError):
        assert_events(recorded(), an_event(StockItem.Reserved, order=ORDER, quantity=2, expires_at=T0))
    with pytest.raises(ValidationError):
        assert_events(recorded(), an_event(StockItem.Reserved, order_id=ORDER, quantity=2))
