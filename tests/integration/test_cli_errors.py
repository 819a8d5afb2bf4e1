"""The ``ecomcore`` command at its edges, run as a user runs it (``python -m ecomcore``): every
bad invocation ends with one ``error [code]: …`` line, its documented exit status, no
traceback and no secret; ``--version``, ``--json`` and options from the environment."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ecomcore_projections.cli import main

PASSWORD = "s3cr3t-Pa55word"
KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"o" * 32).decode()
SECRETS = (PASSWORD, KEY, OTHER_KEY)


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released without listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Stores:
    folder: Path
    plain: str  # a store written without a key
    encrypted: str  # a store written under KEY

    def url(self, name: str) -> str:
        return f"sqlite:///{self.folder / name}"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    folder = tmp_path_factory.mktemp("cli_errors")
    plain, encrypted = f"sqlite:///{folder}/plain.sqlite", f"sqlite:///{folder}/encrypted.sqlite"
    assert main(["demo", "--store", plain, "--orders", "3", "--no-projections", "--log-level", "error"]) == 0
    os.environ["ECOMCORE_CIPHER_KEY"] = KEY
    try:
        assert main(["demo", "--store", encrypted, "--orders", "3", "--no-projections", "--log-level", "error"]) == 0
    finally:
        del os.environ["ECOMCORE_CIPHER_KEY"]
    (folder / "not-a-database.sqlite").write_text("these are not the pages you are looking for\n" * 100)
    whole = (folder / "plain.sqlite").read_bytes()
    (folder / "truncated.sqlite").write_bytes(whole[: len(whole) // 3])
    (folder / "readonly").mkdir()
    (folder / "readonly" / "shop.sqlite").write_bytes(whole)
    return Stores(folder, plain, encrypted)


def ecomcore(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECOMCORE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ecomcore", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


@dataclass(frozen=True)
class Bad:
    """A bad invocation: its arguments (``{plain}``, ``{encrypted}``, ``{folder}``, ``{port}``
    are filled in), its environment, and the error code and exit status it must end with."""

    args: tuple[str, ...]
    code: str
    status: int
    env: dict[str, str] = field(default_factory=dict)


CASES = {
    # usage and numbers (2)
    "no command": Bad((), "usage", 2),
    "unknown option": Bad(("status", "--store", "{plain}", "--colour"), "usage", 2),
    "orders 10**20": Bad(("demo", "--orders", "10**20"), "usage", 2),
    "orders huge": Bad(("demo", "--orders", str(10**20)), "usage", 2),
    "orders zero": Bad(("demo", "--orders", "0"), "usage", 2),
    "seed not a number": Bad(("demo", "--seed", "x"), "usage", 2),
    "poll negative": Bad(("project", "--follow", "--poll", "-1", "--store", "{plain}"), "usage", 2),
    "poll nan": Bad(("project", "--follow", "--poll", "nan", "--store", "{plain}"), "usage", 2),
    "batch size negative": Bad(("rebuild", "--all", "--batch-size", "-5", "--store", "{plain}"), "usage", 2),
    "max lag negative": Bad(("status", "--max-lag", "-1", "--store", "{plain}"), "usage", 2),
    "connect timeout zero": Bad(("status", "--connect-timeout", "0", "--store", "{plain}"), "usage", 2),
    "poll from env inf": Bad(("project", "--follow", "--store", "{plain}"), "usage", 2, {"ECOMCORE_POLL": "inf"}),
    "batch size from env": Bad(("rebuild", "--all", "--store", "{plain}"), "usage", 2, {"ECOMCORE_BATCH_SIZE": "-1"}),
    "project without mode": Bad(("project", "--store", "{plain}"), "usage", 2),
    "bad sweep moment": Bad(("sweep", "--store", "{plain}", "--now", "next tuesday"), "usage", 2),
    # URLs and settings (2)
    "bad store URL": Bad(("status", "--store", f"nosuch://ecom:{PASSWORD}@db/shop"), "invalid_store_url", 2),
    "bad read-models URL": Bad(
        ("status", "--store", "{plain}", "--read-models", f"mysql://ecom:{PASSWORD}@db/rm"), "invalid_read_models_url", 2
    ),
    "bad setting": Bad(("status", "--store", "{plain}"), "invalid_setting", 2, {"ECOMCORE_CURRENCY": "yuan"}),
    "bad store URL from env": Bad(
        ("sweep",), "invalid_store_url", 2, {"ECOMCORE_STORE_URL": f"postgres-ql://ecom:{PASSWORD}@db/shop"}
    ),
    # the store (3)
    "missing file: status": Bad(("status", "--store", "{folder}/typo.sqlite"), "store_not_found", 3),
    "missing file: sweep": Bad(("sweep", "--store", "{folder}/typo.sqlite"), "store_not_found", 3),
    "missing file: project": Bad(("project", "--until-caught-up", "--store", "{folder}/typo.sqlite"), "store_not_found", 3),
    "missing file: rebuild": Bad(("rebuild", "--all", "--store", "{folder}/typo.sqlite"), "store_not_found", 3),
    "missing directory: demo": Bad(("demo", "--store", "{folder}/no/such/dir/shop.sqlite"), "store_not_found", 3),
    "not a database": Bad(("status", "--store", "{folder}/not-a-database.sqlite"), "store_corrupted", 3),
    "not a database: demo": Bad(("demo", "--store", "{folder}/not-a-database.sqlite"), "store_corrupted", 3),
    "truncated": Bad(("sweep", "--store", "{folder}/truncated.sqlite"), "store_corrupted", 3),
    "read-only file system": Bad(("demo", "--store", "sqlite:////proc/ecomcore-shop.sqlite"), "store_read_only", 3),
    "unreachable PostgreSQL": Bad(("status", "--store", f"postgresql://ecom:{PASSWORD}@127.0.0.1:{{port}}/shop"),
                                  "store_unavailable", 3),
    "unreachable PostgreSQL: demo": Bad(("demo", "--store", f"postgresql://ecom:{PASSWORD}@127.0.0.1:{{port}}/shop"),
                                        "store_unavailable", 3),
    # the cipher key (4)
    "key not base64": Bad(("status", "--store", "{plain}"), "cipher_key_invalid", 4,
                          {"ECOMCORE_CIPHER_KEY": f"not base64 {PASSWORD}"}),
    "key too short": Bad(("status", "--store", "{plain}"), "cipher_key_invalid", 4,
                         {"ECOMCORE_CIPHER_KEY": base64.b64encode(PASSWORD.encode()).decode()}),
    "wrong key": Bad(("sweep", "--store", "{encrypted}"), "cipher_key_mismatch", 4, {"ECOMCORE_CIPHER_KEY": OTHER_KEY}),
    "missing key": Bad(("status", "--store", "{encrypted}"), "cipher_key_mismatch", 4),
    "key for a plain store": Bad(("demo", "--orders", "2", "--store", "{plain}"), "cipher_key_mismatch", 4,
                                 {"ECOMCORE_CIPHER_KEY": KEY}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_bad_invocation_is_one_line_with_its_exit_status_and_no_secret(stores: Stores, case: Bad) -> None:
    """One ``error [code]:`` line on stderr, the documented status, no traceback, no password or key, and
    (an unreachable server included) over within seconds; a mistyped store path creates nothing."""
    port = _closed_port()

    def filled(arg: str) -> str:
        arg = arg.format(plain=stores.plain, encrypted=stores.encrypted, folder=stores.folder, port=port)
        return f"sqlite:///{arg}" if arg.startswith(str(stores.folder)) else arg

    started = time.monotonic()
    done = ecomcore(*(filled(arg) for arg in case.args), env=case.env)
    elapsed = time.monotonic() - started

    errors = [line for line in done.stderr.splitlines() if line.startswith("error [")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error [{case.code}]: "), done.stderr
    assert done.returncode == case.status, done.stderr
    assert "Traceback" not in done.stderr
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert not (stores.folder / "typo.sqlite").exists()


def test_a_read_only_directory_is_refused(stores: Stores) -> None:
    """A store whose directory cannot be written is refused before SQLite tries (root may write anywhere)."""
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only directories")
    folder = stores.folder / "readonly"
    folder.chmod(0o555)
    try:
        done = ecomcore("sweep", "--store", f"sqlite:///{folder}/shop.sqlite")
    finally:
        folder.chmod(0o755)
    assert done.returncode == 3 and done.stderr.startswith("error [store_read_only]: "), done.stderr


def test_debug_adds_the_traceback_but_still_no_password(stores: Stores) -> None:
    """``--log-level debug`` logs the traceback of the failure; the password stays masked."""
    url = f"postgresql://ecom:{PASSWORD}@127.0.0.1:{_closed_port()}/shop"
    done = ecomcore("status", "--store", url, "--log-level", "debug")

    assert done.returncode == 3
    assert "Traceback" in done.stderr and "postgresql://ecom:***@127.0.0.1" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert [line for line in done.stderr.splitlines() if line.startswith("error [")][0].startswith(
        "error [store_unavailable]: "
    )


def test_version() -> None:
    """``ecomcore --version`` prints the installed package's version and exits 0."""
    from importlib.metadata import version

    done = ecomcore("--version")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, f"ecomcore {version('ecomcore')}", "")


def test_json_output_of_demo_sweep_and_rebuild_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--json`` makes demo, sweep and ``rebuild --check`` print one JSON document; options come
    from the environment too; progress on a non-terminal is log lines, never ``\\r``."""
    monkeypatch.setenv("ECOMCORE_STORE_URL", f"sqlite:///{tmp_path}/shop.sqlite")
    monkeypatch.setenv("ECOMCORE_DEMO_ORDERS", "12")
    monkeypatch.setenv("ECOMCORE_JSON", "yes")

    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    demo = json.loads(out)
    assert demo["orders"] == 12 and demo["checkouts_placed"] > 0 and "\r" not in err
    assert demo["read_models"]["discrepancies"] == [] and demo["read_models"]["orders_by_state"]

    assert main(["sweep", "--now", "2031-01-01T00:00:00Z"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert sweep["now"].startswith("2031-01-01T00:00:00") and sweep["completed_orders"] >= 0

    assert main(["rebuild", "--all", "--check"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["check"] is True and check["equal"] is True
    assert {p["name"] for p in check["projections"]} == {"order_status", "stock", "reconciliation"}
    assert all(p["differences"] == [] for p in check["projections"])

    monkeypatch.setenv("ECOMCORE_PROJECT_MODE", "until-caught-up")
    assert main(["project"]) == 0
    assert all(lag["events_behind"] == 0 for lag in json.loads(capsys.readouterr().out)["lag"])
