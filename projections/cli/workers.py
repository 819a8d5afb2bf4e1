"""The read side's commands: ``project`` (projector workers), ``status`` and ``rebuild``."""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from ecomcore import Settings
from ecomcore.infrastructure.store import EventStore
from ecomcore_projections.base import UnknownProjection, describe_cause
from ecomcore_projections.cli.common import stop_on_signals, worker_log
from ecomcore_projections.cli.failures import EXIT_DIFFERENCES, EXIT_OK, CliError, UsageError
from ecomcore_projections.cli.stores import (
    close_read_models,
    load_settings,
    open_read_models,
    open_store,
    read_models_url,
)
from ecomcore_projections.faults import is_transient
from ecomcore_projections.kafka.consumer import DEFAULT_SESSION_TIMEOUT_MS, KafkaProjector
from ecomcore_projections.kafka.relay import is_kafka_fault
from ecomcore_projections.progress import ProgressReporter
from ecomcore_projections.read_models import ReadModels
from ecomcore_projections.rebuild import Snapshot, rebuild, rebuild_as_of
from ecomcore_projections.runner import REGISTRY, Projector

#: Workers notice a PostgreSQL database that went away within about this many seconds a
#: try, unless ``--connect-timeout`` or ``ECOMCORE_POSTGRES_CONNECT_TIMEOUT_S`` says otherwise.
WORKER_CONNECT_TIMEOUT_S = 1


@contextlib.contextmanager
def _databases(
    args: argparse.Namespace, settings: Settings, *, create_tables: bool = False, must_exist: bool = False,
    **store_options: Any,
) -> Iterator[tuple[EventStore, ReadModels]]:
    """The store and the read-model database a command works on, closed when it is done
    (the store also when the read models cannot be opened)."""
    store = open_store(settings, must_exist=True, **store_options)
    try:
        read_models = open_read_models(read_models_url(args, settings.store_url), settings,
                                       create_tables=create_tables, must_exist=must_exist)
        try:
            yield store, read_models
        finally:
            close_read_models(read_models)
    finally:
        store.close()


def run_project(args: argparse.Namespace) -> int:
    if args.mode is None:
        raise UsageError("give --until-caught-up or --follow, or set ECOMCORE_PROJECT_MODE (see --help)")
    if getattr(args, "source", "store") == "kafka":
        return _run_project_kafka(args)
    follow = args.mode == "follow"
    stop = threading.Event()
    stop_on_signals(stop)
    settings = load_settings(args, connect_timeout=WORKER_CONNECT_TIMEOUT_S)
    with _databases(args, settings, stop=stop, wait_for=None if follow else args.give_up_after,
                    log=worker_log) as (store, read_models):
        projector = Projector(store, read_models, names=[args.only] if args.only else None,
                              batch_size=args.batch_size, log_interval=args.log_interval)
        started = time.monotonic()
        if follow:
            applied = projector.run(stop, follow=True, poll_interval=args.poll, create_tables=True)
        else:
            applied = projector.run(stop, give_up_after=args.give_up_after, create_tables=True)
        elapsed = time.monotonic() - started
        try:
            lags: list[Any] | None = projector.lag()
        except Exception as error:
            if not is_transient(error):
                raise
            lags, unknown = None, describe_cause(error)  # stopped while a database is down
        if args.json:
            print(json.dumps({
                "applied": applied,
                "seconds": round(elapsed, 3),
                "lag": None if lags is None else [asdict(lag) for lag in lags],
            }, indent=2))
            return EXIT_OK
        print(f"applied {applied} events in {elapsed:.1f} s")
        if lags is None:
            print(f"  lag unknown: {unknown}")
        for lag in lags or []:
            print(f"  {lag.name:<16} position {lag.position:>9}  behind {lag.events_behind:>7} events"
                  f"  {lag.seconds_behind:>8.1f} s")
        return EXIT_OK


def _kafka_projector(args: argparse.Namespace, store: Any, read_models: Any, names: list[str] | None) -> KafkaProjector:
    if not args.kafka:
        raise UsageError("--source kafka needs the broker: --kafka HOST:PORT (or ECOMCORE_KAFKA)")
    return KafkaProjector(store, read_models, args.kafka, names, topic=args.topic, group=args.group,
                          batch_size=getattr(args, "batch_size", 1000),
                          session_timeout_ms=getattr(args, "session_timeout", DEFAULT_SESSION_TIMEOUT_MS),
                          log_interval=getattr(args, "log_interval", 10.0))


def _run_project_kafka(args: argparse.Namespace) -> int:
    """``project --source kafka``: one worker of the consumer group ``--group``."""
    follow = args.mode == "follow"
    if not args.kafka:
        raise UsageError("--source kafka needs the broker: --kafka HOST:PORT (or ECOMCORE_KAFKA)")
    stop = threading.Event()
    stop_on_signals(stop)
    settings = load_settings(args, connect_timeout=WORKER_CONNECT_TIMEOUT_S)
    with _databases(args, settings, stop=stop, wait_for=None if follow else args.give_up_after,
                    log=worker_log) as (store, read_models):
        projector = _kafka_projector(args, store, read_models, [args.only] if args.only else None)
        started = time.monotonic()
        applied = projector.run(stop, follow=follow, give_up_after=None if follow else args.give_up_after)
        elapsed = time.monotonic() - started
        try:  # where this worker left every partition (all of them: the group may have moved some)
            lags: list[Any] | None = projector.lag()
            unknown = None
        except Exception as error:
            if not is_transient(error) and not is_kafka_fault(error):
                raise
            lags, unknown = None, describe_cause(error)  # the broker or a database went away meanwhile
    behind = None if lags is None else sum(lag.lag for lag in lags)
    if args.json:
        print(json.dumps({"applied": applied, "seconds": round(elapsed, 3), "topic": args.topic,
                          "group": args.group, "behind": behind,
                          "lag": None if lags is None else [asdict(lag) for lag in lags],
                          **({"lag_unknown": unknown} if unknown else {})}, indent=2))
    else:
        left = f"lag unknown: {unknown}" if lags is None else f"{behind} records behind in all"
        print(f"applied {applied} events from {args.topic} (group {args.group}) in {elapsed:.1f} s; {left}")
    return EXIT_OK


def _run_status_kafka(args: argparse.Namespace) -> int:
    """``status --source kafka``: per projection and partition, the stored position, end offset and lag."""
    settings = load_settings(args, connect_timeout=WORKER_CONNECT_TIMEOUT_S)
    with _databases(args, settings, must_exist=True) as (store, read_models):
        lags = _kafka_projector(args, store, read_models, None).lag()
    unhealthy = args.max_lag is not None and any(lag.lag > args.max_lag for lag in lags)
    if args.json:
        print(json.dumps({"partitions": [asdict(lag) for lag in lags], "topic": args.topic, "group": args.group,
                          "max_lag": args.max_lag, "healthy": not unhealthy}, indent=2))
    else:
        print(f"{'projection':<16}{'partition':>10}{'position':>10}{'end':>10}{'lag':>9}")
        for lag in lags:
            print(f"{lag.projection:<16}{lag.partition:>10}{lag.position:>10}{lag.end_offset:>10}{lag.lag:>9}")
    return EXIT_DIFFERENCES if unhealthy else EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    if getattr(args, "source", "store") == "kafka":
        return _run_status_kafka(args)
    settings = load_settings(args, connect_timeout=WORKER_CONNECT_TIMEOUT_S)
    with _databases(args, settings, must_exist=True) as (store, read_models):
        statuses = Projector(store, read_models).status()
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
    if args.name and args.all and "ECOMCORE_REBUILD_ALL" in _from_environment(args):
        args.all = False  # a name on the command line wins over the environment's --all
    if args.all == bool(args.name):
        raise CliError("invalid_command", "name one projection, or pass --all (see `ecomcore rebuild --help`)")
    if args.name and args.name not in REGISTRY:
        raise UnknownProjection(f"no projection named {args.name!r}; known: {', '.join(REGISTRY)}")
    as_of_given = args.as_of is not None or args.until_position is not None
    if as_of_given or args.into:
        return _rebuild_as_of(args)
    settings = load_settings(args, connect_timeout=WORKER_CONNECT_TIMEOUT_S)
    with _databases(args, settings, create_tables=True, must_exist=args.check) as (store, read_models):
        names = list(read_models.classes) if args.all else [args.name]
        with ProgressReporter() as progress:
            reports = [
                rebuild(store, read_models, name, check=args.check, batch_size=args.batch_size, progress=progress)
                for name in names
            ]
    failed = any(report.differences for report in reports) if args.check else False
    if args.json:
        print(json.dumps({
            "check": bool(args.check),
            "equal": not failed if args.check else None,
            "projections": [
                {
                    "name": report.name,
                    "events": report.events,
                    "position": report.position,
                    **({"differences": [str(d) for d in report.differences]} if args.check else {}),
                }
                for report in reports
            ],
        }, indent=2))
        return EXIT_DIFFERENCES if failed else EXIT_OK
    for report in reports:
        if not args.check:
            print(f"rebuilt {report.name}: {report.events} events, position {report.position}")
        elif report.differences:
            print(f"{report.name}: {len(report.differences)} difference(s) at position {report.position}")
            for difference in report.differences[:50]:
                print(f"  {difference}")
        else:
            print(f"{report.name}: live tables equal a rebuild from zero (position {report.position})")
    return EXIT_DIFFERENCES if failed else EXIT_OK


def _rebuild_as_of(args: argparse.Namespace) -> int:
    """``rebuild NAME --as-of TIME | --until-position N --into LABEL``: a labelled snapshot."""
    if args.check:
        raise UsageError("--check compares the live tables with a rebuild: it takes no --as-of, --until-position "
                         "or --into")
    if args.as_of is not None and args.until_position is not None:
        raise UsageError("give --as-of or --until-position, not both (check ECOMCORE_REBUILD_AS_OF and "
                         "ECOMCORE_REBUILD_UNTIL_POSITION)")
    if not args.into:
        raise UsageError("--as-of and --until-position build a snapshot: name it with --into LABEL")
    if args.as_of is None and args.until_position is None:
        raise UsageError("--into LABEL needs the moment: --as-of TIME or --until-position N")
    settings = load_settings(args, connect_timeout=WORKER_CONNECT_TIMEOUT_S)
    with _databases(args, settings) as (store, read_models):
        names = list(read_models.classes) if args.all else [args.name]
        with ProgressReporter() as progress:
            snapshots = [
                rebuild_as_of(store, read_models, name, args.into, as_of=args.as_of,
                              until_position=args.until_position, batch_size=args.batch_size, progress=progress)
                for name in names
            ]
    if args.json:
        print(json.dumps({"snapshots": [_snapshot_json(s) for s in snapshots]}, indent=2))
        return EXIT_OK
    for s in snapshots:
        moment = f"as of {s.as_of.isoformat()}" if s.as_of is not None else f"until position {s.until_position}"
        print(f"built {s.name} {moment} into snapshot {s.label}: {s.events} events applied, "
              f"read to position {s.position}")
    return EXIT_OK


def _snapshot_json(s: Snapshot) -> dict[str, Any]:
    return {
        "label": s.label,
        "name": s.name,
        "as_of": s.as_of.isoformat() if s.as_of is not None else None,
        "until_position": s.until_position,
        "position": s.position,
        "events": s.events,
        "built_at": s.built_at.isoformat(),
    }


def _from_environment(args: argparse.Namespace) -> set[str]:
    """The variables that gave a value (the command line not)."""
    return set(getattr(args, "from_environment", ()))
