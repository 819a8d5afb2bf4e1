"""Progress of long work: a progress bar on a terminal, periodic log lines anywhere else."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

log = logging.getLogger("ecomcore.progress")

#: ``progress(label, done, total)``
Progress = Callable[[str, int, int], None]


class ProgressReporter:
    """Shows ``done/total`` per label: a tqdm bar when ``stream`` is a terminal, else a log
    line at most every ``interval`` seconds (and one when a label completes)."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 10.0, unit: str = "events") -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.interval, self.unit = interval, unit
        self._bars: dict[str, tqdm] = {}
        self._logged: dict[str, float] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if self.interactive:
            bar = self._bars.get(label)
            if bar is None:
                bar = self._bars[label] = tqdm(desc=label, total=total, unit=self.unit, file=self.stream, leave=True)
            bar.total = max(total, done)
            bar.update(done - bar.n)  # update(), not n =: tqdm's rate needs the increments
            return
        now = time.monotonic()
        if done >= total or now - self._logged.get(label, 0.0) >= self.interval:
            self._logged[label] = now
            log.info("%s: %d/%d %s", label, done, total, self.unit)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
