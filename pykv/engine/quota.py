"""etcd's backend quota, the part the server and the embedded API share.

Past ``--quota-backend-bytes`` a write that adds data is refused with
``NoSpace``, and the member raises the NOSPACE alarm once, through its log
(Raft for the server, the commit path for ``pykv.open``) so that the alarm is
durable and every reader of the directory sees it. How each side measures
the size, and how it submits the alarm (awaited proposal or direct write),
stays with it.
"""

from __future__ import annotations

from pykv.api.etcdserverpb import rpc_pb2
from pykv.mvcc import Store
from pykv.mvcc import types as mvcc_types


def nospace_alarm(store: Store, member_id: int) -> rpc_pb2.AlarmRequest | None:
    """The request that raises NOSPACE for ``member_id``, or None when the
    store already has a NOSPACE alarm. The caller submits it (as
    ``Kind.ALARM``), ignores an EtcdError from it, and refuses the write
    with ``errors.NoSpace`` either way."""
    if any(a.alarm == mvcc_types.ALARM_NOSPACE for a in store.alarms()):
        return None
    return rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member_id,
                                alarm=rpc_pb2.NOSPACE)
