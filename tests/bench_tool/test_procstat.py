"""CPU accounting of a server that runs as several processes."""

from __future__ import annotations

import os
import subprocess
import sys

from pykv.bench import procstat

# Burns 0.3 s of CPU, says so, then waits for stdin to close (no sleeping).
_BUSY_CHILD = """
import sys, time
while time.process_time() < 0.3:
    pass
print("busy", flush=True)
sys.stdin.read()
"""


def test_tree_cpu_counts_child_processes():
    before = procstat.tree_cpu_seconds(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", _BUSY_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "busy\n"
        after = procstat.tree_cpu_seconds(os.getpid())
        # /proc counts whole clock ticks (10 ms), so allow a few of them below 0.3 s.
        assert after[child.pid] >= 0.25
        assert child.pid not in before
        assert procstat.cpu_between(before, after) >= 0.25
    finally:
        child.stdin.close()
        child.wait()


def test_tree_cpu_of_a_missing_process_is_empty():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert procstat.tree_cpu_seconds(child.pid) == {}
