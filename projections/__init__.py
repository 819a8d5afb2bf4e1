"""Read models (CQRS projections) of ecomcore, imported as ``ecomcore_projections``.

Projections depend on :mod:`ecomcore`; the domain never imports them.
"""

from ecomcore_projections.base import (
    MixedSources,
    Projection,
    ProjectionFailed,
    ProjectionInconsistency,
    Queries,
    ReadModelError,
    SchemaMismatch,
    TopicRewound,
    UnknownProjection,
    handles,
)
from ecomcore_projections.order_status import OrderStatusProjection, OrderStatusQueries
from ecomcore_projections.rebuild import RebuildReport, rebuild
from ecomcore_projections.reconciliation import (
    ReconciliationProjection,
    ReconciliationQueries,
)
from ecomcore_projections.rows import Batch
from ecomcore_projections.runner import (
    REGISTRY,
    Lag,
    Projector,
    ReadModels,
    ReadModelsUnavailable,
    Status,
    registered,
)
from ecomcore_projections.stock import StockProjection, StockQueries

__all__ = [
    "REGISTRY",
    "Batch",
    "Lag",
    "MixedSources",
    "OrderStatusProjection",
    "OrderStatusQueries",
    "Projection",
    "ProjectionFailed",
    "ProjectionInconsistency",
    "Projector",
    "Queries",
    "ReadModelError",
    "ReadModels",
    "ReadModelsUnavailable",
    "RebuildReport",
    "ReconciliationProjection",
    "ReconciliationQueries",
    "SchemaMismatch",
    "Status",
    "StockProjection",
    "StockQueries",
    "TopicRewound",
    "UnknownProjection",
    "handles",
    "rebuild",
    "registered",
]
