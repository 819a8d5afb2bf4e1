"""``scripts/bench.py`` runs (a smoke test: no timings are asserted, only that each part it is
asked for measures and reports its ratios)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


@pytest.mark.stores("sqlite")
def test_the_kafka_part_runs_against_the_tests_broker(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--part", "kafka", "--quick", "--workdir", str(tmp_path / "work"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr  # a missed target is a figure, not a failure
    ratios = json.loads(out.read_text())["ratios"]
    assert set(ratios) == {"kafka_relay", "kafka_worker"}
    assert all(value > 0 for value in ratios.values()), ratios
