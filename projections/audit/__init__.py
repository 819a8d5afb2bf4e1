"""Audits: history as of any moment, refunds explained, tamper evidence, statement matching.

Built on the core's public API and the stored history only (``ecomcore`` and the event
store's recorder), beside the read side; the ``ecomcore audit …`` and ``ecomcore
reconcile`` commands in ``ecomcore_projections.cli`` print what these functions return.
"""

from ecomcore_projections.audit.chain import seal, verify
from ecomcore_projections.audit.history import order_story
from ecomcore_projections.audit.refund import explain_refunds
from ecomcore_projections.audit.statement import match_statement, read_statement
from ecomcore_projections.audit.stock import stock_as_of

__all__ = ["explain_refunds", "match_statement", "order_story", "read_statement", "seal", "stock_as_of", "verify"]
