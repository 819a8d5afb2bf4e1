"""How the command ends: exit statuses, and every failure as one line ``error [code]: message``.

The exit status follows from the error's code, so that the core's typed errors (and any
added later) need no list here:

====  ======================================================================================
0     done
1     ``rebuild --check`` found a difference; ``status --max-lag`` found a lag or an old schema
2     a usage error, a bad option, setting or URL, or a refusal (a business rule, a projection
      that cannot apply an event, a schema mismatch…): every code not below
3     the store or the read models: missing (``store_not_found``), unreachable
      (``store_unavailable``), damaged (``store_corrupted``), read-only (``store_read_only``)…:
      every code that starts with ``store_`` or ``read_models_``
4     the cipher key: not a key (``cipher_key_invalid``), not this store's
      (``cipher_key_mismatch``): every code that starts with ``cipher_key``
70    an unexpected error: a bug (``internal_error``; ``--log-level debug`` shows its traceback)
130   interrupted (Ctrl-C)
141   the reader of the output went away (``ecomcore status | head -1``)
====  ======================================================================================
"""

from __future__ import annotations

import sqlite3
import sys

from ecomcore import EcomcoreError
from ecomcore_projections.cli.masking import mask

EXIT_OK = 0
EXIT_DIFFERENCES = 1
EXIT_ERROR = 2
EXIT_USAGE = EXIT_ERROR
EXIT_STORE = 3
EXIT_KEY = 4
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
#: Like a process killed by SIGPIPE: 128 + 13.
EXIT_BROKEN_PIPE = 141

#: Words of SQLite's messages that mean the file is not a sound database.
_SQLITE_CORRUPTED = ("not a database", "malformed", "corrupt")


class CliError(Exception):
    """An expected failure the command itself detects (a bad option, a missing store…).

    ``transient``: waiting may cure it (a server that does not answer yet), so a worker
    that waits for its store tries again.
    """

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.transient = code, message, transient


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__("usage", message)


def exit_status(code: str) -> int:
    if code.startswith("cipher_key"):
        return EXIT_KEY
    if code.startswith(("store_", "read_models_")):
        return EXIT_STORE
    if code == "internal_error":
        return EXIT_INTERNAL
    return EXIT_ERROR


def fail(code: str, message: str) -> int:
    """Print the one line of a failure (secrets masked) and return its exit status."""
    line = " ".join(f"error [{code}]: {message}".split())  # one line, whatever the message holds
    print(mask(line), file=sys.stderr)
    return exit_status(code)


def describe(error: BaseException) -> tuple[str, str] | None:
    """``(code, message)`` for an expected failure; ``None`` for a bug."""
    if isinstance(error, (CliError, EcomcoreError)):
        return error.code, error.message
    for cause in _chain(error):
        if isinstance(cause, sqlite3.DatabaseError):
            text = first_line(cause)
            corrupted = any(word in text.lower() for word in _SQLITE_CORRUPTED)
            if corrupted:
                return "store_corrupted", f"the SQLite file is damaged or not a database: {text}"
            return "store_unavailable", f"SQLite: {text}"
        if type(cause).__name__ == "InvalidTag" and type(cause).__module__.startswith("cryptography"):
            return "cipher_key_mismatch", "the cipher key does not decrypt this store's events"
    if _is_database_fault(error):
        return "store_unavailable", describe_cause(error)
    return None


def _is_database_fault(error: BaseException) -> bool:
    """A fault of the database or the connection to it (the library's, SQLAlchemy's or the driver's)."""
    from eventsourcing.persistence import PersistenceError
    from sqlalchemy.exc import SQLAlchemyError

    for cause in _chain(error):
        if isinstance(cause, (PersistenceError, SQLAlchemyError)):
            return True
        if type(cause).__module__.split(".")[0] in ("psycopg", "psycopg_pool"):
            return True
    return False


def describe_cause(error: BaseException) -> str:
    """One line: the driver's error (inside SQLAlchemy's or the library's) and its first line, no SQL."""
    shown = error
    for cause in _chain(error):
        original = getattr(cause, "orig", None)
        if isinstance(original, BaseException):
            shown = original
            break
        if type(cause).__module__.split(".")[0] in ("psycopg", "psycopg_pool", "sqlite3"):
            shown = cause
            break
    return f"{type(shown).__name__}: {first_line(shown)}"


def first_line(error: BaseException) -> str:
    text = (error.message if isinstance(error, EcomcoreError) else str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
