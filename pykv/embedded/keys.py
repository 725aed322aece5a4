"""Keys, values and ranges as the embedded API takes them.

Keys and values are ``bytes`` (or anything bytes-like) or ``str``, which is
encoded as UTF-8. Results always carry ``bytes``, as etcd's do.
"""

from __future__ import annotations

from typing import Union

from pykv.mvcc import types as t

#: What the API accepts for a key or a value.
Bytes = Union[bytes, bytearray, memoryview, str]

#: etcd's range_end for "every key from ``key`` on" (clientv3.WithFromKey).
FROM_KEY = b"\x00"

SORT_ORDERS = {"none": t.SORT_NONE, "ascend": t.SORT_ASCEND, "descend": t.SORT_DESCEND}
SORT_TARGETS = {"key": t.TARGET_KEY, "version": t.TARGET_VERSION, "create": t.TARGET_CREATE,
                "mod": t.TARGET_MOD, "value": t.TARGET_VALUE}


def as_bytes(data: Bytes, what: str = "key") -> bytes:
    """``data`` as bytes: str is UTF-8 encoded; anything else must be
    bytes-like."""
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with ``prefix``
    (etcd's GetPrefixRangeEnd): the prefix with its last byte below 0xff
    incremented, or "every key from here on" when there is none."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[:i + 1])
    return FROM_KEY


def key_range(key: Bytes, range_end: Bytes | None, prefix: bool, from_key: bool
              ) -> tuple[bytes, bytes]:
    """(key, range_end) in etcd's encoding for one key (range_end empty), a
    range, a prefix or "from key on". An empty key with ``prefix`` or
    ``from_key`` means every key (etcd's ``"\\0"``, ``"\\0"``)."""
    key_b = as_bytes(key)
    chosen = (range_end is not None) + bool(prefix) + bool(from_key)
    if chosen > 1:
        raise ValueError("give at most one of range_end, prefix=True, from_key=True")
    if prefix:
        if not key_b:
            return FROM_KEY, FROM_KEY
        return key_b, prefix_end(key_b)
    if from_key:
        return (key_b or FROM_KEY), FROM_KEY
    if range_end is not None:
        return key_b, as_bytes(range_end, "range_end")
    return key_b, b""


def sort_order(value: str | int) -> int:
    return _choice(value, SORT_ORDERS, "sort_order")


def sort_target(value: str | int) -> int:
    return _choice(value, SORT_TARGETS, "sort_target")


def _choice(value: str | int, table: dict[str, int], what: str) -> int:
    if isinstance(value, str):
        try:
            return table[value.lower()]
        except KeyError:
            raise ValueError(f"{what} must be one of {sorted(table)}, not {value!r}") from None
    if value not in table.values():
        raise ValueError(f"{what} must be one of {sorted(table)}, not {value!r}")
    return int(value)
