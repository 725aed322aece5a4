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
check on the same watcher's log.
"""

from __future__ import annotations

from tests.robustness.validate import LoggedWrite, Violation
from tests.robustness.validate_mvcc import LogIndex
from tests.robustness.watcher import WatchResponseRecord


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
