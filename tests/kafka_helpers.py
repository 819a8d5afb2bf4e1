"""What the Kafka tests share: running the command in-process, and reading every read-model table."""

from __future__ import annotations

from typing import Any

import pytest

from ecomcore_projections.cli import main
from ecomcore_projections.read_models import REGISTRY, ReadModels, dump


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``ecomcore ARGV`` in this process: its exit status, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tables(url: str) -> dict[str, Any]:
    """Every projection's tables in the read-model database at ``url``, rows in a stable order."""
    read_models = ReadModels(url, create_tables=False)
    try:
        return {name: dump(read_models, name) for name in REGISTRY}
    finally:
        read_models.dispose()
