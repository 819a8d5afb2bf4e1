"""``ecomcore audit order|stock|refund``."""

from __future__ import annotations

import argparse


def add_history_commands(audit_commands: argparse._SubParsersAction) -> None:
    """Add ``order``, ``stock`` and ``refund`` to the ``audit`` group (being built)."""
