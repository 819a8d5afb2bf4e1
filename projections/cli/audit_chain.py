"""``ecomcore audit seal|verify``: tamper evidence (see :mod:`ecomcore_projections.audit.chain`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ecomcore_projections.audit.chain import Head, TamperEvidenceUnavailable, VerifyReport, seal, verify
from ecomcore_projections.cli.failures import EXIT_DIFFERENCES, EXIT_OK
from ecomcore_projections.cli.options import option, whole_number
from ecomcore_projections.cli.stores import (
    close_read_models,
    load_settings,
    open_read_models,
    open_store,
    read_models_url,
)
from ecomcore_projections.progress import ProgressReporter

MAX_BATCH_SIZE = 100_000


def add_chain_commands(audit_commands: argparse._SubParsersAction) -> None:
    """Add ``seal`` and ``verify`` to the ``audit`` group (being built)."""
    sealing = audit_commands.add_parser(
        "seal", help="extend the hash chain over the stored events and print its head, for an auditor to keep"
    )
    _batch_size(sealing)
    sealing.set_defaults(command=run_seal)

    verifying = audit_commands.add_parser(
        "verify",
        help="recompute the hash chain, check versions, read models and reconciliation; "
             "exit 1 naming the first event tampered with",
    )
    option(verifying, "--against", env="AUDIT_AGAINST", metavar="POSITION:HASH", type=_head,
           help="a head printed by `ecomcore audit seal` and kept outside the system: the history up to it "
                "must still hash to it")
    _batch_size(verifying)
    verifying.set_defaults(command=run_verify)


def _head(text: str) -> Head:
    try:
        return Head.parse(text)
    except TamperEvidenceUnavailable as error:
        raise argparse.ArgumentTypeError(error.message) from None


def _batch_size(parser: argparse.ArgumentParser) -> None:
    option(parser, "--batch-size", env="BATCH_SIZE", metavar="N", type=whole_number(1, MAX_BATCH_SIZE),
           default=1000, help=f"events per batch, 1 to {MAX_BATCH_SIZE:,} (default 1000)")


def run_seal(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    store = open_store(settings, must_exist=True)
    try:
        with ProgressReporter() as progress:
            report = seal(store, batch_size=args.batch_size, progress=progress)
    finally:
        store.close()
    head = report.head
    if args.json:
        print(json.dumps({"sealed": report.sealed, "head": head.as_json() if head else None}, indent=2))
        return EXIT_OK
    if head is None:
        print("nothing to seal: the store holds no events")
        return EXIT_OK
    print(f"sealed {report.sealed} event(s); the chain's head is notification {head.position}")
    print(f"  head: {head}")
    print(f"keep it outside the system; later: ecomcore audit verify --against {head}")
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    store = open_store(settings, must_exist=True)
    try:
        read_models = open_read_models(read_models_url(args, settings.store_url), settings, create_tables=False)
        try:
            with ProgressReporter() as progress:
                report = verify(store, read_models, against=args.against, batch_size=args.batch_size,
                                progress=progress)
        finally:
            close_read_models(read_models)
    finally:
        store.close()
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    else:
        _print(report)
    return EXIT_OK if report.ok else EXIT_DIFFERENCES


def _as_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "events": report.events,
        "sealed_head": report.sealed_head.as_json() if report.sealed_head else None,
        "against": report.against.as_json() if report.against else None,
        "not_sealed_yet": report.unsealed,
        "read_models_checked": report.read_models_checked,
        "first": report.first.as_json() if report.first else None,
        "problems": [problem.as_json() for problem in report.problems],
    }


def _print(report: VerifyReport) -> None:
    sealed = f"sealed up to {report.sealed_head}" if report.sealed_head else "never sealed (run `ecomcore audit seal`)"
    print(f"chain: {report.events} event(s) read, {sealed}")
    if report.against is not None:
        print(f"  against the head kept earlier: {report.against}")
    if report.unsealed:
        print(f"  {report.unsealed} event(s) not sealed yet (not covered until `ecomcore audit seal`)")
    if report.read_models_checked:
        print(f"read models compared with a rebuild: {', '.join(report.read_models_checked)}")
    else:
        print("read models: none to check")
    if report.ok:
        print("verified: no event altered, removed, inserted or reordered; versions gapless")
        return
    assert report.first is not None
    print(f"TAMPERED: {report.first}")
    for problem in report.problems[1:]:
        print(f"  also: {problem}")
