"""The floor under every durable write: how long one small append + fdatasync takes here.

A single-client put on etcd (or pykv) cannot beat one fdatasync, so reports
quote this beside put latencies, measured in the same run and directory.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time

from .stats import LatencyStats


def fdatasync_latency(directory: pathlib.Path | str | None = None, count: int = 200,
                      record_bytes: int = 256) -> LatencyStats:
    """Append ``record_bytes`` and fdatasync, ``count`` times, in a temp file in ``directory``."""
    record = b"x" * record_bytes
    latencies = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="pykv-fsync-probe-") as probe:
        fd = probe.fileno()
        sync = getattr(os, "fdatasync", os.fsync)
        started = time.monotonic()
        for _ in range(count):
            before = time.monotonic_ns()
            os.write(fd, record)
            sync(fd)
            latencies.append((time.monotonic_ns() - before) / 1e9)
        total_s = time.monotonic() - started
    return LatencyStats.from_latencies(latencies, total_s)
