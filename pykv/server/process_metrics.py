"""The Prometheus process collector's metrics, as etcd's /metrics has them
(``process_resident_memory_bytes`` and the rest): ``etcdctl check datascale``
reads the resident memory from there before and after its puts, and
dashboards written for etcd chart them.

Read from /proc (Linux); where /proc is missing, from ``resource`` (CPU
time, open-file limit), and the rest is left out, as the Go collector does on
systems it cannot read.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

#: (name, help) in the order the Go collector writes them.
_HELP = {
    "process_cpu_seconds_total": "Total user and system CPU time spent in seconds.",
    "process_max_fds": "Maximum number of open file descriptors.",
    "process_open_fds": "Number of open file descriptors.",
    "process_resident_memory_bytes": "Resident memory size in bytes.",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
    "process_virtual_memory_bytes": "Virtual memory size in bytes.",
}

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_BYTES = resource.getpagesize()


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


_BOOT_TIME = _boot_time()


def sample(pid: str = "self") -> dict[str, float]:
    """The process metrics of ``pid`` now (those that can be read here)."""
    values: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = raw[raw.rindex(b")") + 2:].split()
        utime, stime = int(fields[11]), int(fields[12])
        values["process_cpu_seconds_total"] = (utime + stime) / _CLOCK_TICKS
        if _BOOT_TIME is not None:
            values["process_start_time_seconds"] = _BOOT_TIME + int(fields[19]) / _CLOCK_TICKS
        values["process_virtual_memory_bytes"] = int(fields[20])
        values["process_resident_memory_bytes"] = int(fields[21]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        values["process_cpu_seconds_total"] = usage.ru_utime + usage.ru_stime
    try:
        values["process_open_fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        values["process_max_fds"] = soft
    return values


def write(metric: Callable[[str, str, str, object], None]) -> None:
    """Emit each metric through ``metric(name, kind, help, value)``."""
    values = sample()
    for name, help_text in _HELP.items():
        if name in values:
            kind = "counter" if name.endswith("_total") else "gauge"
            value = values[name]
            metric(name, kind, help_text, repr(float(value)) if isinstance(value, float)
                   else value)
