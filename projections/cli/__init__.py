"""The ``ecomcore`` command line: the core's commands and the read side's projector workers.

    ecomcore demo    [--store URL] [--orders N] [--seed S] [--read-models URL] [--no-projections]
    ecomcore sweep   [--store URL] [--now ISO8601]
    ecomcore project [--store URL] [--read-models URL] [--only NAME] (--until-caught-up | --follow)
    ecomcore rebuild [NAME | --all] [--check] [--store URL] [--read-models URL]
    ecomcore status  [--store URL] [--read-models URL] [--json] [--max-lag EVENTS]

Every command takes ``--log-level``. The store defaults to ``ECOMCORE_STORE_URL`` (else
``sqlite:///ecomcore.sqlite``), the read models to ``ECOMCORE_READ_MODELS_URL`` (else the
store's own database). Expected failures (a bad store URL, a refused command, an event a
projection cannot apply) print ``error [code]: message`` on stderr and exit with status 2,
without a traceback; ``rebuild --check`` and ``status --max-lag`` exit 1 when they find a
difference or a lag.

This is the one command-line module, in the outermost package: it uses the core's public
API and the read side; the core never imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from eventsourcing.persistence import PersistenceError
from sqlalchemy.exc import SQLAlchemyError

from ecomcore import EcomcoreError
from ecomcore_projections.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    LOG_LEVELS,
    READ_MODELS_HELP,
    STORE_HELP,
    configure_logging,
    env_number,
    fail,
    first_line,
    log,
    moment,
    seconds,
    store_options,
    whole_number,
)
from ecomcore_projections.cli.trading import run_demo, run_sweep
from ecomcore_projections.cli.workers import run_project, run_rebuild, run_status
from ecomcore_projections.runner import REGISTRY


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has already reported
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    configure_logging(args.log_level)
    try:
        return int(args.command(args))
    except EcomcoreError as error:
        log.debug("%s", error.code, exc_info=True)
        return fail(error.code, error.message)
    except (PersistenceError, SQLAlchemyError) as error:
        # The store could not be opened or reached: the user's to fix, not a bug.
        log.debug("store_unavailable", exc_info=True)
        return fail("store_unavailable", first_line(error))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output stopped (`ecomcore status | head`): nothing more to say.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecomcore", description="The event-sourced core of an e-commerce back office."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a simulated trading day and print what happened")
    demo.add_argument("--store", metavar="URL", help=STORE_HELP)
    demo.add_argument("--orders", metavar="N", type=whole_number(1), default=200,
                      help="checkout attempts in the day (default %(default)s)")
    demo.add_argument("--seed", metavar="S", type=int, default=7,
                      help="random seed: on a fresh store the same seed gives the same day (default %(default)s)")
    demo.add_argument("--read-models", metavar="URL", help=READ_MODELS_HELP)
    demo.add_argument("--no-projections", action="store_true",
                      help="only trade: leave the read models for a projector worker")
    demo.set_defaults(command=run_demo)

    sweep = commands.add_parser("sweep", help="expire overdue checkouts and coupons, complete orders, once")
    sweep.add_argument("--store", metavar="URL", help=STORE_HELP)
    sweep.add_argument("--now", metavar="ISO8601", type=moment, default=None,
                       help="the moment to sweep as of, ISO 8601 (naive means UTC; default: the system clock)")
    sweep.set_defaults(command=run_sweep)

    poll, batch_size = env_number("POLL", 0.5), int(env_number("BATCH_SIZE", 1000))
    project = commands.add_parser("project", help="run projector workers: catch up, or follow the event log")
    store_options(project)
    project.add_argument("--only", metavar="NAME", choices=sorted(REGISTRY), help="one projection")
    mode = project.add_mutually_exclusive_group(required=True)
    mode.add_argument("--until-caught-up", action="store_true", help="apply everything up to the head, then stop")
    mode.add_argument("--follow", action="store_true", help="keep following until interrupted (SIGINT/SIGTERM)")
    project.add_argument("--poll", metavar="SECONDS", type=seconds, default=poll,
                         help="poll interval when idle (default: $ECOMCORE_POLL, else 0.5)")
    project.add_argument("--batch-size", metavar="N", type=whole_number(1), default=batch_size,
                         help="events per batch and transaction (default: $ECOMCORE_BATCH_SIZE, else 1000)")
    project.add_argument("--log-interval", metavar="SECONDS", type=seconds, default=env_number("LOG_INTERVAL", 10.0),
                         help="log progress at most this often (default: $ECOMCORE_LOG_INTERVAL, else 10)")
    project.add_argument("--give-up-after", metavar="SECONDS", type=seconds,
                         default=env_number("GIVE_UP_AFTER", 60.0),
                         help="with --until-caught-up: give up after this long unable to reach a database "
                              "(default: $ECOMCORE_GIVE_UP_AFTER, else 60); --follow never gives up")
    project.set_defaults(command=run_project)

    rebuild_ = commands.add_parser("rebuild", help="rebuild read models from zero (shadow tables, swapped in)")
    rebuild_.add_argument("name", nargs="?", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    rebuild_.add_argument("--all", action="store_true", help="every projection")
    rebuild_.add_argument("--check", action="store_true",
                          help="compare a rebuild with the live tables, print differences, exit 1 if any")
    store_options(rebuild_)
    rebuild_.add_argument("--batch-size", metavar="N", type=whole_number(1), default=batch_size)
    rebuild_.set_defaults(command=run_rebuild)

    status = commands.add_parser("status", help="each projection's position, lag and schema version")
    store_options(status)
    status.add_argument("--json", action="store_true", help="print JSON for machines")
    status.add_argument("--max-lag", metavar="EVENTS", type=whole_number(0), default=None,
                        help="exit 1 if any projection is more than EVENTS behind (or its schema is out of date)")
    status.set_defaults(command=run_status)

    for command in commands.choices.values():
        command.add_argument(
            "--log-level", choices=LOG_LEVELS, default=None,
            help="how much to log on stderr (default: $ECOMCORE_LOG_LEVEL, else info; debug adds tracebacks)",
        )
    return parser


__all__ = ["build_parser", "main"]
