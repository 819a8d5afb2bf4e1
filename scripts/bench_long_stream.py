"""Benchmark: a command on a StockItem with a long history vs on a fresh one.

Builds a StockItem with N earlier events (default 100,000), then times the same
command (`receive_stock`) on it and on a fresh StockItem, in a new Shop each
time (no warm cache, as in a newly started process).  Reported as ratios
against the fresh item measured in the same run:

    python scripts/bench_long_stream.py [--events N] [--store URL]

With snapshots (the default) the ratio should stay near 1; the run also shows
what it would be without snapshots, to say why they are there.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ecomcore import ManualClock, Settings, Shop
from ecomcore.domain.stock_item import StockItem
from ecomcore.infrastructure.catalogue import InMemoryCatalogue

START = datetime(2026, 11, 11, 8, tzinfo=UTC)


def open_shop(url: str, **settings: object) -> Shop:
    catalogue = InMemoryCatalogue()
    shop = Shop(url, clock=ManualClock(START), settings=Settings(store_url=url, **settings), catalogue=catalogue)
    shop.register_merchant(merchant_id="m1", name="Bench")
    shop.register_warehouse(warehouse_id="w1", region="east", priority=1)
    for sku in ("BUSY", "FRESH"):
        shop.register_sku(
            sku_id=sku, spu_id="P", merchant_id="m1", category_path=("c",), brand_id="b",
            unit_price=100, weight_g=10, title=sku,
        )
    return shop


def build_history(url: str, events: int, batch: int = 5_000) -> None:
    shop = open_shop(url)
    now = shop.clock.now()
    item = StockItem.register("BUSY", "w1", now)
    shop.store.save(item)
    made = 1
    while made < events:
        for _ in range(min(batch, events - made)):
            item.receive(1, "bench", now)
            made += 1
        shop.store.save(item)
    shop.receive_stock(sku_id="FRESH", warehouse_id="w1", quantity=1, reference="bench")
    shop.close()


def time_command(url: str, sku: str, repeats: int, **settings: object) -> float:
    samples = []
    for _ in range(repeats):
        shop = open_shop(url, aggregate_cache_size=0, **settings)
        started = time.perf_counter()
        shop.receive_stock(sku_id=sku, warehouse_id="w1", quantity=1, reference="bench")
        samples.append(time.perf_counter() - started)
        shop.close()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--store", help="store URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        started = time.perf_counter()
        build_history(url, args.events)
        print(f"history: {args.events:,} events on one StockItem in {time.perf_counter() - started:.1f}s")
        fresh = time_command(url, "FRESH", args.repeats)
        busy = time_command(url, "BUSY", args.repeats)
        print(f"fresh item:            {fresh * 1000:8.2f} ms  (baseline 1.00)")
        print(f"busy item, snapshots:  {busy * 1000:8.2f} ms  ratio {busy / fresh:5.2f}")
        # What snapshots save: reading and decoding the whole stream instead.
        shop = open_shop(url, aggregate_cache_size=0)
        started = time.perf_counter()
        list(shop.store.events.get(shop.stock_item("BUSY", "w1").id))
        replay_all = time.perf_counter() - started
        shop.close()
        print(f"busy item, full replay (no snapshots): {replay_all * 1000:8.2f} ms  ratio {replay_all / fresh:7.1f}")


if __name__ == "__main__":
    main()
