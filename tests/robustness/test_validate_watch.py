"""The watch guarantees validator: passes a good stream of responses and
fails each bad one it exists for."""

from __future__ import annotations

import dataclasses

from tests.robustness import validate_watch
from tests.robustness.test_linearizability import kv
from tests.robustness.validate import LoggedWrite
from tests.robustness.watcher import WatchedEvent, WatchProbe, WatchResponseRecord

LOG = [LoggedWrite(2, b"/p/a", b"1"), LoggedWrite(3, b"/p/a", b"2"), LoggedWrite(4, b"/p/a", None),
       LoggedWrite(5, b"/p/b", b"3")]
EVENTS = [WatchedEvent(2, b"/p/a", kv(b"1", 2, 1, 2), None),
          WatchedEvent(3, b"/p/a", kv(b"2", 3, 2, 2), kv(b"1", 2, 1, 2)),
          WatchedEvent(4, b"/p/a", None, kv(b"2", 3, 2, 2)),
          WatchedEvent(5, b"/p/b", kv(b"3", 5, 1, 5), None)]


def response(*events: WatchedEvent, session: int = 0) -> WatchResponseRecord:
    return WatchResponseRecord(session, max(e.revision for e in events), events, progress=False)


def progress(revision: int, session: int = 0) -> WatchResponseRecord:
    return WatchResponseRecord(session, revision, (), progress=True)


def check(responses: list[WatchResponseRecord]) -> list[str]:
    return [str(v) for v in validate_watch.check_watch(responses, LOG, [], b"/p/", b"/p0")]


def test_ordered_resumed_stream_with_bookmarks_passes():
    assert check([response(EVENTS[0]), progress(2), response(EVENTS[1], EVENTS[2]),
                  response(EVENTS[3], session=1), progress(5, session=1)]) == []


def test_event_going_back_or_delivered_twice_is_caught():
    assert any("delivered after revision 3" in v
               for v in check([response(EVENTS[0], EVENTS[1]), response(EVENTS[0])]))
    assert any("delivered twice" in v
               for v in check([response(EVENTS[0]), response(EVENTS[0], session=1)]))
    assert any("out of order" in v for v in check([response(EVENTS[1], EVENTS[0])]))


def test_event_at_or_below_a_progress_notification_breaks_the_bookmark():
    assert any("after a progress notification at 3" in v
               for v in check([response(EVENTS[0]), progress(3), response(EVENTS[1])]))


def test_wrong_prev_kv_or_create_flag_or_key_outside_the_range_is_caught():
    no_prev = dataclasses.replace(EVENTS[1], prev_kv=None)
    assert any("prev_kv None" in v for v in check([response(EVENTS[0], no_prev)]))
    recreated = dataclasses.replace(EVENTS[1], kv=kv(b"2", 3, 1, 3))
    assert any("created=True" in v for v in check([response(EVENTS[0], recreated)]))
    outside = WatchedEvent(6, b"/q", kv(b"4", 6), None)
    assert any("outside the watched range" in v for v in check([response(outside)]))


def test_watch_probes_see_the_log_from_their_start_or_are_refused_below_the_compaction():
    good = [WatchProbe(2, [], compact_revision=3), WatchProbe(3, LOG[1:]),
            WatchProbe(5, LOG[3:]), WatchProbe(6, [])]
    assert validate_watch.check_probes(good, LOG, compacted_to=3) == []


def test_watch_probe_accepted_below_the_compaction_or_missing_an_event_is_caught():
    forgot = [WatchProbe(2, LOG)]
    assert "compaction went back" in str(validate_watch.check_probes(forgot, LOG, 3)[0])
    gap = [WatchProbe(3, [LOG[1], LOG[3]])]
    assert "differs from the write log at event 1" in str(
        validate_watch.check_probes(gap, LOG, 3)[0])
    refused = [WatchProbe(4, [], compact_revision=3)]
    assert "refused as compacted" in str(validate_watch.check_probes(refused, LOG, 3)[0])


def test_watch_at_the_compaction_revision_missing_its_delete_is_etcd_19179():
    log = [LoggedWrite(2, b"/p/a", b"1"), LoggedWrite(3, b"/p/a", None),
           LoggedWrite(4, b"/p/b", b"2")]
    probes = [WatchProbe(3, log[2:])]  # the delete at 3 is missing
    assert validate_watch.check_probes(probes, log, compacted_to=3) == []
    assert validate_watch.check_probes(probes, log, compacted_to=3, allow_etcd_19179=False)
