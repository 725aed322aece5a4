"""A small in-memory reference model of etcd's MVCC semantics (dict of
histories), to check the LMDB store against (STYLE habit 5: the clever code
against the dumb code). Written from etcd's documented behaviour, not from
the store's code."""

from __future__ import annotations

from pykv import errors
from pykv.mvcc import KeyValue


class Model:
    def __init__(self) -> None:
        self.revision = 1
        self.compacted = -1  # etcd's compactMainRev before any compaction
        # key -> list of (main, sub, KeyValue or None for a delete)
        self.history: dict[bytes, list[tuple[int, int, KeyValue | None]]] = {}

    def live(self, rev: int | None = None) -> dict[bytes, KeyValue]:
        rev = self.revision if rev is None else rev
        out = {}
        for key, changes in self.history.items():
            latest = None
            for main, _sub, kv in changes:
                if main <= rev:
                    latest = kv
            if latest is not None:
                out[key] = latest
        return out

    def check_read(self, rev: int) -> int:
        if rev > self.revision:
            raise errors.FutureRevision()
        if rev <= 0:
            return self.revision
        if rev < self.compacted:
            raise errors.Compacted()
        return rev

    def range(self, start: bytes, end: bytes | None, single: bool, rev: int = 0,
              limit: int = 0) -> tuple[list[KeyValue], bool, int]:
        rev = self.check_read(rev)
        state = self.live(rev)
        if single:
            keys = [start] if start in state else []
        else:
            keys = sorted(k for k in state if k >= start and (end is None or k < end))
        kvs = [state[k] for k in keys]
        more = bool(limit) and len(kvs) > limit
        return (kvs[:limit] if limit else kvs), more, len(kvs)

    # --- writes, each one request --------------------------------------------------

    def put(self, key: bytes, value: bytes, main: int | None = None, sub: int = 0) -> int:
        main = self.revision + 1 if main is None else main
        changes = self.history.get(key)
        current = changes[-1][2] if changes else None
        if current is None:
            kv = KeyValue.make(key, main, main, 1, value, 0)
        else:
            kv = KeyValue.make(key, current.create_revision, main, current.version + 1, value, 0)
        self.history.setdefault(key, []).append((main, sub, kv))
        self.revision = max(self.revision, main)
        return main

    def delete(self, keys: list[bytes], main: int | None = None, sub: int = 0) -> int:
        main = self.revision + 1 if main is None else main
        for i, key in enumerate(keys):
            self.history[key].append((main, sub + i, None))
        if keys:
            self.revision = max(self.revision, main)
        return len(keys)

    def compact(self, rev: int) -> None:
        if rev <= self.compacted:
            raise errors.Compacted()
        if rev > self.revision:
            raise errors.FutureRevision()
        self.compacted = rev
