"""Hypothesis (spec §6): the same history in batches of any size gives the same read models, and
applying a batch twice changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecomcore import ManualClock, Settings, Shop
from ecomcore.simulation import simulate_trading_day
from ecomcore_projections.runner import Projector, ReadModels, dump, registered


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A small trading day (with after-sales) on SQLite, and its read models applied in one go."""
    url = f"sqlite:///{tmp_path_factory.mktemp('batches')}/store.sqlite"
    clock = ManualClock(datetime(2026, 11, 11, 8, tzinfo=UTC))
    shop = Shop(url, clock=clock, settings=Settings(store_url=url))
    simulate_trading_day(shop, clock, orders=12, seed=5)
    reference = ReadModels("sqlite://")
    Projector(shop.store, reference).catch_up()
    expected = {name: dump(reference, name) for name in registered()}
    notifications = shop.store.recorder.select_notifications(1, 1_000_000)
    yield shop, notifications, expected
    reference.dispose()
    shop.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 400), min_size=1, max_size=30), repeat=st.integers(0, 29))
def test_any_batching_gives_the_same_read_models(history, sizes, repeat):
    """Cut the log into batches of random sizes, apply one of them twice: every table equals the one-go result."""
    shop, notifications, expected = history
    models = ReadModels("sqlite://")
    try:
        projector = Projector(shop.store, models)
        batches, start = [], 0
        while start < len(notifications):
            size = sizes[len(batches) % len(sizes)]
            batches.append(notifications[start : start + size])
            start += size
        for number, batch in enumerate(batches):
            for name, projection in projector.projections.items():
                wanted = {f"{t.__module__}.{t.__qualname__}" for t in type(projection).handles}
                mine = [n for n in batch if n.topic.replace(":", ".") in wanted]
                projector.apply(name, mine)
                if number == repeat % len(batches):
                    projector.apply(name, mine)  # the same batch again: skipped, changes nothing
        assert {name: dump(models, name) for name in registered()} == expected
    finally:
        models.dispose()
