"""etcd requests built from the embedded API's arguments.

They are the generated ``etcdserverpb`` messages: the write path stores
their encoding in the WAL (the bytes a ``pykv serve`` client would have
sent), and the MVCC store reads them by attribute.
"""

from __future__ import annotations

from pykv.api.etcdserverpb import rpc_pb2
from pykv.embedded import keys
from pykv.embedded.keys import Bytes, as_bytes, key_range


def lease_id_of(lease: object) -> int:
    """A lease id from an int or anything with an ``id`` (a ``Lease``)."""
    lease_id = getattr(lease, "id", lease)
    if isinstance(lease_id, bool) or not isinstance(lease_id, int):
        raise TypeError(f"lease must be an int id or a Lease, not {type(lease).__name__}")
    return lease_id


def put_request(key: Bytes, value: Bytes, lease: object = 0, prev_kv: bool = False,
                ignore_value: bool = False, ignore_lease: bool = False) -> rpc_pb2.PutRequest:
    req = rpc_pb2.PutRequest()
    fill_put(req, key, value, lease, prev_kv, ignore_value, ignore_lease)
    return req


def fill_put(req: rpc_pb2.PutRequest, key: Bytes, value: Bytes, lease: object = 0,
             prev_kv: bool = False, ignore_value: bool = False, ignore_lease: bool = False
             ) -> None:
    """Set the fields of ``req`` (setting only those that are not the
    default costs a third of building the message from keywords)."""
    req.key = key if type(key) is bytes else as_bytes(key)
    req.value = value if type(value) is bytes else as_bytes(value, "value")
    if lease:
        req.lease = lease_id_of(lease)
    if prev_kv:
        req.prev_kv = True
    if ignore_value:
        req.ignore_value = True
    if ignore_lease:
        req.ignore_lease = True


def range_request(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
                  from_key: bool = False, limit: int = 0, revision: int = 0,
                  sort_order: str | int = "none", sort_target: str | int = "key",
                  keys_only: bool = False, count_only: bool = False,
                  min_mod_revision: int = 0, max_mod_revision: int = 0,
                  min_create_revision: int = 0, max_create_revision: int = 0
                  ) -> rpc_pb2.RangeRequest:
    start, end = key_range(key, range_end, prefix, from_key)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    return rpc_pb2.RangeRequest(
        key=start, range_end=end, limit=limit, revision=revision,
        sort_order=keys.sort_order(sort_order), sort_target=keys.sort_target(sort_target),
        keys_only=keys_only, count_only=count_only, min_mod_revision=min_mod_revision,
        max_mod_revision=max_mod_revision, min_create_revision=min_create_revision,
        max_create_revision=max_create_revision)


def delete_request(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False,
                   from_key: bool = False, prev_kv: bool = False
                   ) -> rpc_pb2.DeleteRangeRequest:
    start, end = key_range(key, range_end, prefix, from_key)
    return rpc_pb2.DeleteRangeRequest(key=start, range_end=end, prev_kv=prev_kv)
