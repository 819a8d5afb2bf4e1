"""The ``ecomcore`` command line, run in-process: the demo day, the sweeper, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecomcore_projections.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def figure(out: str, label: str) -> int:
    """The number printed after ``label`` at the start of a summary line."""
    found = re.search(rf"^\s+{re.escape(label)}\s+(-?\d+)", out, re.MULTILINE)
    assert found, f"no line {label!r} in:\n{out}"
    return int(found.group(1))


def amount(out: str, label: str) -> int:
    """The first amount (in fen) printed on the line that starts with ``label``."""
    found = re.search(rf"^\s+{re.escape(label)}\b.*?CNY (-?[\d,]+)\.(\d\d)", out, re.MULTILINE)
    assert found, f"no amount on line {label!r} in:\n{out}"
    return int(found.group(1).replace(",", "")) * 100 + int(found.group(2))


def section(out: str, title: str) -> list[str]:
    """The indented lines under a section title."""
    lines = out.splitlines()
    start = lines.index(title) + 1
    body = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        body.append(line.strip())
    return body


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/demo.sqlite"


def test_demo_shows_a_whole_trading_day(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    """A 40-order day reaches the main order states, takes money, refunds a late payment, raises a low-stock
    alert, and shows after-sales: refunds only, returns (one damaged unit, one rejected), a coupon returned."""
    code, out, err = run(capsys, "demo", "--store", sqlite_url, "--orders", "40")

    assert code == 0, err
    for state in ("paid", "shipped", "delivered", "completed", "cancelled"):
        assert figure(out, state) > 0, f"no {state} orders in:\n{out}"
    assert figure(out, "checkouts placed") > 0
    assert figure(out, "refused for stock") > 0
    assert amount(out, "money taken") > 0
    assert figure(out, "late payments refunded") >= 1
    assert amount(out, "late payments refunded") > 0
    alerts = section(out, "Low-stock alerts (reorder suggestions)")
    assert alerts and alerts != ["none"]
    # After-sales: refunds only, a return with a damaged unit, a rejected one, a coupon back.
    assert figure(out, "refunds only") >= 2 and amount(out, "refunds only") > 0
    assert re.search(r"returns\s+\d+ requested, [1-9]\d* rejected, [1-9]\d* refunded \(CNY", out), out
    assert re.search(r"returned units\s+\d+ restocked, [1-9]\d* damaged", out), out
    assert figure(out, "coupons returned") >= 1
    assert figure(out, "closed") >= 1
    assert re.search(r"safety stock \d+", alerts[0])
    assert "orders: 40/40" in err  # the progress reporter's line when stderr is not a terminal


def test_demo_runs_twice_on_the_same_store(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    """A second demo on a store that already holds a day starts later and still succeeds."""
    first_code, first, _ = run(capsys, "demo", "--store", sqlite_url, "--orders", "40")
    second_code, second, err = run(capsys, "demo", "--store", sqlite_url, "--orders", "40")

    assert (first_code, second_code) == (0, 0), err
    day = re.compile(r"Trading day (\d{4}-\d\d-\d\d)")
    assert day.search(second).group(1) > day.search(first).group(1)  # type: ignore[union-attr]
    assert amount(second, "money taken") > 0
    assert figure(second, "completed") > 0


def test_same_seed_gives_the_same_day_on_fresh_stores(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The same seed on two fresh stores prints the same summary, amounts included; another seed differs."""
    outputs = []
    for name, seed in (("a", "11"), ("b", "11"), ("c", "12")):
        store = f"sqlite:///{tmp_path}/{name}.sqlite"
        code, out, err = run(capsys, "demo", "--store", store, "--orders", "40", "--seed", seed)
        assert code == 0, err
        outputs.append(out)

    assert outputs[0] == outputs[1]
    assert amount(outputs[0], "money taken") == amount(outputs[1], "money taken")
    assert outputs[2] != outputs[0]


def test_the_demo_continues_a_day_whatever_was_refunded_before(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    """Days continued on one store: the customer who reports an item missing from a parcel
    picks a line delivered and kept, never one refunded in full before it shipped (with
    these seeds, seed 52 once refunded such a line and failed with refund_refused)."""
    for seed in ("41", "50", "51", "52"):
        code, _, err = run(capsys, "demo", "--store", sqlite_url, "--orders", "8", "--seed", seed,
                           "--no-projections")
        assert code == 0, (seed, err)


def test_sweep_after_the_demo_prints_its_counts(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    """The sweeper runs on the demo's store; after every window has passed it completes exactly the delivered orders."""
    code, demo, _ = run(capsys, "demo", "--store", sqlite_url, "--orders", "40")
    assert code == 0

    code, later, err = run(capsys, "sweep", "--store", sqlite_url, "--now", "2031-01-01T00:00:00+00:00")
    assert code == 0, err
    assert "2031-01-01T00:00:00+00:00" in later
    assert figure(later, "completed orders") == figure(demo, "delivered")
    assert figure(later, "expired checkouts") == 0

    code, now, err = run(capsys, "sweep", "--store", sqlite_url)
    assert code == 0, err
    for label in ("expired checkouts", "expired coupons", "completed orders"):
        assert figure(now, label) == 0


def test_the_store_can_come_from_the_environment(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --store the demo uses ECOMCORE_STORE_URL."""
    monkeypatch.setenv("ECOMCORE_STORE_URL", sqlite_url)
    code, _out, err = run(capsys, "demo", "--orders", "8")

    assert code == 0, err
    assert sqlite_url in err
    assert Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_a_bad_store_url_exits_2_with_a_readable_message(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown store scheme is reported as `error [code]: message` on stderr, exit status 2, no traceback."""
    code, out, err = run(capsys, "demo", "--store", "nosuch://x", "--orders", "5")

    assert code == 2
    assert out == ""
    assert err.startswith("error [invalid_store_url]: ")
    assert "nosuch://x" in err
    assert "Traceback" not in err


def test_an_unreadable_sweep_moment_is_a_usage_error(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    """A --now that is not ISO 8601 is refused by the argument parser with status 2."""
    code, _, err = run(capsys, "sweep", "--store", sqlite_url, "--now", "next tuesday")

    assert code == 2
    assert "ISO 8601" in err


def test_demo_on_postgresql(
    capsys: pytest.CaptureFixture[str], fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """The same demo runs on a fresh PostgreSQL database (its statement goes to the current directory)."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "demo", "--store", fresh_postgres_url, "--orders", "20")

    assert code == 0, err
    assert figure(out, "checkouts placed") > 0
    assert amount(out, "money taken") > 0
    assert figure(out, "late payments refunded") >= 1
    assert re.search(r"^\s+discrepancies\s+none$", out, re.MULTILINE), out
    code, out, err = run(capsys, "rebuild", "--check", "--all", "--store", fresh_postgres_url)
    assert code == 0, out + err
    assert out.count("live tables equal a rebuild from zero") == 3


def test_demo_summary_comes_from_the_read_models_and_they_check_clean(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    """The demo projects in-process: its states, stock and reconciliation come from the read models,
    the ledger has no discrepancy, and rebuild --check --all agrees with the live tables."""
    code, out, err = run(capsys, "demo", "--store", sqlite_url, "--orders", "40")
    assert code == 0, err
    assert "Orders by state (read model)" in out and "projected" in err
    assert amount(out, "money at the provider") > 0
    assert re.search(r"^\s+discrepancies\s+none$", out, re.MULTILINE), out
    code, out, err = run(capsys, "rebuild", "--check", "--all", "--store", sqlite_url)
    assert code == 0, out + err
    assert out.count("live tables equal a rebuild from zero") == 3


def test_a_worker_catches_up_and_a_rebuild_check_finds_a_tampered_row(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    """project --until-caught-up fills separate read models with no lag; a changed row fails rebuild --check
    (exit 1, naming the row) until a rebuild replaces the live rows."""
    from sqlalchemy import create_engine, text

    assert run(capsys, "demo", "--store", sqlite_url, "--orders", "20", "--no-projections")[0] == 0
    read_models = f"sqlite:///{tmp_path}/rm.sqlite"
    code, out, err = run(capsys, "project", "--store", sqlite_url, "--read-models", read_models, "--until-caught-up")
    assert code == 0, err
    assert re.findall(r"behind\s+(\d+) events", out) == ["0", "0", "0"]
    engine = create_engine(read_models)
    with engine.begin() as conn:
        conn.execute(text("UPDATE rm_stock_items SET on_hand = on_hand + 5 WHERE sku_id = 'TEA-GAIWAN'"))
    engine.dispose()
    args = ("--store", sqlite_url, "--read-models", read_models)
    code, out, err = run(capsys, "rebuild", "stock", "--check", *args)
    assert code == 1 and "TEA-GAIWAN" in out and "difference" in out
    assert run(capsys, "rebuild", "stock", *args)[0] == 0
    assert run(capsys, "rebuild", "--check", "--all", *args)[0] == 0


def test_rebuild_usage_errors(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    """rebuild needs one known name or --all; anything else is a typed error with status 2."""
    code, _, err = run(capsys, "rebuild", "--store", sqlite_url)
    assert code == 2 and "error [invalid_command]" in err
    code, _, err = run(capsys, "rebuild", "nosuch", "--store", sqlite_url)
    assert code == 2 and "error [unknown_projection]" in err


def test_status_reports_lag_as_json_and_fails_a_health_check_past_max_lag(capsys, tmp_path):
    """`status --json` on the demo's store shows every projection caught up; once more is traded without
    projecting, `--max-lag 0` exits 1 and the JSON shows how far behind each projection is."""
    import json

    store = f"sqlite:///{tmp_path}/shop.sqlite"
    assert run(capsys, "demo", "--store", store, "--orders", "10")[0] == 0
    code, out, _ = run(capsys, "status", "--store", store, "--json", "--max-lag", "0")
    report = json.loads(out)
    assert code == 0 and report["healthy"] is True
    assert {p["name"] for p in report["projections"]} == {"order_status", "stock", "reconciliation"}
    head = report["projections"][0]["head"]
    for projection in report["projections"]:
        assert (projection["position"], projection["events_behind"]) == (head, 0)
        assert projection["schema_version"] == projection["expected_schema_version"]
    assert run(capsys, "demo", "--store", store, "--orders", "5", "--no-projections")[0] == 0
    code, out, _ = run(capsys, "status", "--store", store, "--json", "--max-lag", "0")
    report = json.loads(out)
    assert code == 1 and report["healthy"] is False
    assert all(p["events_behind"] > 0 and p["head"] > head for p in report["projections"])
    code, out, _ = run(capsys, "status", "--store", store)
    assert code == 0 and "order_status" in out and "behind" in out


def test_a_projection_failure_is_one_line_without_sql(capsys, tmp_path):
    """An event a projection cannot apply stops the worker with one line naming the projection, position,
    aggregate, type and cause, exit 2, no traceback or SQL."""
    from sqlalchemy import update

    from ecomcore_projections.runner import ReadModels

    store = f"sqlite:///{tmp_path}/shop.sqlite"
    assert run(capsys, "demo", "--store", store, "--orders", "8")[0] == 0
    models = ReadModels(store)
    with models.engine.begin() as conn:  # the position forgets what the rows remember: a repeat
        conn.execute(update(models.positions).where(models.positions.c.name == "reconciliation").values(position=0))
    models.dispose()
    code, _out, err = run(capsys, "project", "--store", store, "--until-caught-up", "--only", "reconciliation")
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error [")]
    assert len(errors) == 1, err
    assert re.match(r"error \[projection_failed\]: projection reconciliation cannot apply event #\d+ "
                    r"\(Order\.\w+ of aggregate [0-9a-f-]{36} v\d+\): ProjectionInconsistency: ", errors[0])
    assert "Traceback" not in err and "[SQL:" not in err


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
    """`ecomcore status | head -0`: when the reader closes the pipe, the command stops quietly with 141."""
    import subprocess
    import sys

    store = f"sqlite:///{tmp_path}/shop.sqlite"
    assert main(["demo", "--store", store, "--orders", "3", "--no-projections"]) == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "ecomcore_projections.cli", "status", "--store", store, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before the command writes anything
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) == 141, err
    assert "Traceback" not in err
