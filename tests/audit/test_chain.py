"""Tamper evidence (issue 12, item 5): ``ecomcore audit seal`` and ``ecomcore audit verify``
on copies of one sealed demo store, on SQLite and PostgreSQL, each tampering named exactly
(notification id, aggregate id and version) in the text and in ``--json``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from ecomcore_projections.audit.chain import GENESIS, Head, StoredEventRow, link_of
from ecomcore_projections.cli import main as ecomcore

#: Template stores, one per kind, built once per module: a 20-order demo, sealed.
_TEMPLATES: dict[str, Any] = {}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    status = ecomcore(list(argv))
    return status, capsys.readouterr().out


def _demo(url: str, *extra: str, where: Path) -> None:
    """``ecomcore demo`` run from ``where``: the demo writes its provider statement beside a
    SQLite store, and into the working directory for a PostgreSQL one."""
    here = Path.cwd()
    os.chdir(where)
    try:
        assert ecomcore(["demo", "--store", url, "--log-level", "warning", *extra]) == 0
    finally:
        os.chdir(here)


def _build(url: str, where: Path) -> str:
    _demo(url, "--orders", "20", where=where)
    assert ecomcore(["audit", "seal", "--store", url, "--log-level", "warning"]) == 0
    return url


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield _TEMPLATES
    server = _TEMPLATES.pop("postgres_server", None)
    name = _TEMPLATES.pop("postgres", None)
    _TEMPLATES.clear()
    if server and name:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def sealed(store_url: str, templates: dict[str, Any], request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the sealed demo store at ``store_url``."""
    if store_url.startswith("sqlite"):
        if "sqlite" not in templates:
            path = tmp_path_factory.mktemp("chain_template") / "store.sqlite"
            templates["sqlite"] = Path(_build(f"sqlite:///{path}", path.parent).split("///", 1)[1])
        shutil.copy(templates["sqlite"], store_url.split("///", 1)[1])
        return store_url
    server = request.getfixturevalue("postgres_url")
    if "postgres" not in templates:
        name = f"t_chain_{uuid.uuid4().hex}"
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        _build(urlunsplit(urlsplit(server)._replace(path=f"/{name}")), tmp_path_factory.mktemp("chain_template_pg"))
        templates["postgres"], templates["postgres_server"] = name, server
    copy = urlsplit(store_url).path.lstrip("/")
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(copy)))
        connection.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(copy), sql.Identifier(templates["postgres"])))
    return store_url


class Raw:
    """The store's tables by hand, as an attacker with database access would edit them."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith("postgres")
        if self.postgres:
            self.connection: Any = psycopg.connect(url, autocommit=True)
            self.events, self.nid, self.mark = "ecomcore_events", "notification_id", "%s"
        else:
            self.connection = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
            self.events, self.nid, self.mark = "stored_events", "rowid", "?"

    def __call__(self, query: str, *params: Any) -> list[tuple]:
        text = query.format(events=self.events, nid=self.nid, chain="ecomcore_chain").replace("?", self.mark)
        cursor = self.connection.execute(text, params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def middle_event(self, offset: int = 10) -> tuple[int, str, int]:
        """An event with versions before and after it: ``(notification id, aggregate id, version)``."""
        row = self(
            "SELECT e.{nid}, e.originator_id, e.originator_version FROM {events} e WHERE e.originator_version > 1 "
            "AND EXISTS (SELECT 1 FROM {events} f WHERE f.originator_id = e.originator_id "
            f"AND f.originator_version = e.originator_version + 1) ORDER BY e.{{nid}} LIMIT 1 OFFSET {offset}"
        )[0]
        return int(row[0]), str(UUID(str(row[1]))), int(row[2])

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def raw(sealed: str) -> Iterator[Raw]:
    raw = Raw(sealed)
    yield raw
    raw.close()


def verify(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    status, out = _run(capsys, "audit", "verify", "--store", url, "--json", *extra)
    text_status, text = _run(capsys, "audit", "verify", "--store", url, *extra)
    assert text_status == status
    return status, json.loads(out), text


def assert_named(report: dict[str, Any], text: str, kind: str, nid: int, aggregate: str, version: int) -> None:
    first = report["first"]
    assert report["ok"] is False
    assert (first["kind"], first["notification_id"], first["aggregate_id"], first["version"]) == (
        kind, nid, aggregate, version
    ), first
    assert f"notification {nid} (aggregate {aggregate} v{version})" in first["message"]
    assert f"TAMPERED: {kind}: {first['message']}" in text


def test_an_untouched_store_verifies(sealed: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A sealed demo store verifies: chain, versions, read models and reconciliation all hold."""
    status, report, text = verify(capsys, sealed)
    assert status == 0, report
    assert report["ok"] is True and report["problems"] == []
    assert report["not_sealed_yet"] == 0
    assert set(report["read_models_checked"]) >= {"order_status", "stock", "reconciliation"}
    assert report["events"] == report["sealed_head"]["position"]
    assert "verified" in text
    status, report, _ = verify(capsys, sealed, "--against", report["sealed_head"]["head"])
    assert status == 0, report


def test_the_head_is_the_chain_recomputed_by_hand(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed head is SHA-256 chained over (notification id, aggregate, version, topic, state) as stored."""
    link = GENESIS
    for nid, oid, version, topic, state in raw("SELECT {nid}, originator_id, originator_version, topic, state "
                                               "FROM {events} ORDER BY {nid}"):
        link = link_of(link, StoredEventRow(int(nid), str(oid), int(version), topic, bytes(state)))
    status, out = _run(capsys, "audit", "seal", "--store", sealed, "--json")
    assert status == 0
    sealed_head = json.loads(out)
    assert sealed_head["sealed"] == 0  # already sealed: nothing new
    assert Head.parse(sealed_head["head"]["head"]).link == link


def test_an_edited_payload_is_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """Changing an amount in a stored payload names that event as altered."""
    nid, aggregate, version = raw.middle_event()
    state = bytes(raw("SELECT state FROM {events} WHERE {nid} = ?", nid)[0][0])
    edited = state.replace(b'"timestamp":"2026', b'"timestamp":"2025', 1)
    assert edited != state
    raw("UPDATE {events} SET state = ? WHERE {nid} = ?", edited, nid)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "altered", nid, aggregate, version)


def test_a_changed_class_version_is_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """Editing the JSON ``class_version`` of a stored event names it as altered."""
    nid, aggregate, version = raw.middle_event(offset=3)
    state = bytes(raw("SELECT state FROM {events} WHERE {nid} = ?", nid)[0][0])
    assert b'"class_version":1' in state
    raw("UPDATE {events} SET state = ? WHERE {nid} = ?", state.replace(b'"class_version":1', b'"class_version":2'),
        nid)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "altered", nid, aggregate, version)


def test_a_deleted_event_is_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting an event in the middle of a stream names it as removed, and its version as a gap."""
    nid, aggregate, version = raw.middle_event()
    raw("DELETE FROM {events} WHERE {nid} = ?", nid)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "removed", nid, aggregate, version)
    gaps = [p for p in report["problems"] if p["kind"] == "version_gap"]
    assert gaps and (gaps[0]["aggregate_id"], gaps[0]["version"]) == (aggregate, version)


def test_a_removed_stream_is_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting every event of one aggregate names its first event as removed."""
    _, aggregate, _ = raw.middle_event(offset=5)
    stored_id = aggregate if raw.postgres else UUID(aggregate).hex
    first_nid = raw("SELECT MIN({nid}) FROM {events} WHERE originator_id = ?", stored_id)[0][0]
    raw("DELETE FROM {events} WHERE originator_id = ?", stored_id)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "removed", int(first_nid), aggregate, 1)
    assert not [p for p in report["problems"] if p["kind"] == "version_gap"]


def test_swapped_events_are_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """Swapping two events' notification ids names the first position as reordered, holding the other event."""
    nid, _, _ = raw.middle_event(offset=2)
    other, aggregate, version = raw.middle_event(offset=12)
    raw("UPDATE {events} SET {nid} = ? WHERE {nid} = ?", -1, nid)
    raw("UPDATE {events} SET {nid} = ? WHERE {nid} = ?", nid, other)
    raw("UPDATE {events} SET {nid} = ? WHERE {nid} = ?", other, -1)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "reordered", nid, aggregate, version)
    assert f"sealed at notification {other}" in report["first"]["message"]


def test_swapped_payloads_are_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """Swapping two events' topic and state names the first of them as altered."""
    nid, aggregate, version = raw.middle_event(offset=2)
    other, _, _ = raw.middle_event(offset=12)
    (topic_a, state_a), = raw("SELECT topic, state FROM {events} WHERE {nid} = ?", nid)
    (topic_b, state_b), = raw("SELECT topic, state FROM {events} WHERE {nid} = ?", other)
    raw("UPDATE {events} SET topic = ?, state = ? WHERE {nid} = ?", topic_b, state_b, nid)
    raw("UPDATE {events} SET topic = ?, state = ? WHERE {nid} = ?", topic_a, state_a, other)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "altered", nid, aggregate, version)


def test_an_inserted_event_is_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """An event slipped in among the sealed ones (later ones renumbered) is named as inserted."""
    nid, aggregate, _ = raw.middle_event()
    stored_id = aggregate if raw.postgres else UUID(aggregate).hex
    last_version, topic, state = raw(
        "SELECT originator_version, topic, state FROM {events} WHERE originator_id = ? "
        "ORDER BY originator_version DESC LIMIT 1", stored_id)[0]
    raw("UPDATE {events} SET {nid} = {nid} + 1000000 WHERE {nid} > ?", nid)
    raw("UPDATE {events} SET {nid} = {nid} - 999999 WHERE {nid} > 1000000")
    columns = "originator_id, originator_version, topic, state, {nid}"
    raw(f"INSERT INTO {{events}} ({columns}) VALUES (?, ?, ?, ?, ?)", stored_id, last_version + 1, topic, state,
        nid + 1)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "inserted", nid + 1, aggregate, last_version + 1)


def test_an_edited_chain_link_is_named(sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]) -> None:
    """Editing one link of the chain's own table names that link, the event itself being intact."""
    nid, aggregate, version = raw.middle_event()
    raw("UPDATE {chain} SET link = ? WHERE notification_id = ?", bytes(32), nid)
    status, report, text = verify(capsys, sealed)
    assert status == 1
    assert_named(report, text, "chain_edited", nid, aggregate, version)


def test_a_resealed_rewrite_fails_only_against_a_kept_head(
    sealed: str, raw: Raw, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker who rewrites history and re-seals the whole chain passes the chain check,
    but not ``verify --against`` the head an auditor kept after the first seal."""
    status, out = _run(capsys, "audit", "seal", "--store", sealed, "--json")
    kept = json.loads(out)["head"]
    nid, _, _ = raw.middle_event()
    state = bytes(raw("SELECT state FROM {events} WHERE {nid} = ?", nid)[0][0])
    raw("UPDATE {events} SET state = ? WHERE {nid} = ?", state.replace(b'"timestamp":"2026', b'"timestamp":"2025', 1),
        nid)
    raw("DELETE FROM {chain}")
    assert _run(capsys, "audit", "seal", "--store", sealed)[0] == 0
    _, report, _ = verify(capsys, sealed)
    chain_kinds = {"altered", "removed", "inserted", "reordered", "chain_edited", "head_mismatch"}
    assert not [p for p in report["problems"] if p["kind"] in chain_kinds]
    status, report, text = verify(capsys, sealed, "--against", kept["head"])
    assert status == 1
    first = report["first"]
    assert (first["kind"], first["notification_id"]) == ("head_mismatch", kept["position"])
    assert f"TAMPERED: head_mismatch: the history up to notification {kept['position']}" in text


def test_events_after_the_seal_are_not_sealed_yet(
    sealed: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Events written after the last seal are reported as not sealed yet, not as a failure; sealing covers them."""
    _demo(sealed, "--orders", "3", "--seed", "9", where=tmp_path)
    status, report, text = verify(capsys, sealed)
    assert report["not_sealed_yet"] > 0
    assert not [p for p in report["problems"] if p["kind"] not in ("read_model", "reconciliation")]
    assert "not sealed yet" in text
    status, out = _run(capsys, "audit", "seal", "--store", sealed, "--json")
    assert json.loads(out)["sealed"] == report["not_sealed_yet"]
    status, report, _ = verify(capsys, sealed)
    assert report["not_sealed_yet"] == 0


def test_a_malformed_head_is_a_usage_error(sealed: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--against`` that is not POSITION:HASH is refused in one line."""
    status = ecomcore(["audit", "verify", "--store", sealed, "--against", "12:xyz"])
    assert status == 2
    assert capsys.readouterr().err.startswith("error [usage]:")
