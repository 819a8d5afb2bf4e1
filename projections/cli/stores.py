"""Opening what a command works on: the settings, the event store and the read models.

Before the library opens a store the command checks it, so that the usual mistakes are
reported at once and by name rather than as whatever the database says later:

- a store that does not exist is refused by every command but ``demo`` (a mistyped SQLite
  path must not become a new, empty store): ``store_not_found``;
- an SQLite file that is not a database, or is shorter than its header says
  (truncated): ``store_corrupted``; a file or directory that cannot be written:
  ``store_read_only``;
- a PostgreSQL server that does not answer within the connect timeout:
  ``store_unavailable`` (refused at once when nothing listens); a database that does not
  exist: ``store_not_found``; a refused login: ``store_access_denied``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError
from sqlalchemy import create_engine

from ecomcore import Settings
from ecomcore.infrastructure.catalogue import sqlalchemy_url
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import describe_cause
from ecomcore_projections.cli.failures import CliError
from ecomcore_projections.cli.masking import mask, remember_key, remember_url
from ecomcore_projections.faults import Backoff, is_transient
from ecomcore_projections.runner import ReadModels

#: The event store's table, by database (the library's names).
_SQLITE_EVENTS_TABLE = "stored_events"
_POSTGRES_EVENTS_TABLE = "ecomcore_events"
_SQLITE_HEADER = b"SQLite format 3\x00"
_PG_ACCESS_DENIED = ("password authentication failed", "no password supplied", "role", "permission denied")


def load_settings(args: argparse.Namespace, *, connect_timeout: int | None = None) -> Settings:
    """The settings from the environment, with ``--store`` and ``--connect-timeout`` applied
    (``connect_timeout``: the command's own default when neither option nor variable says)."""
    remember_url(getattr(args, "store", None))
    remember_url(getattr(args, "read_models", None))
    try:
        settings = Settings()
    except ValidationError as error:
        raise settings_error(error) from None
    key: Any = settings.cipher_key  # a SecretStr (a plain string before it was one)
    remember_key(key.get_secret_value() if hasattr(key, "get_secret_value") else key)
    updates: dict[str, Any] = {}
    if getattr(args, "store", None):
        updates["store_url"] = args.store
    if getattr(args, "connect_timeout", None) is not None:
        updates["postgres_connect_timeout_s"] = args.connect_timeout
    elif connect_timeout is not None and "ECOMCORE_POSTGRES_CONNECT_TIMEOUT_S" not in os.environ:
        updates["postgres_connect_timeout_s"] = connect_timeout
    return settings.model_copy(update=updates) if updates else settings


def settings_error(error: ValidationError) -> CliError:
    """A refused ``ECOMCORE_…`` setting, named by its variable; its value is never repeated."""
    problems = error.errors(include_input=False, include_url=False)
    fields = [str(problem["loc"][0]) if problem["loc"] else "" for problem in problems]
    text = "; ".join(
        f"ECOMCORE_{field.upper()}: {problem['msg']}" for field, problem in zip(fields, problems, strict=True)
    )
    return CliError("cipher_key_invalid" if "cipher_key" in fields else "invalid_setting", text)


# --------------------------------------------------------------------------- checks


def check_store(settings: Settings, *, must_exist: bool) -> None:
    """Refuse a store the command cannot use (see the module's docstring)."""
    url = settings.store_url
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "sqlite":
        path = _sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path, must_exist=must_exist, what="event store")
    elif scheme in ("postgres", "postgresql"):
        _check_postgres(url, settings.postgres_connect_timeout_s, must_exist=must_exist)


def _sqlite_path(url: str) -> Path | None:
    """The file an ``sqlite://`` URL names, as the store reads it (None: in memory)."""
    path = unquote(url.split("://", 1)[1]).split("?", 1)[0]
    path = path[1:] if path.startswith("/") else path
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def _check_sqlite_file(path: Path, *, must_exist: bool, what: str) -> None:
    if path.is_dir():
        raise CliError("store_not_found", f"{path} is a directory, not an SQLite file")
    if not path.exists():
        if must_exist:
            raise CliError(
                "store_not_found",
                f"no {what} at {path}: check --store and ECOMCORE_STORE_URL "
                "(only `ecomcore demo` creates a new store)",
            )
        parent = path.parent
        if not parent.is_dir():
            raise CliError("store_not_found", f"cannot create {path}: the directory {parent} does not exist")
        try:  # the surest test that the store can be created: create it (SQLite takes an empty file)
            path.touch(exist_ok=False)
        except FileExistsError:
            return  # another process created it meanwhile
        except OSError as error:
            raise CliError("store_read_only", f"cannot create {path}: {error.strerror}") from None
        path.unlink()
        return
    _check_sqlite_header(path)
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        raise CliError(
            "store_read_only",
            f"{path} or its directory is not writable (SQLite writes the file and a journal beside it)",
        )
    try:
        tables = _sqlite_tables(path)
    except sqlite3.DatabaseError as error:
        message = str(error).lower()
        if any(word in message for word in ("locked", "busy", "unable to open")):
            raise CliError("store_unavailable", f"cannot open {path}: {error}", transient=True) from None
        raise CliError("store_corrupted", f"{path} is damaged or not an SQLite database ({error})") from None
    if must_exist and _SQLITE_EVENTS_TABLE not in tables:
        raise CliError("store_not_found", f"{path} is an SQLite database but holds no ecomcore event store")


def _sqlite_tables(path: Path) -> set[str]:
    """The file's tables, read without writing; the end of the events' b-tree read too."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if _SQLITE_EVENTS_TABLE in tables:
            # The last page of the events' b-tree: where a truncated file ends.
            connection.execute(f"SELECT max(rowid) FROM {_SQLITE_EVENTS_TABLE}").fetchone()
        return tables
    finally:
        connection.close()


def _check_sqlite_header(path: Path) -> None:
    """An SQLite file starts with its magic string, and is at least as long as its header says."""
    size = path.stat().st_size
    if size == 0:
        return  # SQLite takes an empty file for an empty database
    with path.open("rb") as file:
        header = file.read(100)
    if not header.startswith(_SQLITE_HEADER) or len(header) < 100:
        raise CliError("store_corrupted", f"{path} is not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid when the "version valid for" number equals the change counter.
    if pages and header[92:96] == header[24:28] and size < page_size * pages:
        raise CliError(
            "store_corrupted", f"{path} is truncated: its header says {page_size * pages:,} bytes, it has {size:,}"
        )


def _check_postgres(url: str, timeout: int, *, must_exist: bool) -> None:
    try:
        import psycopg
    except ImportError:
        raise CliError(
            "missing_dependency", "a PostgreSQL store needs the postgres extra: pip install 'ecomcore[postgres]'"
        ) from None
    scheme, rest = url.split("://", 1)
    conninfo = f"postgresql://{rest}"
    try:
        with psycopg.connect(conninfo, connect_timeout=max(timeout, 1), autocommit=True) as connection:
            found = connection.execute("SELECT to_regclass(%s)", (_POSTGRES_EVENTS_TABLE,)).fetchone()
    except psycopg.Error as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        lowered = text.lower()
        where = mask(url)
        if "does not exist" in lowered and "database" in lowered:
            raise CliError("store_not_found", f"{where}: {text}") from None
        if any(words in lowered for words in _PG_ACCESS_DENIED):
            raise CliError("store_access_denied", f"{where}: {text}") from None
        raise CliError(
            "store_unavailable", f"cannot reach {where} within {timeout} s: {text}", transient=True
        ) from None
    if must_exist and (found is None or found[0] is None):
        raise CliError(
            "store_not_found", f"{mask(url)} holds no ecomcore event store (no {_POSTGRES_EVENTS_TABLE} table)"
        )


# --------------------------------------------------------------------------- opening


def open_store(
    settings: Settings,
    *,
    must_exist: bool,
    stop: threading.Event | None = None,
    wait_for: float | None = 0.0,
    log: Any = None,
) -> EventStore:
    """The event store, checked first; one that cannot be reached yet is waited for, with
    back-off, for ``wait_for`` seconds (None: until ``stop``)."""
    stop = stop or threading.Event()
    backoff = Backoff()
    started = time.monotonic()
    while True:
        try:
            check_store(settings, must_exist=must_exist)
            return EventStore(settings)
        except Exception as error:
            waited = time.monotonic() - started
            transient = error.transient if isinstance(error, CliError) else is_transient(error)
            if not transient or stop.is_set() or (wait_for is not None and waited >= wait_for):
                raise
            delay = backoff.next_delay()
            if log is not None:
                log.warning("store unreachable (%s); retrying in %.1f s", _cause(error), delay)
            if stop.wait(delay):
                raise


def _cause(error: BaseException) -> str:
    return error.message if isinstance(error, CliError) else describe_cause(error)


def read_models_url(args: argparse.Namespace, store_url: str) -> str:
    return args.read_models or store_url


def open_read_models(url: str, settings: Settings, *, create_tables: bool, must_exist: bool = False) -> ReadModels:
    """The read models at ``url``, on an engine of our own (a short connect timeout on
    PostgreSQL); close them with :func:`close_read_models`."""
    remember_url(url)
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "memory":
        raise CliError(
            "invalid_read_models_url",
            "an in-memory store has no database for read models: give --read-models (or --no-projections)",
        )
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise CliError(
            "invalid_read_models_url",
            f"read-models URL {url!r} is neither sqlite:///path nor postgresql://host/db "
            "(check --read-models and ECOMCORE_READ_MODELS_URL)",
        )
    connect_args: dict[str, Any] = {}
    if scheme == "sqlite":
        path = _sqlite_path(url)
        if path is not None and must_exist and not path.exists():
            raise CliError("read_models_not_found", f"no read models at {path}: check --read-models")
    else:
        connect_args["connect_timeout"] = max(settings.postgres_connect_timeout_s, 1)
    engine = create_engine(sqlalchemy_url(url), pool_pre_ping=True, connect_args=connect_args)
    try:
        return ReadModels(engine, create_tables=create_tables)
    except BaseException:
        engine.dispose()
        raise


def close_read_models(read_models: ReadModels) -> None:
    read_models.engine.dispose()
