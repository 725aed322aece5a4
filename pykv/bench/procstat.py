"""CPU time of processes, read from /proc (Linux), and which process serves a port.

The bench reports how much CPU the server and the generator itself used, so
a reader can tell whether the generator was the bottleneck on a small box.
"""

from __future__ import annotations

import os
import pathlib

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (and its reaped children's
    threads, not its children), or None if it cannot be read."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are plain.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux 3.5+ lists them per thread)."""
    children: list[int] = []
    try:
        threads = list(pathlib.Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return children
    for thread in threads:
        try:
            children.extend(int(c) for c in (thread / "children").read_text().split())
        except OSError:
            continue
    return children


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds so far of ``pid`` and of each living descendant, by pid.

    A server may run several processes (e.g. gRPC front ends beside the Raft
    loop); its CPU per operation must count them all. Compare two readings
    pid by pid: a process that started or ended between them counts only for
    the time it was seen. Empty if ``pid`` is gone.
    """
    seen: dict[int, float] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        cpu = cpu_seconds(current)
        if cpu is None:
            continue
        seen[current] = cpu
        todo.extend(_children(current))
    return seen


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two ``tree_cpu_seconds`` readings (new processes count from zero)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def listening_pid(port: int) -> int | None:
    """The pid of a process on this host listening on TCP ``port``, if one can be seen."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(proc.name)
        except OSError:
            continue  # gone, or not ours to look at
    return None
