"""The read side's commands: ``project`` (projector workers), ``status`` and ``rebuild``."""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict

from ecomcore_projections.base import describe_cause
from ecomcore_projections.cli.common import (
    EXIT_DIFFERENCES,
    EXIT_OK,
    fail,
    open_store_and_read_models,
    stop_on_signals,
)
from ecomcore_projections.faults import is_transient
from ecomcore_projections.progress import ProgressReporter
from ecomcore_projections.rebuild import rebuild
from ecomcore_projections.runner import Projector


def run_project(args: argparse.Namespace) -> int:
    stop = threading.Event()
    stop_on_signals(stop)
    store, read_models = open_store_and_read_models(args, create_tables=False, stop=stop,
                               wait_for=None if args.follow else args.give_up_after)
    try:
        projector = Projector(store, read_models, names=[args.only] if args.only else None,
                              batch_size=args.batch_size, log_interval=args.log_interval)
        started = time.monotonic()
        if args.until_caught_up:
            applied = projector.run(stop, give_up_after=args.give_up_after, create_tables=True)
        else:
            applied = projector.run(stop, follow=True, poll_interval=args.poll, create_tables=True)
        elapsed = time.monotonic() - started
        print(f"applied {applied} events in {elapsed:.1f} s")
        try:
            lags = projector.lag()
        except Exception as error:
            if not is_transient(error):
                raise
            print(f"  lag unknown: {describe_cause(error)}")  # stopped while a database is down
            return EXIT_OK
        for lag in lags:
            print(f"  {lag.name:<16} position {lag.position:>9}  behind {lag.events_behind:>7} events"
                  f"  {lag.seconds_behind:>8.1f} s")
        return EXIT_OK
    finally:
        read_models.dispose()
        store.close()


def run_status(args: argparse.Namespace) -> int:
    store, read_models = open_store_and_read_models(args, create_tables=False)
    try:
        statuses = Projector(store, read_models).status()
    finally:
        read_models.dispose()
        store.close()
    unhealthy = args.max_lag is not None and any(
        s.events_behind > args.max_lag or not s.schema_ok for s in statuses
    )
    if args.json:
        print(json.dumps(
            {
                "projections": [{**asdict(s), "schema_ok": s.schema_ok} for s in statuses],
                "max_lag": args.max_lag,
                "healthy": not unhealthy,
            },
            indent=2,
        ))
    else:
        print(f"{'projection':<16}{'position':>10}{'head':>10}{'behind':>9}{'seconds':>10}  schema")
        for s in statuses:
            schema = f"v{s.schema_version}" if s.schema_version is not None else "not started"
            if not s.schema_ok:
                schema += f" (needs v{s.expected_schema_version}: run `ecomcore rebuild {s.name}`)"
            print(f"{s.name:<16}{s.position:>10}{s.head:>10}{s.events_behind:>9}{s.seconds_behind:>10.1f}  {schema}")
    return EXIT_DIFFERENCES if unhealthy else EXIT_OK


def run_rebuild(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        return fail("invalid_command", "name one projection, or pass --all")
    store, read_models = open_store_and_read_models(args)
    try:
        names = list(read_models.classes) if args.all else [args.name]
        read_models.projection_class(names[0])
        with ProgressReporter() as progress:
            reports = [
                rebuild(store, read_models, name, check=args.check, batch_size=args.batch_size, progress=progress)
                for name in names
            ]
        failed = False
        for report in reports:
            if not args.check:
                print(f"rebuilt {report.name}: {report.events} events, position {report.position}")
            elif report.differences:
                failed = True
                print(f"{report.name}: {len(report.differences)} difference(s) at position {report.position}")
                for difference in report.differences[:50]:
                    print(f"  {difference}")
            else:
                print(f"{report.name}: live tables equal a rebuild from zero (position {report.position})")
        return EXIT_DIFFERENCES if failed else EXIT_OK
    finally:
        read_models.dispose()
        store.close()
