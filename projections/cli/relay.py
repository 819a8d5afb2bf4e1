"""``ecomcore relay``: publish the store's event log to a Kafka topic (see :mod:`ecomcore_projections.kafka.relay`)."""

from __future__ import annotations

import argparse
import json
import threading
import time

from ecomcore_projections.cli.common import stop_on_signals, worker_log
from ecomcore_projections.cli.failures import EXIT_OK, UsageError
from ecomcore_projections.cli.stores import load_settings, open_store
from ecomcore_projections.kafka.relay import Relay

#: Like the projector workers: notice a PostgreSQL server that went away within about a second.
RELAY_CONNECT_TIMEOUT_S = 1


def run_relay(args: argparse.Namespace) -> int:
    if args.mode is None:
        raise UsageError("give --until-caught-up or --follow, or set ECOMCORE_RELAY_MODE (see --help)")
    if not args.kafka:
        raise UsageError("give the broker: --kafka HOST:PORT (or ECOMCORE_KAFKA)")
    follow = args.mode == "follow"
    stop = threading.Event()
    stop_on_signals(stop)
    settings = load_settings(args, connect_timeout=RELAY_CONNECT_TIMEOUT_S)
    store = open_store(settings, must_exist=True, stop=stop, wait_for=None if follow else args.give_up_after,
                       log=worker_log)
    relay = None
    try:
        relay = Relay(store, args.kafka, store_url=settings.store_url, topic=args.topic,
                      partitions=args.partitions, replication_factor=args.replication_factor,
                      batch_size=args.batch_size, log_interval=args.log_interval,
                      connect_timeout=max(float(settings.postgres_connect_timeout_s), 5.0))
        started = time.monotonic()
        with relay.lock():
            result = relay.run(stop, follow=follow, poll_interval=args.poll,
                               give_up_after=None if follow else args.give_up_after)
        elapsed = time.monotonic() - started
    finally:
        if relay is not None:
            relay.close()
        store.close()
    if args.json:
        print(json.dumps({
            "published": result.events,
            "position": result.position,
            "head": result.head,
            "topic": args.topic,
            "seconds": round(elapsed, 3),
        }, indent=2))
        return EXIT_OK
    print(f"published {result.events} events to {args.topic} in {elapsed:.1f} s; "
          f"position {result.position}, head {result.head}")
    return EXIT_OK
