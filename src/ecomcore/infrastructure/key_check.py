"""The cipher key checked when a store opens, before anything is written under it.

A store remembers whether its events are encrypted in one row of a small table of its own
database: empty for a store written without a key, else a known text encrypted under the
store's key (AES-GCM authenticates it, so only the same key decrypts it). Opening the store
reads that row (one query) and refuses, with ``CipherKeyMismatch``:

- a key that does not decrypt it (a wrong key),
- no key for a store whose events are encrypted,
- a key for a store written without one.

The first open of a store without that row writes it: a new store takes the key it is
opened with (or none); a store written before keys were checked is first judged by its
first stored event. A store that holds no events yet takes whatever it is next opened with.
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from typing import Any

from eventsourcing.persistence import Cipher

from ecomcore.domain.errors import CipherKeyMismatch

__all__ = ["check_cipher_key"]

_TABLE = "ecomcore_cipher_check"
_NAME = "events"
_PLAINTEXT = b"ecomcore cipher key check, version 1"

_WRONG_KEY = "the cipher key does not fit this store: its events were encrypted under another key"
_KEY_MISSING = "this store's events are encrypted: give its cipher key (ECOMCORE_CIPHER_KEY)"
_KEY_UNEXPECTED = (
    "this store was written without a cipher key, but one is given: "
    "open it without ECOMCORE_CIPHER_KEY (its events are not encrypted)"
)


def check_cipher_key(recorder: Any, cipher: Cipher | None, *, postgres: bool) -> None:
    """Refuse ``cipher`` (``None``: no key) with ``CipherKeyMismatch`` unless it is the store's."""
    table = _CheckTable(recorder.datastore, postgres)
    stored = table.read()
    if stored is not None:
        problem = _mismatch(stored[0], cipher)
        if problem is None:
            return
        if not _holds_events(recorder):
            table.replace(_check_value(cipher))  # nothing is encrypted yet: take the new key
            return
        raise CipherKeyMismatch(problem)
    first = recorder.select_notifications(None, 1)
    if first:
        problem = _event_mismatch(first[0].state, cipher)
        if problem is not None:
            raise CipherKeyMismatch(problem)
    # Another process opening the store at the same moment may have written its row first.
    problem = _mismatch(table.insert(_check_value(cipher)), cipher)
    if problem is not None:
        raise CipherKeyMismatch(problem)


def _check_value(cipher: Cipher | None) -> str | None:
    return None if cipher is None else b64encode(cipher.encrypt(_PLAINTEXT)).decode()


def _mismatch(stored: str | None, cipher: Cipher | None) -> str | None:
    if stored is None:
        return None if cipher is None else _KEY_UNEXPECTED
    if cipher is None:
        return _KEY_MISSING
    try:
        fits = cipher.decrypt(b64decode(stored)) == _PLAINTEXT
    except ValueError:  # AES-GCM: "Invalid cipher tag" under another key
        fits = False
    return None if fits else _WRONG_KEY


def _event_mismatch(state: bytes, cipher: Cipher | None) -> str | None:
    """Judge by a stored event, for a store written before its key was recorded."""
    if cipher is not None:
        try:
            cipher.decrypt(state)
        except ValueError:
            return _KEY_UNEXPECTED if _is_plain(state) else _WRONG_KEY
        return None
    return None if _is_plain(state) else _KEY_MISSING


def _is_plain(state: bytes) -> bool:
    try:
        return isinstance(json.loads(state), dict)
    except ValueError:
        return False


def _holds_events(recorder: Any) -> bool:
    return bool(recorder.max_notification_id())


class _CheckTable:
    def __init__(self, datastore: Any, postgres: bool) -> None:
        self._datastore = datastore
        self._postgres = postgres

    def _sql(self, statement: str) -> str:
        return statement if self._postgres else statement.replace("%s", "?")

    def read(self) -> tuple[str | None] | None:
        """The stored check value (``(None,)``: a store without a key), or ``None`` if there is none."""
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (name TEXT PRIMARY KEY, check_value TEXT)")
            return self._select(cursor)

    def insert(self, value: str | None) -> str | None:
        """Write ``value`` unless a row is there already; the row's value either way."""
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                self._sql(f"INSERT INTO {_TABLE} (name, check_value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"),
                (_NAME, value),
            )
            found = self._select(cursor)
        assert found is not None, "the row was just written"
        return found[0]

    def replace(self, value: str | None) -> None:
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(self._sql(f"UPDATE {_TABLE} SET check_value = %s WHERE name = %s"), (value, _NAME))

    def _select(self, cursor: Any) -> tuple[str | None] | None:
        cursor.execute(self._sql(f"SELECT check_value FROM {_TABLE} WHERE name = %s"), (_NAME,))
        row = cursor.fetchone()
        if row is None:
            return None
        return (row["check_value"] if isinstance(row, dict) else row[0],)
