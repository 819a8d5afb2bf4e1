"""As-of read models: ``rebuild NAME --as-of TIME | --until-position N --into LABEL``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest
from eventsourcing.persistence import StoredEvent
from sqlalchemy import MetaData, Table

from ecomcore import Settings
from ecomcore.domain.aggregate import DomainEvent
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.cli import main
from ecomcore_projections.rebuild import InvalidLabel, rebuild_as_of, snapshot
from ecomcore_projections.runner import POSITIONS_TABLE, Projector, ReadModels, dump, ordered_rows

NAMES = ("order_status", "stock", "reconciliation")


def _timestamps(store: EventStore) -> list[tuple[int, datetime, StoredEvent]]:
    found = []
    for notification in store.recorder.select_notifications(1, 1_000_000):
        event = cast(DomainEvent, store.mapper.to_domain_event(notification))
        found.append((notification.id, event.timestamp, notification))
    return found


def _live_state(read_models: ReadModels) -> dict[str, Any]:
    with read_models.engine.connect() as conn:
        positions = Table(POSITIONS_TABLE, MetaData(), autoload_with=conn)
        state: dict[str, Any] = {"positions": sorted(ordered_rows(conn, positions), key=repr)}
    state["positions"] = [row[:3] for row in state["positions"]]  # name, position, schema (not updated_at)
    for name in NAMES:
        state[name] = dump(read_models, name)
    return state


@pytest.fixture
def traded(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """A store holding a 40-order demo day, its live read models caught up."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--orders", "40", "--store", store_url]) == 0
    capsys.readouterr()
    return store_url


def test_as_of_a_moment_equals_a_store_holding_only_the_events_up_to_it(traded: str, tmp_path: Path) -> None:
    """A snapshot as of mid-day equals the read models of a fresh store given only the events with a timestamp
    at or before that moment, and building it leaves the live tables and positions exactly as they were."""
    store = EventStore(Settings(store_url=traded))
    read_models = ReadModels(traded)
    try:
        events = _timestamps(store)
        middle = sorted(timestamp for _, timestamp, _ in events)[len(events) // 2]
        kept = [(position, n) for position, timestamp, n in events if timestamp <= middle]
        # The simulated clock only moves forward: the events up to the moment are a prefix of the log,
        # so the copy's notification ids (which the ledger records) are the same.
        assert [position for position, _ in kept] == list(range(1, len(kept) + 1))
        assert len(kept) < len(events)
        before = _live_state(read_models)

        built = {name: rebuild_as_of(store, read_models, name, "midday", as_of=middle, batch_size=97) for name in NAMES}

        assert _live_state(read_models) == before
        copy = EventStore(Settings(store_url=f"sqlite:///{tmp_path}/copy.sqlite"))
        copy_models = ReadModels(f"sqlite:///{tmp_path}/copy.sqlite")
        try:
            notifications = [n for _, n in kept]
            for start in range(0, len(notifications), 200):
                copy.recorder.insert_events([
                    StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
                    for n in notifications[start:start + 200]
                ])
            Projector(copy, copy_models).catch_up()
            for name in NAMES:
                found, tables = snapshot(read_models, "midday", name)
                assert found.as_of == middle and found.position == events[-1][0]
                assert found.events == built[name].events
                with read_models.engine.connect() as conn:
                    as_of_rows = read_models.rows(name, conn, tables)
                expected = dump(copy_models, name)
                assert as_of_rows == expected, name
                assert any(expected.values()), f"{name} is empty as of {middle}"
        finally:
            copy_models.dispose()
            copy.close()
    finally:
        read_models.dispose()
        store.close()


def test_until_position_and_rebuilding_a_label_again(traded: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--until-position N --into LABEL`` from the command line builds the read model from the first N events
    (the live tables stay); the same label built again replaces it; a label that is no identifier is refused."""
    store = EventStore(Settings(store_url=traded))
    read_models = ReadModels(traded)
    try:
        before = _live_state(read_models)
        assert main(["rebuild", "stock", "--until-position", "300", "--into", "p", "--store", traded]) == 0
        _, tables = snapshot(read_models, "p", "stock")
        with read_models.engine.connect() as conn:
            first = read_models.rows("stock", conn, tables)
        assert main(["rebuild", "stock", "--until-position", "300", "--into", "p", "--store", traded, "--json"]) == 0
        assert '"until_position": 300' in capsys.readouterr().out
        found, tables = snapshot(read_models, "p", "stock")
        with read_models.engine.connect() as conn:
            assert read_models.rows("stock", conn, tables) == first
        assert found.position == 300 and found.until_position == 300
        assert _live_state(read_models) == before
        assert main(["rebuild", "stock", "--until-position", "900", "--into", "p", "--store", traded]) == 0
        with read_models.engine.connect() as conn:
            assert read_models.rows("stock", conn, snapshot(read_models, "p", "stock")[1]) != first
        assert _live_state(read_models) == before
        for bad in ("Month", "month-end", "1st", "a" * 21, "x;drop table y"):
            with pytest.raises(InvalidLabel):
                rebuild_as_of(store, read_models, "stock", bad, until_position=1)
            assert main(["rebuild", "stock", "--until-position", "1", "--into", bad, "--store", traded]) == 2
            assert "error [usage]" in capsys.readouterr().err
    finally:
        read_models.dispose()
        store.close()
    assert main(["rebuild", "stock", "--as-of", "2026-01-01", "--store", traded]) == 2
    assert main(["rebuild", "stock", "--into", "x", "--store", traded]) == 2
    assert main(["reconcile", "--snapshot", "nothere", "--store", traded]) == 2
    assert "error [snapshot_not_found]" in capsys.readouterr().err
