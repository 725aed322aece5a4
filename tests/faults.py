"""Faults injected at the file level, for crash and error-path tests."""

from __future__ import annotations

import os


def fill_disk_under(path: str) -> list[int]:
    """Make every write this process makes to ``path`` fail with ENOSPC, the
    way a full disk does: each file descriptor open on it for writing is
    replaced (dup2) by one on /dev/full. Reads through a memory map go on.
    Returns the descriptors replaced (none: the test would show nothing)."""
    real = os.path.realpath(path)
    replaced = []
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    flags = int(info.read().split("flags:")[1].split()[0], 8)
            except (OSError, IndexError, ValueError):
                continue
            if target == real and flags & (os.O_WRONLY | os.O_RDWR):
                os.dup2(full, fd, inheritable=False)
                replaced.append(fd)
    finally:
        os.close(full)
    assert replaced, f"no descriptor open for writing on {path}"
    return replaced
