"""One load-generating process: ``python -m pykv.bench.worker``.

Python's gRPC client costs ~100 us of CPU per call, so one process cannot load
a server fast enough on its own; the runner starts several of these, each with
its own channels and an asyncio loop of many calls in flight.

Protocol with the runner (text lines; no pickle):

- stdin, first line: the worker's plan as JSON (see ``runner.WorkerPlan``);
- stdout ``ready``: connected and set up (watchers created, leases granted);
- stdin ``go <t0_ns>``: start at CLOCK_MONOTONIC time t0 (shared by all
  processes on this host, so every worker starts together);
- stdout ``progress <n>`` now and then, then one ``result <json>``;
- stdout ``error <message>`` instead, when the worker cannot go on.
"""

from __future__ import annotations

import array
import asyncio
import base64
import json
import random
import resource
import sys
import time
from dataclasses import dataclass, field

import grpc

from pykv.api.etcdserverpb import rpc_pb2

from . import requests as rq
from .channels import aio_channel
from .config import BenchConfig

_PROGRESS_INTERVAL_S = 0.2
_BUCKET_NS = 100_000_000  # throughput time series: 100 ms buckets
_CALL_TIMEOUT_S = 30.0


class WorkerError(Exception):
    """A failure that ends this worker, with a message for the person running the bench."""


@dataclass
class OpRecord:
    """Latencies (ns) of one kind of operation, and completions per 100 ms bucket."""

    latencies_ns: array.array = field(default_factory=lambda: array.array("q"))
    buckets: list[int] = field(default_factory=list)

    def add(self, latency_ns: int, bucket: int) -> None:
        self.latencies_ns.append(latency_ns)
        if bucket >= 0:
            if bucket >= len(self.buckets):
                self.buckets.extend([0] * (bucket + 1 - len(self.buckets)))
            self.buckets[bucket] += 1

    def to_json(self) -> dict:
        return {"latencies_ns": base64.b64encode(self.latencies_ns.tobytes()).decode(),
                "buckets": self.buckets}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _error_text(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"


class Worker:
    def __init__(self, plan: dict):
        self.config = BenchConfig.from_json(json.dumps(plan["config"]))
        self.index: int = plan["index"]
        self.workers: int = plan["workers"]
        self.clients: int = plan["clients"]
        self.conn_endpoints: list[str] = plan["conn_endpoints"]
        self.quota: int = plan["quota"]
        self.rate: float = plan["rate"]
        self.watchers: int = plan["watchers"]
        self.streams: int = plan["streams"]
        self.putter: bool = plan["putter"]

        self.channels: list[grpc.aio.Channel] = []
        self.ops: dict[str, OpRecord] = {}
        self.errors: dict[str, int] = {}
        self.done = 0
        self.issued = 0
        self.t0_ns = 0
        self.deadline_ns = 0
        self.first_start_ns = 0
        self.last_end_ns = 0
        self.keys = rq.KeyChooser(self.config, self.index, self.workers)
        self.value = rq.value_of(self.config)
        self.mix = random.Random(self.config.seed * 7919 + self.index)  # read or write, for mixed
        self.extra: dict[str, int] = {}
        self.loop_name = "asyncio"
        self.metadata: tuple[tuple[str, str], ...] | None = None  # the auth token, with --user

    # -- bookkeeping -----------------------------------------------------

    def record(self, label: str, start_ns: int, end_ns: int) -> None:
        record = self.ops.get(label)
        if record is None:
            record = self.ops[label] = OpRecord()
        # Every request counts in the time series, even one timed across a clock tick at t0.
        record.add(end_ns - start_ns, max(0, (end_ns - self.t0_ns) // _BUCKET_NS))
        self.done += 1
        if not self.first_start_ns or start_ns < self.first_start_ns:
            self.first_start_ns = start_ns
        self.last_end_ns = max(self.last_end_ns, end_ns)

    def record_error(self, text: str) -> None:
        self.errors[text] = self.errors.get(text, 0) + 1
        self.done += 1

    def take_ticket(self) -> int | None:
        """The sequence number of the next request to send, or None when the run is over."""
        if self.config.total:
            if self.issued >= self.quota:
                return None
        elif time.monotonic_ns() >= self.deadline_ns:
            return None
        ticket = self.issued
        self.issued += 1
        return ticket

    async def pace(self, ticket: int, rate: float) -> None:
        """With a rate limit, wait for ticket's slot: t0 + ticket / rate."""
        if rate > 0:
            due_ns = self.t0_ns + int(ticket * 1e9 / rate)
            delay_ns = due_ns - time.monotonic_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / 1e9)

    # -- setup -----------------------------------------------------------

    async def connect(self) -> None:
        for endpoint in self.conn_endpoints:
            channel = aio_channel(endpoint, self.config.tls)
            self.channels.append(channel)
            try:
                await asyncio.wait_for(channel.channel_ready(), self.config.dial_timeout_s)
            except asyncio.TimeoutError:
                raise WorkerError(f"cannot connect to {endpoint} within "
                                  f"{self.config.dial_timeout_s:g} s (--dial-timeout)") from None

    async def authenticate(self) -> None:
        """With --user NAME:PASSWORD, get a token once; every call then carries it (etcd's
        metadata key "token")."""
        name, _, password = self.config.user.partition(":")
        request = rpc_pb2.AuthenticateRequest(name=name, password=password).SerializeToString()
        try:
            raw = await self.channels[0].unary_unary(rq.AUTHENTICATE)(request, timeout=_CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise WorkerError(f"--user {name}: authentication failed: {_error_text(exc)}") from None
        self.metadata = (("token", rpc_pb2.AuthenticateResponse.FromString(raw).token),)

    def channel_for(self, client: int) -> grpc.aio.Channel:
        return self.channels[client % len(self.channels)]

    async def unary(self, channel: grpc.aio.Channel, method: str, request: bytes) -> bytes:
        try:
            return await channel.unary_unary(method)(request, timeout=_CALL_TIMEOUT_S,
                                                     metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise WorkerError(f"{method} failed during setup: {_error_text(exc)}") from None

    # -- unary workloads -------------------------------------------------

    def next_request(self) -> tuple[str, str, bytes]:
        """(label, method, request bytes) of the next unary request."""
        workload = self.config.workload
        if workload == "put" or (workload == "mixed" and self.mix.random() >= self.config.read_ratio):
            return "put", rq.KV_PUT, rq.put_request(rq.key_of(self.config, self.keys.next()), self.value)
        if workload in ("range", "mixed"):
            if workload == "mixed":
                return "range", rq.KV_RANGE, self._mixed_range(self.keys.next())
            return "range", rq.KV_RANGE, self._range_bytes
        if workload == "txn-put":
            # A block of txn_ops consecutive keys: distinct within the txn, as etcd requires,
            # and (with --seq-keys) disjoint from other txns' blocks while the key space lasts.
            first = self.keys.next() * self.config.txn_ops
            keys = [rq.key_of(self.config, (first + j) % self.config.key_space)
                    for j in range(self.config.txn_ops)]
            return "txn-put", rq.KV_TXN, rq.txn_put_request(keys, self.value)
        raise AssertionError(workload)

    def _mixed_range(self, index: int) -> bytes:
        return rpc_pb2.RangeRequest(key=rq.key_of(self.config, index),
                                    serializable=self.config.serializable).SerializeToString()

    async def unary_client(self, client: int) -> None:
        channel = self.channel_for(client)
        calls = {m: channel.unary_unary(m) for m in (rq.KV_PUT, rq.KV_RANGE, rq.KV_TXN)}
        while (ticket := self.take_ticket()) is not None:
            await self.pace(ticket, self.rate)
            label, method, request = self.next_request()
            start = time.monotonic_ns()
            try:
                await calls[method](request, timeout=_CALL_TIMEOUT_S, metadata=self.metadata)
            except grpc.aio.AioRpcError as exc:
                self.record_error(_error_text(exc))
                continue
            self.record(label, start, time.monotonic_ns())

    async def setup_range(self) -> None:
        self._range_bytes = rq.range_request(self.config)
        if self.index == 0 and not self.config.range_key:
            # Read a key that exists, as a range benchmark of nothing would flatter the server.
            await self.unary(self.channels[0], rq.KV_PUT,
                             rq.put_request(rq.key_of(self.config, 0), self.value))

    # -- lease-keepalive -------------------------------------------------

    async def setup_leases(self) -> None:
        self.lease_ids: list[int] = []
        self.keepalive_calls = []
        for client in range(self.clients):
            channel = self.channel_for(client)
            raw = await self.unary(channel, rq.LEASE_GRANT, rpc_pb2.LeaseGrantRequest(
                TTL=self.config.lease_ttl_s).SerializeToString())
            lease_id = rpc_pb2.LeaseGrantResponse.FromString(raw).ID
            self.lease_ids.append(lease_id)
            self.keepalive_calls.append(
                channel.stream_stream(rq.LEASE_KEEPALIVE)(metadata=self.metadata))

    async def keepalive_client(self, client: int) -> None:
        call = self.keepalive_calls[client]
        request = rpc_pb2.LeaseKeepAliveRequest(ID=self.lease_ids[client]).SerializeToString()
        while (ticket := self.take_ticket()) is not None:
            await self.pace(ticket, self.rate)
            start = time.monotonic_ns()
            try:
                await call.write(request)
                reply = await asyncio.wait_for(call.read(), _CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                self.record_error(_error_text(exc))
                return
            except asyncio.TimeoutError:
                self.record_error(f"no keepalive response within {_CALL_TIMEOUT_S:g} s")
                return
            if reply is grpc.aio.EOF:
                self.record_error("keepalive stream closed by the server")
                return
            if rpc_pb2.LeaseKeepAliveResponse.FromString(reply).TTL <= 0:
                self.record_error("keepalive answered TTL <= 0: lease not found")
                continue
            self.record("lease-keepalive", start, time.monotonic_ns())

    async def teardown_leases(self) -> None:
        for call in self.keepalive_calls:
            call.cancel()
        for client, lease_id in enumerate(self.lease_ids):
            try:
                await self.channel_for(client).unary_unary(rq.LEASE_REVOKE)(
                    rpc_pb2.LeaseRevokeRequest(ID=lease_id).SerializeToString(), timeout=5,
                    metadata=self.metadata)
            except grpc.aio.AioRpcError:
                pass  # the lease expires by itself after its TTL

    # -- watch -----------------------------------------------------------

    async def setup_watch(self) -> None:
        self.watch_key = rq.key_of(self.config, 0)
        self.watch_calls = []
        per_stream = [self.watchers // self.streams + (1 if i < self.watchers % self.streams else 0)
                      for i in range(self.streams)]
        self.watchers_per_stream = per_stream
        for stream, count in enumerate(per_stream):
            call = self.channel_for(stream).stream_stream(rq.WATCH)(metadata=self.metadata)
            for watch_id in range(1, count + 1):
                await call.write(rq.watch_create_request(self.watch_key, watch_id))
            created = 0
            while created < count:
                raw = await asyncio.wait_for(call.read(), self.config.dial_timeout_s + 10)
                if raw is grpc.aio.EOF:
                    raise WorkerError("watch stream closed while creating watchers")
                response = rpc_pb2.WatchResponse.FromString(raw)
                if response.canceled:
                    raise WorkerError(f"watch create refused: {response.cancel_reason or 'canceled'}")
                created += response.created
            self.watch_calls.append(call)

    async def watch_reader(self, stream: int) -> None:
        call = self.watch_calls[stream]
        remaining = self.watchers_per_stream[stream]
        if remaining == 0:
            return
        # The putter runs at put_rate; a stream silent for much longer has lost its events.
        idle_s = max(10.0, 20.0 / self.config.put_rate)
        events = 0
        while remaining:
            try:
                raw = await asyncio.wait_for(call.read(), idle_s)
            except asyncio.TimeoutError:
                self.record_error(f"watch stream idle for {idle_s:g} s; "
                                  f"{remaining} watcher(s) never saw the end marker")
                break
            except grpc.aio.AioRpcError as exc:
                self.record_error(_error_text(exc))
                break
            if raw is grpc.aio.EOF:
                self.record_error("watch stream closed by the server")
                break
            now = time.monotonic_ns()
            for event in rpc_pb2.WatchResponse.FromString(raw).events:
                sent = rq.sent_ns_of(event.kv.value)
                if sent is None:
                    remaining -= 1
                else:
                    events += 1
                    self.record("watch", sent, now)
        self.extra["watch_events"] = self.extra.get("watch_events", 0) + events
        call.cancel()

    async def watch_putter(self) -> None:
        put = self.channels[0].unary_unary(rq.KV_PUT)
        puts_ok = 0
        while (ticket := self.take_ticket()) is not None:
            await self.pace(ticket, self.config.put_rate)
            start = time.monotonic_ns()
            request = rq.put_request(self.watch_key, rq.stamped_value(start, self.config.val_size))
            try:
                await put(request, timeout=_CALL_TIMEOUT_S, metadata=self.metadata)
            except grpc.aio.AioRpcError as exc:
                self.record_error(_error_text(exc))
                continue
            puts_ok += 1
            self.record("put", start, time.monotonic_ns())
        self.extra["watch_puts"] = puts_ok
        end = rq.WATCH_END + b"v" * max(0, self.config.val_size - len(rq.WATCH_END))
        await self.unary(self.channels[0], rq.KV_PUT, rq.put_request(self.watch_key, end))

    # -- the run ---------------------------------------------------------

    async def setup(self) -> None:
        await self.connect()
        if self.config.user:
            await self.authenticate()
        workload = self.config.workload
        if workload == "range":
            await self.setup_range()
        elif workload == "lease-keepalive":
            await self.setup_leases()
        elif workload == "watch":
            await self.setup_watch()

    def tasks(self) -> list:
        workload = self.config.workload
        if workload == "watch":
            readers = [self.watch_reader(s) for s in range(len(self.watch_calls))]
            return readers + ([self.watch_putter()] if self.putter else [])
        if workload == "lease-keepalive":
            return [self.keepalive_client(c) for c in range(self.clients)]
        return [self.unary_client(c) for c in range(self.clients)]

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(_PROGRESS_INTERVAL_S)
            _say(f"progress {self.done}")

    async def main(self) -> None:
        await self.setup()
        _say("ready")
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not line.startswith("go "):
            return  # the runner gave up (another worker failed)
        self.t0_ns = int(line.split()[1])
        if self.config.duration_s:
            self.deadline_ns = self.t0_ns + int(self.config.duration_s * 1e9)
        # uvloop's timers have millisecond resolution and may fire up to 1 ms early:
        # sleep again until t0 has really come, so that no request starts before it.
        while (delay_ns := self.t0_ns - time.monotonic_ns()) > 0:
            await asyncio.sleep(delay_ns / 1e9)

        cpu_before, wall_before = _cpu_seconds(), time.monotonic_ns()
        progress = asyncio.create_task(self.report_progress())
        await asyncio.gather(*self.tasks())
        progress.cancel()
        cpu_s = _cpu_seconds() - cpu_before
        wall_s = (time.monotonic_ns() - wall_before) / 1e9

        if self.config.workload == "lease-keepalive":
            await self.teardown_leases()
        for channel in self.channels:
            await channel.close()
        result = {
            "index": self.index,
            "ops": {label: record.to_json() for label, record in self.ops.items()},
            "errors": self.errors,
            "first_start_ns": self.first_start_ns,
            "last_end_ns": self.last_end_ns,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "extra": self.extra,
            "loop": self.loop_name,
        }
        _say("result " + json.dumps(result))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _run_loop(worker: Worker) -> None:
    """Run the worker on uvloop when asked or (auto) when installed, else on asyncio's loop."""
    choice = worker.config.loop
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise WorkerError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            worker.loop_name = "uvloop"
            uvloop.run(worker.main())
            return
    worker.loop_name = "asyncio"
    asyncio.run(worker.main())


def main() -> int:
    plan = json.loads(sys.stdin.readline())
    try:
        _run_loop(Worker(plan))
    except (WorkerError, ValueError) as exc:
        _say(f"error {exc}")
        return 1
    except grpc.aio.AioRpcError as exc:
        _say(f"error {_error_text(exc)}")
        return 1
    except KeyboardInterrupt:
        return 130  # Ctrl-C reaches the whole process group; the runner reports it
    return 0


if __name__ == "__main__":
    sys.exit(main())
