"""A one-line progress bar on a terminal (stderr), redrawn in place."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30


class ProgressBar:
    """Draws ``[=====>    ] done/total`` (or elapsed/duration) with the current rate.

    Silent unless ``enabled``; call ``update`` as often as you like (it redraws at
    most every 0.1 s) and ``finish`` once.
    """

    def __init__(self, total: int, duration_s: float, enabled: bool, stream: TextIO = sys.stderr):
        self.total, self.duration_s, self.enabled, self.stream = total, duration_s, enabled, stream
        self.started = time.monotonic()
        self._last_draw = 0.0

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        elapsed = now - self.started
        if self.total:
            fraction, tail = done / self.total, f"{done}/{self.total}"
        else:
            fraction, tail = elapsed / self.duration_s, f"{elapsed:.1f}/{self.duration_s:g} s, {done} done"
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(fraction * _WIDTH)
        bar = "=" * filled + (">" if filled < _WIDTH else "") + " " * (_WIDTH - filled - 1)
        rate = done / elapsed if elapsed > 0 else 0.0
        self.stream.write(f"\r[{bar[:_WIDTH]}] {fraction * 100:5.1f}% {tail} ({rate:,.0f}/s) ")
        self.stream.flush()

    def finish(self, done: int) -> None:
        if self.enabled:
            self.update(done, force=True)
            self.stream.write("\n")
            self.stream.flush()
