"""``ecomcore audit …``: one command group, its subcommands defined by the modules that do the work."""

from __future__ import annotations

import argparse

from ecomcore_projections.cli.audit_chain import add_chain_commands
from ecomcore_projections.cli.audit_history import add_history_commands


def add_audit_commands(commands: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """Add ``audit`` and its subcommands; returns the subcommands' parsers (they take the common options)."""
    audit = commands.add_parser("audit", help="replay history to answer an auditor: orders, stock, refunds, tampering")
    audit_commands = audit.add_subparsers(title="audit commands", required=True, metavar="AUDIT")
    add_history_commands(audit_commands)
    add_chain_commands(audit_commands)
    return list(audit_commands.choices.values())
