"""Watch guarantees (etcd's API guarantees, as its robustness suite checks
them) over the responses of the run's watcher (`watcher.py`), which spans
every restart by resuming from its last revision + 1:

- ordered: event revisions never go back, within a stream or across a resume;
- unique: no event delivered twice;
- atomic: all events of one revision come in one response;
- bookmarkable: after a progress notification at revision h, no event <= h;
- correct events: each matches the watch's key range, a put's version /
  create_revision say whether it created the key, prev_kv is the key's
  state just before (from the write log).

Reliable (no gap) and resumable are `validate.check_write_log`'s contiguity
check on the same watcher's log. `check_probes` judges watches opened at
chosen revisions after the last restart (resumable from any revision in the
history window; refused below the compaction, which survived the kill).
"""

from __future__ import annotations

from tests.robustness.validate import LoggedWrite, Violation
from tests.robustness.validate_mvcc import LogIndex
from tests.robustness.watcher import WatchProbe, WatchResponseRecord


def check_watch(responses: list[WatchResponseRecord], log: list[LoggedWrite],
                gaps: list[tuple[int, int]], key: bytes, range_end: bytes) -> list[Violation]:
    index = LogIndex(log, gaps)
    out = []
    delivered = 0       # the highest revision delivered in an earlier response
    bookmark = 0        # the highest progress notification
    seen: set[tuple[int, bytes]] = set()
    for number, response in enumerate(responses):
        where = f"response {number} (stream {response.session})"
        if response.progress:
            # It may trail events already delivered (they were flushed ahead
            # of it); it only promises that nothing up to it is still to come.
            bookmark = max(bookmark, response.header_revision)
            continue
        revisions = [event.revision for event in response.events]
        if revisions != sorted(revisions):
            out.append(Violation("watch", f"{where}: events out of order: {revisions}"))
        if revisions[0] <= delivered:
            out.append(Violation("watch", f"{where}: revision {revisions[0]} delivered after "
                                 f"revision {delivered} (not ordered, or not atomic)"))
        if revisions[0] <= bookmark:
            out.append(Violation("watch", f"{where}: revision {revisions[0]} delivered after a "
                                 f"progress notification at {bookmark}"))
        delivered = max(delivered, revisions[-1])
        for event in response.events:
            if (event.revision, event.key) in seen:
                out.append(Violation("watch", f"{where}: {event} delivered twice"))
            seen.add((event.revision, event.key))
            out += _check_event(event, index, key, range_end, where)
    return out


def _check_event(event, index: LogIndex, key: bytes, range_end: bytes,
                 where: str) -> list[Violation]:
    out = []
    if not key <= event.key < range_end:
        out.append(Violation("watch", f"{where}: {event} is outside the watched range"))
    if not index.known(event.revision):
        return out
    before = index.state_at(event.key, event.revision - 1)
    if event.prev_kv != before:
        out.append(Violation("watch", f"{where}: {event} has prev_kv {event.prev_kv}, the "
                             f"write log has {before} before it"))
    if event.kv is not None:
        created = event.kv.version == 1
        if created != (before is None) or created != (event.kv.create_revision == event.revision):
            out.append(Violation("watch", f"{where}: {event} says created={created}, but the "
                                 f"key held {before} before it"))
    return out


def check_probes(probes: list[WatchProbe], log: list[LoggedWrite], compacted_to: int,
                 allow_etcd_19179: bool = True) -> list[Violation]:
    """Watches opened after the last restart: one from a revision the
    compaction (acknowledged up to `compacted_to`) removed is refused; any
    other sees exactly the write log from its start revision.

    `allow_etcd_19179`: a watch opened at the compaction revision itself may
    miss a delete at that revision. etcd 3.4 does (etcd issue #19179, fixed
    in later etcd: the compaction drops the tombstone); so does pykv today.
    """
    out = []
    for probe in probes:
        start = probe.start_revision
        if probe.compact_revision:
            if start >= probe.compact_revision or probe.compact_revision < compacted_to:
                out.append(Violation("watch", f"watch from {start} refused as compacted at "
                                     f"{probe.compact_revision}; compaction acknowledged up "
                                     f"to {compacted_to}"))
            continue
        if start < compacted_to:
            out.append(Violation("watch", f"watch from {start} accepted after a compaction to "
                                 f"{compacted_to} was acknowledged: compaction went back"))
            continue
        expected = [write for write in log if write.revision >= start]
        if allow_etcd_19179 and start == compacted_to:
            expected = [write for write in expected
                        if not (write.revision == start and write.value is None)]
        if probe.events != expected:
            first = next((i for i, (a, b) in enumerate(zip(probe.events, expected)) if a != b),
                         min(len(probe.events), len(expected)))
            out.append(Violation("watch", f"watch from {start} differs from the write log at "
                                 f"event {first}: got {probe.events[first:first + 2]}, log has "
                                 f"{expected[first:first + 2]}"))
    return out
