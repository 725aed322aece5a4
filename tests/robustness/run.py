"""One robustness run: start `pykv serve`, drive recorded traffic while a
nemesis SIGKILLs and restarts it, read the final state and the write log,
then validate the history. `run()` returns a `Report`; `Report.failure()`
is the message to show (seed, data dir, the window around each violation)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import random
import threading
import time

import grpc

from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.e2e.harness import ServerProcess, etcdctl
from tests.robustness import validate, validate_mvcc, validate_watch
from tests.robustness.history import (
    COMPACT,
    FAIL,
    GET,
    LEASE_REVOKE,
    LINEARIZED_KINDS,
    OK,
    STALE_GET,
    UNKNOWN,
    KeyValue,
    Operation,
    Recorder,
    window,
)
from tests.robustness.traffic import INDETERMINATE, Client, key_value
from tests.robustness.traffic_mvcc import LEASE_KEYS, MvccClient, Shared
from tests.robustness.validate import Violation
from tests.robustness.watcher import Watcher, probe

PREFIX = b"/robustness/"
_PREFIX_END = PREFIX[:-1] + bytes([PREFIX[-1] + 1])
# The reads after the traffic have no reason to time out early, whatever
# the traffic's request timeout.
_FINAL_TIMEOUT_S = 30.0


@dataclasses.dataclass
class Config:
    seed: int
    duration_s: float = 10.0
    clients: int = 6
    keys: int = 6
    kills: int = 2
    ops_per_s: float = 150.0       # all clients together; keeps a key's history to hundreds
    request_timeout_s: float = 5.0    # longer than CI stalls: a timeout is an indeterminate op
    checker_budget_s: float = 60.0
    compaction: bool = False       # client 0 compacts; all read at past revisions
    leases: bool = False           # grant, put with a lease, revoke


@dataclasses.dataclass
class Report:
    config: Config
    data_dir: pathlib.Path
    history_path: pathlib.Path
    counts: dict[str, int]
    kill_times_s: list[float]
    final_revision: int
    check_s: float
    violations: list[Violation]
    operations: list = dataclasses.field(repr=False, default_factory=list)  # as checked (patched)
    log: list = dataclasses.field(repr=False, default_factory=list)  # the watcher's write log
    watch_responses: list = dataclasses.field(repr=False, default_factory=list)

    def summary(self) -> str:
        return (f"seed {self.config.seed}: {sum(self.counts.values())} operations "
                f"({', '.join(f'{n} {s}' for s, n in self.counts.items())}), "
                f"{len(self.kill_times_s)} kills, final revision {self.final_revision}, "
                f"{self._watch_summary()}, "
                f"checked in {self.check_s:.2f}s: "
                f"{'OK' if not self.violations else f'{len(self.violations)} violations'}")

    def _watch_summary(self) -> str:
        progress = sum(1 for response in self.watch_responses if response.progress)
        streams = len({response.session for response in self.watch_responses})
        return (f"watched {len(self.watch_responses) - progress} event responses and "
                f"{progress} progress notifications over {streams} streams, "
                f"{_expiries(self.operations, self.log)} lease deletes without a revoke")

    def failure(self) -> str:
        lines = [self.summary(), f"data dir kept: {self.data_dir}",
                 f"history: {self.history_path}",
                 f"kills at (monotonic): {', '.join(f'{t:.4f}' for t in self.kill_times_s)}"]
        for violation in self.violations[:5]:
            lines.append(str(violation))
            keys = {op.key for op in violation.operations}
            context = [op for op in self.operations if op.key in keys]
            for op in window(context, violation.operations):
                mark = ">>" if op in violation.operations else "  "
                lines.append(f"  {mark} {op.describe()}")
        if len(self.violations) > 5:
            lines.append(f"... and {len(self.violations) - 5} more")
        return "\n".join(lines)


class Nemesis:
    """SIGKILLs the server at seeded random moments and restarts it on the
    same data dir; `up` is clear while it is down."""

    def __init__(self, server: ServerProcess, config: Config, up: threading.Event) -> None:
        self.server = server
        self.up = up
        rng = random.Random(config.seed)
        # Spread the kills over the middle of the run, one per slot.
        slot = config.duration_s * 0.8 / max(config.kills, 1)
        self.delays_s = [config.duration_s * 0.1 + slot * (i + rng.uniform(0.1, 0.9))
                         for i in range(config.kills)]
        self.kill_times_s: list[float] = []
        self.restarts = 0
        self.error: BaseException | None = None

    def run(self, started_s: float, stop: threading.Event) -> None:
        try:
            for delay in self.delays_s:
                if stop.wait(max(0.0, started_s + delay - time.monotonic())):
                    return
                self.crash_and_restart()
        except BaseException as error:  # noqa: BLE001 - reported by the run, not lost in a thread
            self.error = error
            stop.set()

    def crash_and_restart(self) -> None:
        self.up.clear()
        self.kill_times_s.append(time.monotonic())
        self.server.kill()
        self.restarts += 1
        # A log per incarnation: start() waits for this one's "ready" line.
        data_dir = self.server.data_dir
        self.server.log_path = data_dir.parent / f"{data_dir.name}.{self.restarts}.log"
        self.server.start()
        self.up.set()


def _final_read(endpoint: str, recorder: Recorder, keys: list[bytes], first_client: int,
                timeout_s: float) -> tuple[int, dict[bytes, KeyValue]]:
    """A linearizable read of every key, recorded as one GET per key (each from
    a client of its own, as they are concurrent)."""
    with grpc.insecure_channel(endpoint) as channel:
        ops = [recorder.invoke(first_client + i, GET, key) for i, key in enumerate(keys)]
        response = rpc_pb2_grpc.KVStub(channel).Range(
            rpc_pb2.RangeRequest(key=PREFIX, range_end=_PREFIX_END), timeout=timeout_s)
    final = {item.key: key_value(item) for item in response.kvs}
    for op in ops:
        Recorder.ok(op, revision=response.header.revision, kv=final.get(op.key))
    return response.header.revision, final


def _expiries(operations: list[Operation], log: list) -> int:
    """How many lease-attached keys were deleted with no revoke sent: expired."""
    revoked = {op.lease for op in operations if op.kind == LEASE_REVOKE}
    attached: dict[bytes, int] = {}
    count = 0
    for write in log:
        lease = attached.pop(write.key, 0)
        if write.value is None and lease and lease not in revoked:
            count += 1
        elif write.value is not None and write.lease:
            attached[write.key] = write.lease
    return count


def _probe_starts(seed: int, compacted_to: int, final_revision: int) -> list[int]:
    """Revisions to watch from after the last restart: around the compaction,
    one between it and the end, the end and past it."""
    rng = random.Random(seed)
    starts = {compacted_to - 1, compacted_to, compacted_to + 1,
              rng.randint(max(1, compacted_to), final_revision), final_revision,
              final_revision + 1}
    return sorted(start for start in starts if start >= 1)


def _list_leases(endpoint: str, timeout_s: float) -> set[int]:
    with grpc.insecure_channel(endpoint) as channel:
        response = rpc_pb2_grpc.LeaseStub(channel).LeaseLeases(rpc_pb2.LeaseLeasesRequest(),
                                                               timeout=timeout_s)
    return {lease.ID for lease in response.leases}


def _recorded(recorder: Recorder, client: int, kind: str, key: bytes, call, **fields) -> None:
    """Send one request outside the traffic, recorded like the traffic's."""
    op = recorder.invoke(client, kind, key, **fields)
    try:
        Recorder.ok(op, revision=call(op))
    except grpc.RpcError as error:
        Recorder.fail(op, f"{error.code().name}: {error.details()}",
                      definite=error.code() not in INDETERMINATE)


def _revoke_all(endpoint: str, recorder: Recorder, leases: set[int], client: int) -> None:
    """Revoke what is left, so that no lease expires during the final checks."""
    with grpc.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.LeaseStub(channel)
        for lease in sorted(leases):
            _recorded(recorder, client, LEASE_REVOKE, b"", lambda op: stub.LeaseRevoke(
                rpc_pb2.LeaseRevokeRequest(ID=op.lease), timeout=_FINAL_TIMEOUT_S
            ).header.revision, lease=lease)


def _probe_compaction(endpoint: str, recorder: Recorder, operations: list[Operation],
                      key: bytes, client: int) -> None:
    """After the last restart, a read just below the highest acknowledged
    compaction must be refused: compaction does not go back across a kill."""
    acked = [op.at_revision for op in operations if op.kind == COMPACT and op.status == OK]
    if not acked or max(acked) < 2:
        return
    with grpc.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)
        op = recorder.invoke(client, STALE_GET, key, at_revision=max(acked) - 1)
        try:
            response = stub.Range(rpc_pb2.RangeRequest(key=key, revision=op.at_revision),
                                  timeout=_FINAL_TIMEOUT_S)
            Recorder.ok(op, revision=response.header.revision,
                        kv=key_value(response.kvs[0]) if response.kvs else None)
        except grpc.RpcError as error:
            Recorder.fail(op, f"{error.code().name}: {error.details()}",
                      definite=error.code() not in INDETERMINATE)


def _hashkv(endpoint: str) -> tuple[int, int]:
    """(hash, revision) from `etcdctl endpoint hashkv`."""
    out = json.loads(etcdctl(endpoint, "endpoint", "hashkv", "-w", "json").stdout)[0]["HashKV"]
    return out["hash"], out["header"]["revision"]


def _client(config: Config, number: int, endpoint: str, keys: list[bytes], recorder: Recorder,
            shared: Shared) -> Client:
    args = (number, endpoint, keys, recorder, config.seed, config.ops_per_s / config.clients,
            config.request_timeout_s)
    if not (config.compaction or config.leases):
        return Client(*args)
    lease_keys = [PREFIX + b"lease/%d" % i for i in range(LEASE_KEYS)]
    return MvccClient(*args, shared=shared, compaction=config.compaction,
                      leases=config.leases, lease_keys=lease_keys)


def run(config: Config, data_dir: pathlib.Path) -> Report:
    """Run traffic with kills against a fresh server on `data_dir`; the caller
    owns the directory (it is left in place, with the logs and history beside it)."""
    keys = [PREFIX + b"%d" % i for i in range(config.keys)]
    recorder = Recorder()
    server = ServerProcess(data_dir).start()
    try:
        up, stop = threading.Event(), threading.Event()
        up.set()
        watcher = Watcher(server.endpoint, PREFIX, _PREFIX_END, up).start()
        shared = Shared(watcher)
        clients = [_client(config, n, server.endpoint, keys, recorder, shared)
                   for n in range(config.clients)]
        threads = [threading.Thread(target=c.run, args=(stop, up), daemon=True) for c in clients]
        nemesis = Nemesis(server, config, up)
        started_s = time.monotonic()
        threads.append(threading.Thread(target=nemesis.run, args=(started_s, stop), daemon=True))
        for thread in threads:
            thread.start()
        stop.wait(config.duration_s)
        stop.set()
        for thread in threads:
            thread.join(30)
            assert not thread.is_alive(), "a client or the nemesis did not stop"
        if nemesis.error is not None:
            raise RuntimeError(f"restart failed; data dir {data_dir}:\n{server.log()}") \
                from nemesis.error

        listed_leases, listed_s = None, time.monotonic()
        spare_client = config.clients + 2 * config.keys
        if config.leases:
            listed_leases = _list_leases(server.endpoint, _FINAL_TIMEOUT_S)
            _revoke_all(server.endpoint, recorder, listed_leases, spare_client)
        final_revision, final = _final_read(server.endpoint, recorder, keys, config.clients,
                                            _FINAL_TIMEOUT_S)
        log = watcher.collect(final_revision, _FINAL_TIMEOUT_S)
        hash_before = _hashkv(server.endpoint)
        nemesis.crash_and_restart()  # a crash with no writes in flight changes nothing
        hash_after = _hashkv(server.endpoint)
        _, final_after = _final_read(server.endpoint, recorder, keys,
                                     config.clients + config.keys,
                                     _FINAL_TIMEOUT_S)
        _probe_compaction(server.endpoint, recorder, recorder.operations, keys[0],
                          spare_client + 1)
        compacted_to = max((op.at_revision for op in recorder.operations
                            if op.kind == COMPACT and op.status == OK), default=0)
        probes = [probe(server.endpoint, PREFIX, _PREFIX_END, start, final_revision,
                        _FINAL_TIMEOUT_S)
                  for start in _probe_starts(config.seed, compacted_to, final_revision)]
        assert server.stop() == 0, f"pykv serve did not stop cleanly:\n{server.log()}"
    finally:
        server.kill()

    operations = recorder.operations
    checked_s = time.monotonic()
    violations = validate.check_clients(operations)
    violations += validate.check_revisions(operations, final_revision)
    violations += validate.check_final_state(operations, final, keys)
    violations += validate.check_write_log(operations, log, 1, final_revision)
    # The write log is checked against every acknowledged write above, so it
    # may settle the indeterminate ones for the search, as etcd's WAL does.
    patched = validate.patch_history(operations, log)
    violations += validate.check_linearizable(
        [op for op in patched if op.kind in LINEARIZED_KINDS and op.key in keys],
        config.checker_budget_s)
    violations += validate_mvcc.check_stale_reads(operations, log, watcher.gaps)
    violations += validate_mvcc.check_compactions(operations)
    violations += validate_mvcc.check_leases(operations, log, listed_leases, listed_s)
    violations += validate_watch.check_watch(watcher.responses, log, watcher.gaps, PREFIX,
                                             _PREFIX_END)
    if not watcher.gaps:
        violations += validate_watch.check_probes(probes, log, compacted_to)
    if hash_before != hash_after:
        violations.append(Violation("hashkv", f"endpoint hashkv (hash, revision) was "
                                    f"{hash_before} before a crash without writes and "
                                    f"{hash_after} after it"))
    if final_after != final:
        violations.append(Violation("final state", "a crash without writes changed the data: "
                                    f"{final} became {final_after}"))
    check_s = time.monotonic() - checked_s
    history_path = data_dir.parent / f"{data_dir.name}.history.jsonl"
    recorder.save(history_path)
    watcher.save(data_dir.parent / f"{data_dir.name}.watch.jsonl")
    counts = {status: sum(1 for op in operations if op.status == status)
              for status in (OK, FAIL, UNKNOWN)}
    return Report(config, data_dir, history_path, counts, nemesis.kill_times_s[:-1],
                  final_revision, check_s, violations, patched, log, watcher.responses)
