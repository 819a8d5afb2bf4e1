"""Options that are also environment variables, the types that validate them, and a parser
whose usage errors are one ``error [usage]: …`` line like every other failure.

Each option is declared with the ``ECOMCORE_…`` variable that sets it when the command line
does not: the command line wins, then the environment, then the default. A value from the
environment is validated exactly like the same value given as an option.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from ecomcore_projections.cli.failures import UsageError

LOG_LEVELS = ("debug", "info", "warning", "error")
#: The largest whole number an option takes unless it says otherwise (a signed 64-bit integer).
MAX_WHOLE = 2**63 - 1
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


@dataclass(frozen=True)
class EnvOption:
    dest: str
    env: str
    parse: Callable[[str], Any]
    default: Any


def option(
    parser: argparse.ArgumentParser,
    *flags: str,
    env: str,
    type: Callable[[str], Any] | None = None,
    default: Any = None,
    help: str,
    **kwargs: Any,
) -> None:
    """Add an option that ``$ECOMCORE_<env>`` sets when the command line does not (``type``
    None: a flag, whose variable is ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``)."""
    variable = f"ECOMCORE_{env}"
    shown = f"{help} [env: {variable}]"
    if type is None:
        action = parser.add_argument(*flags, action="store_true", default=None, help=shown)
    else:
        action = parser.add_argument(*flags, type=type, default=None, help=shown, **kwargs)
    if type is None:
        action.default = None  # store_true's default would hide whether the flag was given
    from_environment(parser, action.dest, env, type or flag, bool(default) if type is None else default)


def from_environment(
    parser: argparse.ArgumentParser, dest: str, env: str, parse: Callable[[str], Any], default: Any
) -> None:
    """Let ``$ECOMCORE_<env>`` (read with ``parse``) set ``dest`` when the command line does not."""
    specs: list[EnvOption] = parser.get_default("env_options") or []
    specs.append(EnvOption(dest, f"ECOMCORE_{env}", parse, default))
    parser.set_defaults(env_options=specs)


def apply_environment(args: argparse.Namespace) -> None:
    """Fill each option the command line left out from its variable, else its default;
    ``args.from_environment``: the variables that gave a value."""
    args.from_environment = set()
    for spec in getattr(args, "env_options", None) or []:
        if getattr(args, spec.dest) is not None:
            continue
        raw = os.environ.get(spec.env, "").strip()
        if not raw:
            setattr(args, spec.dest, spec.default)
            continue
        try:
            value = spec.parse(raw)
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"{spec.env}: {error}") from None
        setattr(args, spec.dest, value)
        args.from_environment.add(spec.env)


# --------------------------------------------------------------------------- types


def flag(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is neither 1/true/yes/on nor 0/false/no/off")


def whole_number(minimum: int, maximum: int = MAX_WHOLE) -> Callable[[str], int]:
    """A whole number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum:,} to {maximum:,}, got {_shown(text)}")
        return value

    return parse


def seconds(maximum: float) -> Callable[[str], float]:
    """A positive, finite number of seconds up to ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not a number of seconds") from None
        if not (math.isfinite(value) and 0 < value <= maximum):
            raise argparse.ArgumentTypeError(f"must be more than 0 and at most {maximum:g} seconds, got {_shown(text)}")
        return value

    return parse


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not one of {', '.join(choices)}")
        return text

    return parse


def moment(text: str) -> datetime:
    """An ISO 8601 date and time; a naive one means UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not an ISO 8601 date and time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _shown(text: str) -> str:
    """The value as the message shows it: quoted, and cut short if long."""
    return repr(text if len(text) <= 40 else text[:40] + "…")
