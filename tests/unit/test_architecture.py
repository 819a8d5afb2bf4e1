"""Dependency rules, checked on the imports each module's source names (parsed with ``ast``).

1. The domain is pure: no persistence, messaging or outer layer (``DOMAIN_FORBIDDEN``).
2. The application reaches the event-sourcing library only through the infrastructure:
   no module under ``application/`` imports ``eventsourcing``.
3. The core never imports the read side (``ecomcore_projections``).
4. The read side (``projections/``, the command line included) imports only the core's
   public API, as defined by ``is_public_api`` (the rule is written out there).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "ecomcore"
READ_SIDE = ROOT / "projections"

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
    """``{path: [forbidden modules it imports]}`` for the modules under ``directory`` in the core."""
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


def test_application_reaches_the_event_sourcing_library_only_through_the_infrastructure() -> None:
    """No module of the application imports ``eventsourcing``; what it needs of the library
    (the store, its errors, topics) comes wrapped by ``ecomcore.infrastructure``."""
    assert list((SRC / "application").rglob("*.py")), "found no application modules to check"
    assert violations(SRC / "application", ["eventsourcing"]) == {}


# --------------------------------------------------------------------------- the core's public API

#: The infrastructure a read side needs to open what it reads: the store and its settings,
#: and the store URL as SQLAlchemy spells it. Nothing else of ``ecomcore.infrastructure``.
INFRASTRUCTURE_ENTRY_POINTS = {
    "ecomcore.infrastructure.store": {"EventStore"},
    "ecomcore.infrastructure.settings": {"Settings", "DEFAULT_STORE_URL"},
    "ecomcore.infrastructure.catalogue": {"sqlalchemy_url"},
}


def is_public_api(module: str, name: str | None) -> bool:
    """Whether ``from module import name`` (``name`` None: ``import module``) uses only the
    core's public API. The rule:

    - only ``from … import name`` names something of the core: a plain ``import ecomcore…``
      would let any attribute, private ones included, be reached unchecked;
    - a core *package* that declares ``__all__`` (the root ``ecomcore``, ``ecomcore.simulation``)
      publishes exactly the names listed there;
    - a module of ``ecomcore.domain`` (the published language: aggregates, their events, value
      types and pure rules, which projections fold) publishes its ``__all__`` if it has one,
      else every name without a leading underscore that it has;
    - ``ecomcore.infrastructure`` publishes only ``INFRASTRUCTURE_ENTRY_POINTS``;
    - nothing else: not ``ecomcore.application`` (``Shop`` and its receipts come from the
      root), nor a private module behind a package's ``__all__``;
    - and a name that is a module is not a name of the API (import the names you use).
    """
    if name is None:
        return False
    if module in INFRASTRUCTURE_ENTRY_POINTS:
        return name in INFRASTRUCTURE_ENTRY_POINTS[module]
    is_domain_module = module.startswith("ecomcore.domain.")
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return False
    is_published_package = hasattr(loaded, "__path__") and hasattr(loaded, "__all__")
    if not (is_domain_module or is_published_package) or not hasattr(loaded, name):
        return False
    if inspect.ismodule(getattr(loaded, name)):
        return False
    published = getattr(loaded, "__all__", None)
    return name in published if published is not None else not name.startswith("_")


def core_imports(source: str, package: str = "") -> Iterator[tuple[str, str | None]]:
    """``(module, name)`` for each name imported from the core (``name`` None for ``import module``)."""
    def is_core(module: str) -> bool:
        return module == "ecomcore" or module.startswith("ecomcore.")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names if is_core(alias.name))
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if is_core(module):
                yield from ((module, alias.name) for alias in node.names)


def non_public_imports(source: str, package: str = "") -> list[str]:
    """The core imports in ``source`` that reach past the core's public API, as ``module:name``."""
    return sorted(
        f"{module}:{name}" if name else module
        for module, name in core_imports(source, package)
        if not is_public_api(module, name)
    )


def test_the_read_side_imports_only_the_public_api_of_the_core() -> None:
    """Every module of the projections, the command line included, imports from the core only
    names of its public API (see ``is_public_api``)."""
    modules = sorted(READ_SIDE.rglob("*.py"))
    assert modules, "found no read-side modules to check"
    found = {
        str(path.relative_to(ROOT)): non_public_imports(path.read_text(encoding="utf-8"), "ecomcore_projections")
        for path in modules
    }
    assert {path: names for path, names in found.items() if names} == {}


@pytest.mark.parametrize(
    "source",
    [
        "from ecomcore import Shop, EcomcoreError",
        "from ecomcore.simulation import simulate_trading_day",
        "from ecomcore.domain.order import Order, OrderState",
        "from ecomcore.domain.money import format_amount",
        "from ecomcore.infrastructure.store import EventStore",
        "from ecomcore.infrastructure.settings import DEFAULT_STORE_URL",
        "from .base import Projection",
        "from ecomcore_projections.runner import Projector",
        "import sqlalchemy",
    ],
)
def test_public_api_checker_allows_the_published_names(source: str) -> None:
    """The root's and a published package's ``__all__``, the domain's public names, the
    infrastructure entry points, and anything outside the core are allowed."""
    assert non_public_imports(source, "ecomcore_projections") == []


@pytest.mark.parametrize(
    "source",
    [
        "from ecomcore.application.shop import Shop",
        "from ecomcore.infrastructure.clock import ManualClock",
        "from ecomcore.infrastructure.store import StoreUrlError",
        "from ecomcore.simulation.summary import DayTally",
        "from ecomcore.domain.aggregate import _OWNERS",
        "from ecomcore.domain.pricing import Amount",
        "from ecomcore.domain import order",
        "from ecomcore import application",
        "from ecomcore import NoSuchName",
        "from ecomcore.nosuch import Anything",
        "import ecomcore.domain.order",
        "import ecomcore",
        "def f():\n    from ecomcore.application import commands\n",
    ],
)
def test_public_api_checker_catches_reaching_past_it(source: str) -> None:
    """Application modules, other infrastructure, a package's private modules, underscore
    names, names left out of a module's ``__all__``, modules as names and plain imports are flagged."""
    assert non_public_imports(source, "ecomcore_projections") != []


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
