"""The commands and their options, each option also an ``ECOMCORE_…`` environment variable."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

from ecomcore_projections.cli.audit import add_audit_commands
from ecomcore_projections.cli.common import READ_MODELS_HELP, STORE_HELP
from ecomcore_projections.cli.options import (
    LOG_LEVELS,
    Parser,
    from_environment,
    moment,
    one_of,
    option,
    seconds,
    whole_number,
)
from ecomcore_projections.cli.reconcile import add_reconcile_command, label
from ecomcore_projections.cli.relay import run_relay
from ecomcore_projections.cli.trading import run_demo, run_sweep
from ecomcore_projections.cli.workers import run_project, run_rebuild, run_status
from ecomcore_projections.kafka.consumer import DEFAULT_GROUP, DEFAULT_SESSION_TIMEOUT_MS
from ecomcore_projections.kafka.relay import DEFAULT_PARTITIONS, DEFAULT_TOPIC
from ecomcore_projections.runner import REGISTRY

#: The largest simulated day: about an hour on a laptop.
MAX_DEMO_ORDERS = 100_000
MAX_BATCH_SIZE = 100_000
DAY = 86_400.0
PROJECT_MODES = ("until-caught-up", "follow")
SOURCES = ("store", "kafka")


def add_kafka_source(command: argparse.ArgumentParser) -> None:
    """``--source store|kafka`` and, for Kafka, the broker, the topic and the consumer group."""
    option(command, "--source", env="PROJECT_SOURCE", metavar="store|kafka", type=one_of(SOURCES), default="store",
           help="read events from the store's notification log (default) or from the relay's Kafka topic")
    option(command, "--kafka", env="KAFKA", metavar="HOST:PORT", type=str,
           help="with --source kafka: the Kafka bootstrap server(s), comma-separated")
    option(command, "--topic", env="KAFKA_TOPIC", metavar="NAME", type=str, default=DEFAULT_TOPIC,
           help=f"with --source kafka: the relay's topic (default {DEFAULT_TOPIC})")
    option(command, "--group", env="KAFKA_GROUP", metavar="NAME", type=str, default=DEFAULT_GROUP,
           help=f"with --source kafka: the consumer group the workers share (default {DEFAULT_GROUP})")


def ecomcore_version() -> str:
    try:
        return version("ecomcore")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ecomcore", description="The event-sourced core of an e-commerce back office.")
    parser.add_argument("--version", action="version", version=f"ecomcore {ecomcore_version()}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a simulated trading day and print what happened")
    option(demo, "--orders", env="DEMO_ORDERS", metavar="N", type=whole_number(1, MAX_DEMO_ORDERS), default=200,
           help=f"checkout attempts in the day, 1 to {MAX_DEMO_ORDERS:,} (default 200)")
    option(demo, "--seed", env="DEMO_SEED", metavar="S", type=whole_number(0), default=7,
           help="random seed: on a fresh store the same seed gives the same day (default 7)")
    option(demo, "--no-projections", env="DEMO_NO_PROJECTIONS",
           help="only trade: leave the read models for a projector worker")
    demo.set_defaults(command=run_demo)

    sweep = commands.add_parser("sweep", help="expire overdue checkouts and coupons, complete orders, once")
    option(sweep, "--now", env="SWEEP_NOW", metavar="ISO8601", type=moment,
           help="the moment to sweep as of, ISO 8601 (naive means UTC; default: the system clock)")
    sweep.set_defaults(command=run_sweep)

    project = commands.add_parser("project", help="run projector workers: catch up, or follow the event log")
    option(project, "--only", env="PROJECT_ONLY", metavar="NAME", type=one_of(sorted(REGISTRY)),
           help=f"one projection: {', '.join(sorted(REGISTRY))}")
    mode = project.add_mutually_exclusive_group()
    mode.add_argument("--until-caught-up", dest="mode", action="store_const", const="until-caught-up",
                      help="apply everything up to the head, then stop [env: ECOMCORE_PROJECT_MODE=until-caught-up]")
    mode.add_argument("--follow", dest="mode", action="store_const", const="follow",
                      help="keep following until SIGINT/SIGTERM [env: ECOMCORE_PROJECT_MODE=follow]")
    project.set_defaults(mode=None, command=run_project)
    from_environment(project, "mode", "PROJECT_MODE", one_of(PROJECT_MODES), None)
    option(project, "--poll", env="POLL", metavar="SECONDS", type=seconds(3600), default=0.5,
           help="seconds to wait when idle, up to 3600 (default 0.5)")
    option(project, "--batch-size", env="BATCH_SIZE", metavar="N", type=whole_number(1, MAX_BATCH_SIZE),
           default=1000, help=f"events per batch and transaction, 1 to {MAX_BATCH_SIZE:,} (default 1000)")
    option(project, "--log-interval", env="LOG_INTERVAL", metavar="SECONDS", type=seconds(DAY), default=10.0,
           help="log progress at most this often (default 10)")
    option(project, "--give-up-after", env="GIVE_UP_AFTER", metavar="SECONDS", type=seconds(7 * DAY), default=60.0,
           help="with --until-caught-up: give up after this long unable to reach a database "
                "(default 60); --follow never gives up")
    add_kafka_source(project)
    option(project, "--session-timeout", env="KAFKA_SESSION_TIMEOUT_MS", metavar="MS",
           type=whole_number(1000, 600_000), default=DEFAULT_SESSION_TIMEOUT_MS,
           help="with --source kafka: the consumer group's session timeout in milliseconds: a worker "
                f"that stops heartbeating loses its partitions after it (default {DEFAULT_SESSION_TIMEOUT_MS})")

    rebuild = commands.add_parser("rebuild", help="rebuild read models from zero (shadow tables, swapped in)")
    rebuild.add_argument("name", nargs="?", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    option(rebuild, "--all", env="REBUILD_ALL", help="every projection")
    option(rebuild, "--check", env="REBUILD_CHECK",
           help="compare a rebuild with the live tables, print differences, exit 1 if any (the live tables stay)")
    option(rebuild, "--batch-size", env="BATCH_SIZE", metavar="N", type=whole_number(1, MAX_BATCH_SIZE),
           default=1000, help=f"events per batch, 1 to {MAX_BATCH_SIZE:,} (default 1000)")
    moment_given = rebuild.add_mutually_exclusive_group()
    option(moment_given, "--as-of", env="REBUILD_AS_OF", metavar="ISO8601", type=moment,
           help="with --into: build as of this moment (every event of the whole log with a timestamp at or "
                "before it; naive means UTC), into the snapshot's own tables")
    option(moment_given, "--until-position", env="REBUILD_UNTIL_POSITION", metavar="N", type=whole_number(0),
           help="with --into: build from the events with a notification id up to N")
    option(rebuild, "--into", env="REBUILD_INTO", metavar="LABEL", type=label,
           help="the snapshot's label (a lower-case identifier): tables rm_asof_LABEL__*, replaced if built "
                "before; the live tables and positions are not touched")
    rebuild.set_defaults(command=run_rebuild)

    status = commands.add_parser("status", help="each projection's position, lag and schema version")
    option(status, "--max-lag", env="MAX_LAG", metavar="EVENTS", type=whole_number(0),
           help="exit 1 if any projection is more than EVENTS behind (or its schema is out of date)")
    add_kafka_source(status)
    status.set_defaults(command=run_status)

    relay = commands.add_parser("relay", help="publish the event log to a Kafka topic, in order, at least once")
    option(relay, "--kafka", env="KAFKA", metavar="HOST:PORT", type=str,
           help="the Kafka bootstrap server(s), comma-separated")
    option(relay, "--topic", env="KAFKA_TOPIC", metavar="NAME", type=str, default=DEFAULT_TOPIC,
           help=f"the topic to publish to (default {DEFAULT_TOPIC})")
    option(relay, "--partitions", env="KAFKA_PARTITIONS", metavar="N", type=whole_number(1, 10_000),
           default=DEFAULT_PARTITIONS,
           help=f"partitions of the topic when the relay creates it (default {DEFAULT_PARTITIONS})")
    option(relay, "--replication-factor", env="KAFKA_REPLICATION_FACTOR", metavar="N", type=whole_number(1, 100),
           default=1, help="replicas of the topic when the relay creates it (default 1)")
    relay_mode = relay.add_mutually_exclusive_group()
    relay_mode.add_argument("--until-caught-up", dest="mode", action="store_const", const="until-caught-up",
                            help="publish everything up to the head, then stop "
                                 "[env: ECOMCORE_RELAY_MODE=until-caught-up]")
    relay_mode.add_argument("--follow", dest="mode", action="store_const", const="follow",
                            help="keep publishing until SIGINT/SIGTERM [env: ECOMCORE_RELAY_MODE=follow]")
    relay.set_defaults(mode=None, command=run_relay)
    from_environment(relay, "mode", "RELAY_MODE", one_of(PROJECT_MODES), None)
    option(relay, "--poll", env="POLL", metavar="SECONDS", type=seconds(3600), default=0.5,
           help="seconds to wait when idle, up to 3600 (default 0.5)")
    option(relay, "--batch-size", env="BATCH_SIZE", metavar="N", type=whole_number(1, MAX_BATCH_SIZE),
           default=1000, help=f"events per batch (acknowledged, then the position stored), 1 to {MAX_BATCH_SIZE:,} "
                              "(default 1000)")
    option(relay, "--log-interval", env="LOG_INTERVAL", metavar="SECONDS", type=seconds(DAY), default=10.0,
           help="log progress at most this often (default 10)")
    option(relay, "--give-up-after", env="GIVE_UP_AFTER", metavar="SECONDS", type=seconds(7 * DAY), default=60.0,
           help="with --until-caught-up: give up after this long unable to reach the broker or the store "
                "(default 60); --follow never gives up")

    add_reconcile_command(commands)

    leaves = {name: command for name, command in commands.choices.items()}
    audit = add_audit_commands(commands)
    leaves.update({f"audit {command.prog.rsplit(' ', 1)[-1]}": command for command in audit})
    for name, command in leaves.items():
        option(command, "--store", env="STORE_URL", metavar="URL", type=str, help=STORE_HELP)
        if name != "sweep":
            option(command, "--read-models", env="READ_MODELS_URL", metavar="URL", type=str,
                   help=READ_MODELS_HELP)
        option(command, "--connect-timeout", env="POSTGRES_CONNECT_TIMEOUT_S", metavar="SECONDS",
               type=whole_number(1, 300),
               help="seconds to wait for a PostgreSQL connection, 1 to 300 (default 5; project, status "
                    "and rebuild: 1, so a worker notices a server going away)")
        option(command, "--json", env="JSON", help="print the result as JSON, for machines")
        option(command, "--log-level", env="LOG_LEVEL", metavar="LEVEL", type=one_of(LOG_LEVELS), default="info",
               help=f"how much to log on stderr: {', '.join(LOG_LEVELS)} (default info; debug adds tracebacks)")
    return parser
