"""Fixtures of the read-model tests: the read models in the store's own database, the
projector that fills them from the shop's store, and the queries that read them.

A module that tests one read model overrides ``queries_class`` with that read model's
``Queries`` subclass: ``read_models`` and ``projector`` then hold only its projection
(``queries_class.projection``).  Otherwise they hold every projection.  Read models are
SQL tables, so these tests run on SQLite and PostgreSQL (the default stores).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecomcore import Shop
from ecomcore_projections.base import Queries
from ecomcore_projections.runner import Projector, ReadModels


@pytest.fixture
def queries_class() -> type[Queries] | None:
    """The read model under test; ``None``: all of them."""
    return None


@pytest.fixture
def read_models(store_url: str, queries_class: type[Queries] | None) -> Iterator[ReadModels]:
    """The live tables, created in the store's database."""
    projections = None if queries_class is None else {queries_class.projection.name: queries_class.projection}
    read_models = ReadModels(store_url, projections=projections)
    yield read_models
    read_models.dispose()


@pytest.fixture
def projector(shop: Shop, read_models: ReadModels, queries_class: type[Queries] | None) -> Projector:
    """Applies the shop's stored events to the read models under test."""
    names = None if queries_class is None else [queries_class.projection.name]
    return Projector(shop.store, read_models, names=names)


@pytest.fixture
def queries(read_models: ReadModels, queries_class: type[Queries] | None) -> Queries:
    """The queries of the read model under test, over its live tables."""
    assert queries_class is not None, "override queries_class with the read model's Queries class"
    return queries_class(read_models.engine, read_models.tables[queries_class.projection.name])
