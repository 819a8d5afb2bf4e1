"""``ecomcore audit seal|verify``."""

from __future__ import annotations

import argparse


def add_chain_commands(audit_commands: argparse._SubParsersAction) -> None:
    """Add ``seal`` and ``verify`` to the ``audit`` group (being built)."""
