"""The ``ecomcore`` command line: the core's commands and the read side's projector workers.

    ecomcore demo    [--orders N] [--seed S] [--no-projections]
    ecomcore sweep   [--now ISO8601]
    ecomcore project (--until-caught-up | --follow) [--only NAME] [--poll S] [--batch-size N] …
    ecomcore rebuild (NAME | --all) [--check] [--batch-size N]
    ecomcore status  [--max-lag EVENTS]
    ecomcore reconcile [--day DATE] [--statement FILE] [--snapshot LABEL]
    ecomcore audit order ORDER_ID [--as-of TIME] | stock SKU --as-of TIME | refund ORDER_ID
    ecomcore audit seal | verify [--against POSITION:HASH]
    ecomcore relay --kafka HOST:PORT [--topic NAME] [--partitions N] (--until-caught-up | --follow)
    ecomcore --version

Every command takes ``--store URL``, ``--connect-timeout SECONDS``, ``--json`` and
``--log-level LEVEL`` (all but ``sweep`` also ``--read-models URL``); every option is
also an ``ECOMCORE_…`` environment variable (``--help`` names it), the command line
winning. Every expected failure is one line ``error [code]: message`` on stderr, with an
exit status that follows from its code (see :mod:`.failures`), no traceback (``--log-level
debug`` logs it) and no password or key: they are masked in every line printed or logged.

This is the one command-line package, in the outermost layer: it uses the core's public
API and the read side; the core never imports it (``python -m ecomcore`` finds it through
the package's ``ecomcore`` entry point).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ecomcore_projections.cli.common import configure_logging, log
from ecomcore_projections.cli.failures import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    describe,
    fail,
    first_line,
)
from ecomcore_projections.cli.masking import remember_environment_secrets
from ecomcore_projections.cli.options import apply_environment
from ecomcore_projections.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status: the one place where failures become lines."""
    remember_environment_secrets()
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help or --version, printed already
            sys.stdout.flush()
            return exit_.code if isinstance(exit_.code, int) else EXIT_OK
        apply_environment(args)
        configure_logging(args.log_level)
        status = int(args.command(args))
        sys.stdout.flush()  # here, so that a reader gone away is noticed here
        return status
    except BrokenPipeError:
        # Whoever read our output stopped (`ecomcore status | head -1`): nothing more to say.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        fail("interrupted", "interrupted (SIGINT)")
        return EXIT_INTERRUPTED
    except Exception as error:
        described = describe(error)
        if described is None:
            log.debug("internal error", exc_info=True)
            return fail(
                "internal_error",
                f"{type(error).__name__}: {first_line(error)} — a bug in ecomcore; "
                "run again with --log-level debug for the traceback",
            )
        code, message = described
        log.debug("%s", code, exc_info=True)
        return fail(code, message)


def _silence_stdout() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (captured in-process)
        pass


__all__ = ["build_parser", "main"]
