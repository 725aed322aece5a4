"""Member and cluster ids, computed as etcd computes them, so that a default
single member gets etcd's well-known ids (8e9e05c52164694d, cluster
cdf818194e3a8c32) and clients that log or compare ids see familiar values."""

from __future__ import annotations

import hashlib
import struct

DEFAULT_NAME = "default"
DEFAULT_PEER_URLS = ("http://localhost:2380",)
DEFAULT_CLUSTER_TOKEN = "etcd-cluster"


def member_id_for(peer_urls, cluster_token: str) -> int:
    """etcd's computeMemberID: sha1(sorted peer URLs + cluster token)[:8]."""
    digest = hashlib.sha1(("".join(sorted(peer_urls)) + cluster_token).encode()).digest()
    return struct.unpack(">Q", digest[:8])[0]


def cluster_id_for(member_ids) -> int:
    """etcd's genID: sha1 over the sorted member ids (8 bytes big-endian each)."""
    blob = b"".join(struct.pack(">Q", m) for m in sorted(member_ids))
    return struct.unpack(">Q", hashlib.sha1(blob).digest()[:8])[0]


def default_member() -> tuple[int, int]:
    """(member id, cluster id) of a one-member cluster with etcd's defaults."""
    member_id = member_id_for(DEFAULT_PEER_URLS, DEFAULT_CLUSTER_TOKEN)
    return member_id, cluster_id_for([member_id])
