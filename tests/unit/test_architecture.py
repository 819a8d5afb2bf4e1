"""Dependency rules: the domain is pure, and the core never depends on the projections."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "ecomcore"

#: What the pure domain may not import: I/O, persistence and the outer layers.
DOMAIN_FORBIDDEN = (
    "sqlalchemy",
    "kafka",
    "psycopg",
    "eventsourcing.sqlite",
    "eventsourcing.postgres",
    "ecomcore.infrastructure",
    "ecomcore.application",
    "ecomcore_projections",
)


def imported_modules(source: str, package: str = "") -> Iterator[str]:
    """Every module an ``import``/``from … import`` names, including ``from pkg import mod``.

    Relative imports are resolved against ``package`` so ``from ..infrastructure
    import store`` cannot slip past.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # One dot is the package itself, each further dot goes one package up.
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            # ``from eventsourcing import postgres`` imports eventsourcing.postgres.
            yield from (f"{module}.{alias.name}" for alias in node.names)


def forbidden_imports(source: str, forbidden: Iterable[str], package: str = "") -> list[str]:
    """The imported modules that are, or live under, a forbidden module."""
    banned = tuple(forbidden)
    return sorted(
        {
            module
            for module in imported_modules(source, package)
            if any(module == name or module.startswith(name + ".") for name in banned)
        }
    )


def _package_of(path: Path) -> str:
    """The package a module file belongs to, e.g. ``ecomcore.domain``."""
    return ".".join(path.parent.relative_to(SRC.parent).parts)


def violations(directory: Path, forbidden: Iterable[str]) -> dict[str, list[str]]:
    banned = tuple(forbidden)
    found = {
        str(path.relative_to(SRC.parent)): forbidden_imports(
            path.read_text(encoding="utf-8"), banned, package=_package_of(path)
        )
        for path in sorted(directory.rglob("*.py"))
    }
    return {path: modules for path, modules in found.items() if modules}


def test_domain_imports_no_infrastructure() -> None:
    """No module of the domain imports persistence, messaging or an outer layer."""
    assert list((SRC / "domain").rglob("*.py")), "found no domain modules to check"
    assert violations(SRC / "domain", DOMAIN_FORBIDDEN) == {}


def test_core_does_not_import_the_projections() -> None:
    """Projections depend on the core, never the other way round."""
    assert violations(SRC, ["ecomcore_projections"]) == {}


@pytest.mark.parametrize(
    "source",
    [
        "import sqlalchemy",
        "import sqlalchemy.orm as orm",
        "from psycopg import sql",
        "from kafka.producer import KafkaProducer",
        "from eventsourcing import postgres",
        "from eventsourcing.sqlite import SQLiteAggregateRecorder",
        "from ecomcore.infrastructure.store import EventStore",
        "from ecomcore import application",
        "def f():\n    import ecomcore_projections\n",
        "from ..infrastructure import store",
        "from ..application.shop import Shop",
    ],
)
def test_checker_catches_forbidden_imports(source: str) -> None:
    """The checker flags a forbidden import however it is written, relative ones included."""
    assert forbidden_imports(source, DOMAIN_FORBIDDEN, package="ecomcore.domain")


@pytest.mark.parametrize(
    "source",
    [
        "import eventsourcing.domain",
        "from eventsourcing.persistence import IntegrityError",
        "from ecomcore.domain.money import Amount",
        "from . import money",
        "from .pricing import Scope",
        "import kafkaesque",
    ],
)
def test_checker_allows_permitted_imports(source: str) -> None:
    """Pure imports, relative ones within the domain and look-alike names are not flagged."""
    assert forbidden_imports(source, DOMAIN_FORBIDDEN, package="ecomcore.domain") == []
