"""The ``memory://`` store keeps everything in the process: no file, no database, and each
store opened on it is its own."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest
from eventsourcing.popo import POPOApplicationRecorder
from shop_fixtures import START, stock_catalogue

from ecomcore import ManualClock, Shop
from ecomcore.infrastructure.catalogue import InMemoryCatalogue
from ecomcore.infrastructure.store import MEMORY_URL, StoreUrlError

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A current directory that stays empty, and every SQLite or PostgreSQL connection refused."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a memory:// shop opened a database connection: {args} {kwargs}")

    for module in (sqlite3, sqlite3.dbapi2, psycopg):
        monkeypatch.setattr(module, "connect", refused)
    monkeypatch.setattr(psycopg.Connection, "connect", refused)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_quickstart_runs_on_a_memory_store_and_writes_nothing(no_database: Path):
    """The README's first example, with its Shop opened on memory://, runs to the end without
    opening a database connection or writing a file."""
    quickstart = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[0]
    in_memory, opened = re.subn(r'Shop\(f?"[^"]*"', f'Shop("{MEMORY_URL}"', quickstart)
    assert opened == 1, "the README's first example should open one Shop on a store URL"
    names: dict[str, object] = {}
    exec(compile(in_memory, str(README), "exec"), names)
    shop = names["shop"]
    assert isinstance(shop, Shop)
    assert isinstance(shop.store.recorder, POPOApplicationRecorder)
    assert isinstance(shop.catalogue, InMemoryCatalogue)
    assert list(no_database.iterdir()) == []


def test_each_memory_store_is_its_own(no_database: Path):
    """Two shops on memory:// share nothing, and a name after memory:// is refused rather than
    suggesting that stores opened on it would share their events."""
    first = Shop(MEMORY_URL, clock=ManualClock(START))
    second = Shop(MEMORY_URL, clock=ManualClock(START))
    stock_catalogue(first)
    first.receive_stock(sku_id="A1", warehouse_id="w1", quantity=3, reference="po-1")
    assert first.available("A1") == 3
    assert second.store.recorder.max_notification_id() is None
    assert second.catalogue.sku("A1") is None
    first.close()
    second.close()
    with pytest.raises(StoreUrlError, match="memory://shared"):
        Shop("memory://shared")
    assert list(no_database.iterdir()) == []
