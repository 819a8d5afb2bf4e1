"""``ecomcore reconcile``: the reconciliation report, and a provider's statement matched against it.

The report (per-merchant settlement, the platform's subsidy, the money at the provider and
the ledger's own checks) comes from the reconciliation read model: the live tables, or a
snapshot built by ``ecomcore rebuild reconciliation --as-of … --into LABEL``.  With
``--statement FILE`` every line of the provider's statement is matched against the
ledger's money (see :mod:`ecomcore_projections.audit.statement`).  Exit status 1 when the
ledger's checks or the matching found anything, 0 when nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import inspect

from ecomcore.domain.money import format_amount
from ecomcore_projections.audit.statement import (
    StatementMatch,
    ledger_money,
    match_statement,
    read_statement,
)
from ecomcore_projections.cli.failures import EXIT_DIFFERENCES, EXIT_OK, CliError
from ecomcore_projections.cli.options import option
from ecomcore_projections.cli.stores import (
    close_read_models,
    load_settings,
    open_read_models,
    open_store,
    read_models_url,
)
from ecomcore_projections.read_models import POSITIONS_TABLE
from ecomcore_projections.rebuild import check_label, snapshot
from ecomcore_projections.reconciliation import Discrepancy, ReconciliationQueries, Settlement

NAME = "reconciliation"
STATEMENT_SUFFIX = ".statement.csv"


def utc_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date YYYY-MM-DD") from None


def label(text: str) -> str:
    try:
        return check_label(text)
    except Exception as error:
        raise argparse.ArgumentTypeError(getattr(error, "message", str(error))) from None


def add_reconcile_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    reconcile = commands.add_parser(
        "reconcile",
        help="the reconciliation report; with --statement, match a payment provider's statement (exit 1 if off)",
    )
    option(reconcile, "--day", env="RECONCILE_DAY", metavar="DATE", type=utc_date,
           help="one UTC day, YYYY-MM-DD (default: every day)")
    option(reconcile, "--statement", env="RECONCILE_STATEMENT", metavar="FILE", type=str,
           help="the provider's statement, CSV with the header transaction_id,kind,amount,time")
    option(reconcile, "--snapshot", env="RECONCILE_SNAPSHOT", metavar="LABEL", type=label,
           help="read the snapshot built by `ecomcore rebuild reconciliation --as-of … --into LABEL` "
                "instead of the live tables")
    reconcile.set_defaults(command=run_reconcile)
    return reconcile


def statement_path(store_url: str) -> Path | None:
    """Where ``ecomcore demo`` writes its provider's statement: beside an SQLite file, in the
    current directory for PostgreSQL (``<database>.statement.csv``), nowhere for memory."""
    parts = urlsplit(store_url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        path = unquote(store_url.split("://", 1)[1]).split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        return Path(path + STATEMENT_SUFFIX)
    if scheme in ("postgres", "postgresql"):
        database = unquote(parts.path.lstrip("/")) or "ecomcore"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in database)
        return Path(safe + STATEMENT_SUFFIX)
    return None


def run_reconcile(args: argparse.Namespace) -> int:
    statement = read_statement(args.statement) if args.statement else None  # refused before any database
    settings = load_settings(args)
    store = open_store(settings, must_exist=True)
    try:
        head = store.recorder.max_notification_id() or 0
        read_models = open_read_models(read_models_url(args, settings.store_url), settings, create_tables=False,
                                       must_exist=True)
    finally:
        store.close()
    try:
        engine = read_models.engine
        if args.snapshot:
            built, tables = snapshot(read_models, args.snapshot, NAME)
            if statement is not None and built.as_of is not None:
                # The ledger as of a moment is matched with the statement's lines up to it.
                statement = [line for line in statement if line.at <= built.as_of]
            source: dict[str, Any] = {
                "snapshot": built.label,
                "as_of": built.as_of.isoformat() if built.as_of else None,
                "until_position": built.until_position,
                "position": built.position,
                "built_at": built.built_at.isoformat(),
            }
        else:
            tables = read_models.tables[NAME]
            found = inspect(engine)
            if not found.has_table(tables["reconciliation_ledger"].name):
                raise CliError("read_models_not_found", "the reconciliation read model has not been built: "
                               "run `ecomcore project --until-caught-up` first")
            position = read_models.position(NAME) if found.has_table(POSITIONS_TABLE) else 0
            source = {"snapshot": None, "position": position, "head": head, "events_behind": max(0, head - position)}
        queries = ReconciliationQueries(engine, tables)
        report = _report(queries, args.day)
        match = (
            match_statement(statement, ledger_money(engine, tables["reconciliation_money_events"], day=args.day),
                            day=args.day)
            if statement is not None else None
        )
    finally:
        close_read_models(read_models)
    checks: list[Discrepancy] = report.pop("checks")
    off = bool(checks) or bool(match and match.discrepancies)
    if args.json:
        print(json.dumps({
            "day": args.day.isoformat() if args.day else None,
            "source": source,
            **report,
            "ledger_checks": [
                {"kind": d.kind.value, "subject": d.subject, "expected": d.expected, "actual": d.actual,
                 "message": d.message} for d in checks
            ],
            "statement": None if match is None else {
                "file": args.statement,
                "lines": match.lines,
                "matched": match.matched,
                "counts": match.counts(),
                "discrepancies": [
                    {"kind": d.kind.value, "transaction_id": d.transaction_id, "direction": d.direction,
                     "statement": d.statement, "ledger": d.ledger, "lines": list(d.lines), "message": d.message}
                    for d in match.discrepancies
                ],
            },
            "discrepancies": len(checks) + (len(match.discrepancies) if match else 0),
        }, indent=2))
    else:
        _print(args, source, report, checks, match, settings.currency)
    return EXIT_DIFFERENCES if off else EXIT_OK


def _report(queries: ReconciliationQueries, day: date | None) -> dict[str, Any]:
    per_merchant: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    settlement: Settlement
    for settlement in queries.settlements(day=day):
        totals = per_merchant[settlement.merchant_id]
        for field in ("goods", "subsidy", "freight", "goods_refunded", "subsidy_reversed", "freight_refunded",
                      "funded_discounts"):
            totals[field] += getattr(settlement, field)
        totals["owed"] += settlement.owed
    money = ledger_money(queries.bind, queries.money_events, day=day)
    provider = {
        "payments": sum(m.amount for (kind, _), m in money.items() if kind == "payment"),
        "payment_transactions": sum(1 for kind, _ in money if kind == "payment"),
        "refunds": sum(m.amount for (kind, _), m in money.items() if kind == "refund"),
        "refund_transactions": sum(1 for kind, _ in money if kind == "refund"),
        "late_payments": sum(m.amount for (kind, _), m in money.items() if kind == "payment" and m.late),
    }
    provider["net"] = provider["payments"] - provider["refunds"]
    checks = queries.discrepancies()
    if day is not None:
        # The day totals are per day; the other checks are per order and over the whole ledger.
        checks = [d for d in checks if not d.subject.startswith("day:") or d.subject.startswith(f"day:{day}")]
    return {
        "settlements": [{"merchant_id": m, **dict(t)} for m, t in sorted(per_merchant.items())],
        "platform_subsidy": sum(t["subsidy"] - t["subsidy_reversed"] for t in per_merchant.values()),
        "provider": provider,
        "checks": checks,
    }


def _print(
    args: argparse.Namespace,
    source: dict[str, Any],
    report: dict[str, Any],
    checks: list[Discrepancy],
    match: StatementMatch | None,
    currency: str,
) -> None:
    def money(amount: int) -> str:
        return format_amount(amount, currency)

    when = f"on {args.day}" if args.day else "all days"
    if source["snapshot"]:
        moment = f"as of {source['as_of']}" if source["as_of"] else f"until position {source['until_position']}"
        print(f"Reconciliation, {when}: snapshot {source['snapshot']} ({moment}, built {source['built_at']})")
    else:
        print(f"Reconciliation, {when}: live read model at position {source['position']} of {source['head']}")
        if source["events_behind"]:
            print(f"  {source['events_behind']} events behind the store: run `ecomcore project --until-caught-up`",
                  file=sys.stderr)
    print("Merchant settlement (owed = goods + subsidy + freight - refunds)")
    if not report["settlements"]:
        print("  none")
    for s in report["settlements"]:
        refunded = s["goods_refunded"] + s["subsidy_reversed"] + s["freight_refunded"]
        print(f"  {s['merchant_id']:<16} owed {money(s['owed']):>16}   goods {money(s['goods'])}, "
              f"subsidy {money(s['subsidy'])}, freight {money(s['freight'])}, refunded {money(refunded)}")
    print(f"Platform subsidy (net of reversals)  {money(report['platform_subsidy'])}")
    p = report["provider"]
    print("Money at the provider")
    print(f"  {'payments':<10}{p['payment_transactions']:>7}  {money(p['payments'])}"
          f" (late, refunded: {money(p['late_payments'])})")
    print(f"  {'refunds':<10}{p['refund_transactions']:>7}  {money(p['refunds'])}")
    print(f"  {'net':<17}  {money(p['net'])}")
    print(f"Ledger checks: {len(checks) or 'none'}")
    for d in checks[:50]:
        print(f"  {d.kind.value}: {d.message}")
    if match is None:
        return
    counts = {kind: n for kind, n in match.counts().items() if n}
    print(f"Statement {args.statement}: {match.lines} lines, {match.matched} matched, "
          f"{len(match.discrepancies)} discrepancies"
          + (f" ({', '.join(f'{kind} {n}' for kind, n in counts.items())})" if counts else ""))
    for d in match.discrepancies:
        print(f"  {d.kind.value}: {d.message}")
