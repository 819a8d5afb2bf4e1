"""``assert_events``: "then" checks that compare recorded events by type *and* data.

Like Rails Event Store's ``assert_events``/``have_published``: each expected event names
its class and its data; the envelope (``originator_id``, ``originator_version``,
``timestamp``) is taken from the recorded event unless the expectation gives it.  The
expected event is built by its own class, so defaults fill in, a misspelt field fails
validation, and the comparison is of whole events::

    assert_events(
        stock.collect_events(),
        an_event(StockItem.Reserved, order_id=ORDER_A, quantity=4, expires_at=T0 + HOUR),
        an_event(StockItem.LowStockDetected, available=0, safety_stock=3, suggested_reorder_quantity=20),
    )
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecomcore.domain.aggregate import DomainEvent

#: Fields every event has that say where and when, not what: taken from the recorded event.
ENVELOPE = ("originator_id", "originator_version", "timestamp")


@dataclass(frozen=True)
class ExpectedEvent:
    type: type[DomainEvent]
    data: Mapping[str, Any] = field(default_factory=dict)

    def like(self, recorded: DomainEvent) -> DomainEvent:
        """The expected event, with the recorded event's envelope where none is given."""
        envelope = {name: getattr(recorded, name) for name in ENVELOPE if name not in self.data}
        return self.type(**envelope, **self.data)


def an_event(event_type: type[DomainEvent], **data: Any) -> ExpectedEvent:
    """An event of ``event_type`` with exactly this data (defaults of the class fill the rest)."""
    return ExpectedEvent(event_type, data)


def assert_events(recorded: Iterable[DomainEvent], *expected: ExpectedEvent) -> None:
    """The recorded events are the expected ones, in order: same types and same data."""
    recorded = list(recorded)
    recorded_types = [type(event).__qualname__ for event in recorded]
    expected_types = [wanted.type.__qualname__ for wanted in expected]
    if recorded_types != expected_types:
        raise AssertionError(f"recorded events {recorded_types}, expected {expected_types}")
    for number, (event, wanted) in enumerate(zip(recorded, expected, strict=True), start=1):
        like = wanted.like(event)
        if event != like:
            differences = "; ".join(
                f"{name}: recorded {getattr(event, name)!r}, expected {getattr(like, name)!r}"
                for name in type(event).model_fields
                if getattr(event, name) != getattr(like, name)
            )
            raise AssertionError(f"event {number} ({recorded_types[number - 1]}) differs: {differences}")
