"""``ecomcore reconcile``: the report, and a provider's statement matched line by line against the ledger."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ecomcore_projections.audit.statement import COLUMNS, StatementInvalid, parse_statement
from ecomcore_projections.cli import main


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _reconcile(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["reconcile", *argv, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out)


@pytest.fixture
def demo_store(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> tuple[str, Path]:
    """A 40-order demo day and the statement its provider wrote (in the current directory for PostgreSQL)."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--orders", "40", "--store", store_url, "--json"]) == 0
    statement = Path(json.loads(capsys.readouterr().out)["statement"])
    assert statement.exists()
    if store_url.startswith("sqlite"):
        assert str(statement) == store_url.split(":///", 1)[1] + ".statement.csv"
    else:
        assert statement.parent == Path(".")
    return store_url, tmp_path / statement


def test_a_missing_line_an_extra_line_and_a_changed_amount_are_reported_exactly(
    demo_store: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each change to the demo's statement is one discrepancy of its kind naming its transaction; exit 1."""
    store_url, statement = demo_store
    rows = _rows(statement)
    payments = [row for row in rows if row["kind"] == "payment"]
    removed, changed = payments[1], payments[2]
    refund = next(row for row in rows if row["kind"] == "refund" and row["transaction_id"].startswith("refund-"))
    edited = [
        {**row, "amount": str(int(row["amount"]) + 1)} if row is changed else row
        for row in rows if row is not removed and row is not refund
    ]
    edited.append({"transaction_id": "alipay-not-ours", "kind": "payment", "amount": "500",
                   "time": "2026-11-11T12:00:00+00:00"})
    code, report = _reconcile(capsys, "--store", store_url, "--statement", str(_write(tmp_path / "bad.csv", edited)))

    assert code == 1
    found = sorted((d["kind"], d["direction"], d["transaction_id"], d["statement"], d["ledger"])
                   for d in report["statement"]["discrepancies"])
    assert found == sorted([
        ("missing_in_statement", "payment", removed["transaction_id"], None, int(removed["amount"])),
        ("missing_in_statement", "refund", refund["transaction_id"], None, int(refund["amount"])),
        ("amount_differs", "payment", changed["transaction_id"], int(changed["amount"]) + 1, int(changed["amount"])),
        ("missing_in_ledger", "payment", "alipay-not-ours", 500, None),
    ])
    assert report["statement"]["matched"] == len(rows) - 3
    assert report["ledger_checks"] == []
    assert main(["reconcile", "--store", store_url, "--statement", str(tmp_path / "bad.csv")]) == 1
    out = capsys.readouterr().out
    assert "missing_in_ledger: payment alipay-not-ours of 500" in out
    assert f"amount_differs: payment {changed['transaction_id']}" in out


def test_a_late_payment_the_statement_does_not_show_refunded_is_reported(
    demo_store: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A late payment on the statement without its refund line is ``late_payment_not_refunded`` (not a missing
    refund), and the untouched statement matches with zero discrepancies and exit 0."""
    store_url, statement = demo_store
    code, report = _reconcile(capsys, "--store", store_url, "--statement", str(statement))
    assert code == 0 and report["discrepancies"] == 0
    assert report["statement"]["matched"] == report["statement"]["lines"] == len(_rows(statement))
    rows = _rows(statement)
    paid = {row["transaction_id"] for row in rows if row["kind"] == "payment"}
    late = next(row for row in rows if row["kind"] == "refund" and row["transaction_id"] in paid)
    kept = [row for row in rows if row is not late]
    code, report = _reconcile(capsys, "--store", store_url, "--statement", str(_write(tmp_path / "l.csv", kept)))
    assert code == 1
    assert [(d["kind"], d["transaction_id"], d["statement"], d["ledger"]) for d in report["statement"]["discrepancies"]] \
        == [("late_payment_not_refunded", late["transaction_id"], 0, int(late["amount"]))]


def test_reconcile_for_a_day_and_as_of_a_snapshot(
    demo_store: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--day`` keeps that UTC day's money on both sides; ``--snapshot`` reads the as-of tables and matches
    the statement's lines up to that moment."""
    store_url, statement = demo_store
    rows = _rows(statement)
    day = rows[0]["time"][:10]
    code, report = _reconcile(capsys, "--store", store_url, "--statement", str(statement), "--day", day)
    assert code == 0, report
    assert report["statement"]["lines"] == sum(row["time"].startswith(day) for row in rows)
    middle = rows[len(rows) // 2]["time"]
    assert main(["rebuild", "reconciliation", "--as-of", middle, "--into", "mid", "--store", store_url]) == 0
    capsys.readouterr()
    code, report = _reconcile(capsys, "--store", store_url, "--statement", str(statement), "--snapshot", "mid")
    assert code == 0, report
    assert report["source"]["snapshot"] == "mid"
    assert report["statement"]["lines"] == sum(row["time"] <= middle for row in rows) < len(rows)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "is empty"),
        ("transaction_id,kind,amount\n", 1, "lacks time"),
        ("transaction_id,kind,amount,time\nt1,payment,100,2026-11-11T09:00:00Z\nt2,payment,1.50,2026-11-11\n",
         3, "amount '1.50'"),
        ("transaction_id,kind,amount,time\nt1,payment,-5,2026-11-11\n", 2, "amount '-5'"),
        ("transaction_id,kind,amount,time\nt1,chargeback,5,2026-11-11\n", 2, "kind 'chargeback'"),
        ("transaction_id,kind,amount,time\nt1,payment,5,yesterday\n", 2, "time 'yesterday'"),
        ("transaction_id,kind,amount,time\nt1,payment,5\n", 2, "3 fields"),
        ('transaction_id,kind,amount,time\n"t1,payment,5,2026-11-11\n', 2, "not CSV"),
        ("transaction_id,kind,amount,time\n,payment,5,2026-11-11\n", 2, "transaction id is empty"),
    ],
)
def test_a_malformed_statement_names_its_line(text: str, line: int, words: str) -> None:
    """Bad CSV, a missing column, a bad amount, kind or time: one error naming the line."""
    with pytest.raises(StatementInvalid) as raised:
        list(parse_statement(text.splitlines(keepends=True), "s.csv"))
    assert words in raised.value.message
    assert raised.value.message.startswith(f"s.csv line {line}:") or (line == 1 and "s.csv" in raised.value.message)


@pytest.mark.stores("sqlite")
def test_a_malformed_statement_is_one_error_line(store_url: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The command prints one ``error [statement_invalid]`` line with the line number and exits 2."""
    bad = tmp_path / "s.csv"
    bad.write_text("transaction_id,kind,amount,time\nt1,payment,12.5,2026-11-11\n")
    assert main(["reconcile", "--statement", str(bad), "--store", store_url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error [statement_invalid]: {bad} line 2: amount '12.5' is not a whole number of minor units "
                   "(e.g. 12990 for 129.90)"]
    assert main(["reconcile", "--statement", str(tmp_path / "none.csv"), "--store", store_url]) == 2
    assert "error [statement_not_found]" in capsys.readouterr().err


def _demo_then_reconcile(tmp_path: Path, orders: int) -> dict[str, Any]:
    store = tmp_path / "demo.sqlite"
    run = [sys.executable, "-m", "ecomcore"]
    done = subprocess.run([*run, "demo", "--orders", str(orders), "--store", f"sqlite:///{store}"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    statement = Path(f"{store}.statement.csv")
    checked = subprocess.run(
        [*run, "reconcile", "--statement", str(statement), "--json", "--store", f"sqlite:///{store}"],
        capture_output=True, text=True, check=False,
    )
    report = json.loads(checked.stdout)
    assert checked.returncode == 0, (report["statement"]["discrepancies"][:5], report["ledger_checks"][:5])
    assert report["discrepancies"] == 0
    assert report["statement"]["matched"] == report["statement"]["lines"] > 0
    return report


def test_the_demos_own_statement_matches_with_no_discrepancy(tmp_path: Path) -> None:
    """Straight after ``ecomcore demo`` its provider's statement reconciles: zero discrepancies, exit 0."""
    report = _demo_then_reconcile(tmp_path, 40)
    assert report["provider"]["late_payments"] > 0  # the day has a late payment and its refund


@pytest.mark.slow
def test_the_statement_of_a_2000_order_demo_matches(tmp_path: Path) -> None:
    """The same after a 2,000-order day."""
    _demo_then_reconcile(tmp_path, 2000)
