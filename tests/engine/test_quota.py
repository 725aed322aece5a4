"""The NOSPACE alarm request the server and the embedded API share."""

from __future__ import annotations

from pykv.api.etcdserverpb import rpc_pb2
from pykv.engine.quota import nospace_alarm
from pykv.mvcc import Store
from pykv.mvcc import types as mvcc_types

MEMBER = 0x8E9E05C52164694D


def test_nospace_alarm_is_asked_for_once_then_not_again(tmp_path):
    store = Store.open(str(tmp_path / "db"), map_bytes=16 << 20)
    try:
        alarm = nospace_alarm(store, MEMBER)
        assert alarm == rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE,
                                             memberID=MEMBER, alarm=rpc_pb2.NOSPACE)
        with store.write(1) as w:
            w.alarm(alarm.action, alarm.memberID, alarm.alarm)
        assert store.alarms() == [mvcc_types.AlarmMember(MEMBER, mvcc_types.ALARM_NOSPACE)]
        assert nospace_alarm(store, MEMBER) is None
        assert nospace_alarm(store, MEMBER + 1) is None  # one member's alarm is the cluster's
    finally:
        store.close()


def test_a_corrupt_alarm_does_not_hide_a_missing_nospace_alarm(tmp_path):
    store = Store.open(str(tmp_path / "db"), map_bytes=16 << 20)
    try:
        with store.write(1) as w:
            w.alarm(rpc_pb2.AlarmRequest.ACTIVATE, MEMBER, mvcc_types.ALARM_CORRUPT)
        assert nospace_alarm(store, MEMBER) is not None
    finally:
        store.close()
