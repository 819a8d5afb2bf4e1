"""Audits: history as of any moment, refunds explained, tamper evidence, statement matching.

Built on the core's public API and the stored history only (``ecomcore`` and the event
store's recorder), beside the read side; the ``ecomcore audit …`` and ``ecomcore
reconcile`` commands in ``ecomcore_projections.cli`` print what these functions return.
"""
