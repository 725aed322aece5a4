"""What one benchmark run does: the settings every worker process receives.

A ``BenchConfig`` travels from the parent to its worker processes as JSON
(no pickle), so it holds only plain values.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

WORKLOADS = ("put", "range", "txn-put", "watch", "lease-keepalive", "mixed")


@dataclass
class TLSConfig:
    """Client TLS like etcdctl's flags; all empty means plaintext."""

    cacert: str = ""
    cert: str = ""
    key: str = ""
    # Name to check the server certificate against, when it differs from the
    # endpoint's host (e.g. a certificate for "localhost" served on 127.0.0.1).
    server_name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cacert or self.cert or self.key)


@dataclass
class BenchConfig:
    """Settings of one run. Invariants: clients >= 1, conns >= 1, procs >= 1,
    exactly one of total > 0 or duration_s > 0."""

    workload: str
    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    clients: int = 1
    conns: int = 1
    procs: int = 1
    total: int = 0
    duration_s: float = 0.0
    rate: float = 0.0  # requests per second over all workers; 0 means unlimited
    key_size: int = 8
    val_size: int = 8
    key_space: int = 1
    seq_keys: bool = False
    prefix: str = ""
    dial_timeout_s: float = 5.0
    # Worker event loop: "auto" takes uvloop when installed (~10% less CPU per call).
    loop: str = "auto"
    tls: TLSConfig = field(default_factory=TLSConfig)
    user: str = ""  # NAME:PASSWORD for etcd auth; empty means no auth
    # range / mixed
    serializable: bool = False
    range_key: str = ""  # empty: the first key of the key space
    range_end: str = ""
    # mixed
    read_ratio: float = 0.9
    # txn-put
    txn_ops: int = 1
    # watch
    watchers: int = 1
    streams: int = 1
    put_rate: float = 100.0
    # lease-keepalive
    lease_ttl_s: int = 60
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError with a message a person can act on."""
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}; expected one of {', '.join(WORKLOADS)}")
        if self.loop not in ("auto", "asyncio", "uvloop"):
            raise ValueError(f"--loop must be auto, asyncio or uvloop, got {self.loop!r}")
        if not self.endpoints:
            raise ValueError("--endpoints: at least one endpoint is needed")
        for name in ("clients", "conns", "procs", "key_size", "key_space", "txn_ops", "watchers",
                     "streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if (self.total > 0) == (self.duration_s > 0):
            raise ValueError("give exactly one of --total N or --duration SECONDS")
        if self.total < 0 or self.duration_s < 0 or self.rate < 0 or self.val_size < 0:
            raise ValueError("--total, --duration, --rate and --val-size cannot be negative")
        if not 0.0 <= self.read_ratio <= 1.0:
            raise ValueError(f"--read-ratio must be within [0, 1], got {self.read_ratio}")
        if self.txn_ops > self.key_space and self.workload == "txn-put":
            raise ValueError(f"--txn-ops ({self.txn_ops}) cannot exceed --key-space ({self.key_space}): "
                             "a txn may not put the same key twice")
        if self.workload == "watch" and self.put_rate <= 0:
            raise ValueError("--put-rate must be positive for the watch workload")
        for flag, path in (("--cacert", self.tls.cacert), ("--cert", self.tls.cert),
                           ("--key", self.tls.key)):
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"cannot read {flag} {path!r}")
        if bool(self.tls.cert) != bool(self.tls.key):
            raise ValueError("--cert and --key go together")
        if self.user and ":" not in self.user:
            raise ValueError("--user must be NAME:PASSWORD (the bench cannot prompt for a password)")
        digits = self.key_size - len(self.prefix.encode())
        if digits < 1 or 16 ** min(digits, 15) < self.key_space:
            raise ValueError(f"--key-size {self.key_size} leaves {max(digits, 0)} hex digits after "
                             f"--prefix {self.prefix!r}: too few for --key-space {self.key_space}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BenchConfig":
        raw = json.loads(text)
        raw["tls"] = TLSConfig(**raw.get("tls", {}))
        return cls(**raw)


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
