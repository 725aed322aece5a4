"""The native gRPC server beside grpcio's (and beside real etcd), same run.

Run:  python -m pytest bench/test_h2.py -s -q -p no:cacheprovider
      PYKV_BENCH_H2_S=3 (seconds per run), PYKV_BENCH_H2_ROUNDS=2 (runs per side).
Results and their reading: bench/results/h2.md.

Two suites, each alternating its sides round by round (a, b, c, then
c, b, a, ...) so that load from other work on this shared machine falls on
all alike; the load generator is ``pykv bench`` (Python gRPC clients in
worker processes on the same 2 cores):

- ``test_noop_unary_native_beside_grpcio``: a server process whose Put and
  Range answer at once with a fixed response (no storage at all), on the
  native server and on grpc.aio with raw-bytes handlers, both through the
  same ``pykv.server.v3rpc.Method`` table pykv serve uses. Server CPU per
  request is the cost of the gRPC layer itself. ``native-fast`` is the
  native server with the methods' ``fast`` entry point (no Task per call).
- ``test_put_native_beside_grpcio_and_etcd``: ``pykv serve --grpc-server
  native``, ``pykv serve --grpc-server grpcio`` and etcd 3.4, put at 1, 16
  and 256 clients (8 B keys, 256 B values, fsync on).

The no-op server is this file run as a script: ``python bench/test_h2.py
native|grpcio PORT``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import statistics
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("PYKV_BENCH_H2_S", "3"))
ROUNDS = int(os.environ.get("PYKV_BENCH_H2_ROUNDS", "2"))


# --- the no-op server ------------------------------------------------------------

def serve_noop(kind: str, port: int) -> None:
    """Serve KV.Put and KV.Range with fixed answers on 127.0.0.1:port."""
    import asyncio

    from pykv.api.etcdserverpb import rpc_pb2
    from pykv.server.v3rpc import Method, grpc_handlers

    put = rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(revision=2)).SerializeToString()
    rng = rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(revision=2)).SerializeToString()

    async def answer_put(raw, context):
        return put

    async def answer_range(raw, context):
        return rng

    class FastMethod(Method):
        __slots__ = ("fast",)

    methods = [FastMethod("/etcdserverpb.KV/Put", "Put", answer_put, "unary", None, bytes),
               FastMethod("/etcdserverpb.KV/Range", "Range", answer_range, "unary", None, bytes)]
    if kind == "native-fast":
        methods[0].fast = lambda raw: put
        methods[1].fast = lambda raw: rng

    async def main() -> None:
        if kind.startswith("native"):
            from pykv.server.h2server import NativeServer

            server = NativeServer(methods)
            server.add_port("127.0.0.1", port)
        else:
            import grpc

            server = grpc.aio.server()
            server.add_generic_rpc_handlers(grpc_handlers(methods))
            server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    import uvloop
    uvloop.run(main())


class NoopServer:
    def __init__(self, kind: str):
        from pykv.bench.servers import free_port

        self.kind = kind
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__)), kind,
                                      str(self.port)], stdout=subprocess.PIPE, cwd=str(ROOT))
        assert self.proc.stdout.readline().strip() == b"ready", f"{kind} no-op server failed"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- measuring ---------------------------------------------------------------------

def _figures(runs: list[dict]) -> dict[str, float]:
    """Medians over one side's rounds."""
    def median(get) -> float:
        return statistics.median(get(r) for r in runs)

    return {
        "rps": median(lambda r: r["main"]["requests_per_s"]),
        "cpu_us_per_op": median(lambda r: 1e6 * r["server"]["cpu_s"] / r["main"]["count"]),
        "p50_ms": median(lambda r: 1e3 * r["main"]["percentiles_s"]["50"]),
        "p99_ms": median(lambda r: 1e3 * r["main"]["percentiles_s"]["99"]),
        "generator_cpu_pct": median(lambda r: r["generator"]["cpu_percent_of_core"]),
    }


def alternate(servers: dict, preset_name: str) -> dict[str, dict[str, float]]:
    """Run the preset against every server, ROUNDS times, order reversed every
    other round; the median figures of each side."""
    from pykv.bench.compare import PRESETS, preset_config
    from pykv.bench.report import to_json
    from pykv.bench.runner import run

    preset = PRESETS[preset_name]
    sides = list(servers)
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for round_index in range(ROUNDS):
        for side in sides if round_index % 2 == 0 else sides[::-1]:
            server = servers[side]
            config = preset_config(preset, server.endpoint, duration_s=SECONDS)
            result = to_json(run(config, server_pid=server.pid))
            assert result["error_count"] == 0, f"{side}: {result['errors']}"
            runs[side].append(result)
    return {side: _figures(side_runs) for side, side_runs in runs.items()}


def report(benchmark, title: str, figures: dict[str, dict[str, float]], reference: str) -> None:
    ref = figures[reference]
    print(f"\n{title} ({ROUNDS} rounds of {SECONDS:g} s per side, alternated; "
          f"reference: {reference})")
    for side, f in figures.items():
        ratio = "" if side == reference else \
            f"  x{f['rps'] / ref['rps']:.2f} req/s, x{ref['cpu_us_per_op'] / f['cpu_us_per_op']:.2f} " \
            f"less CPU per request"
        print(f"  {side:11s} {f['rps']:9,.0f} req/s  server CPU {f['cpu_us_per_op']:6.0f} us/req  "
              f"p50 {f['p50_ms']:6.1f} ms  p99 {f['p99_ms']:6.1f} ms  "
              f"generator {f['generator_cpu_pct']:3.0f}%{ratio}")
        for name, value in f.items():
            benchmark.extra_info[f"{side}_{name}"] = value
        if side != reference:
            benchmark.extra_info[f"{side}_rps_ratio"] = f["rps"] / ref["rps"]
            benchmark.extra_info[f"{side}_cpu_ratio"] = ref["cpu_us_per_op"] / f["cpu_us_per_op"]
    benchmark.extra_info.update({"reference": reference, "seconds": SECONDS, "rounds": ROUNDS})


@pytest.fixture(scope="module")
def noop_servers():
    servers = {}
    try:
        for kind in ("native", "native-fast", "grpcio"):
            servers[kind] = NoopServer(kind)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("preset", ["put-16", "put-256"])
def test_noop_unary_native_beside_grpcio(benchmark, noop_servers, preset):
    figures = {}
    benchmark.pedantic(lambda: figures.update(alternate(noop_servers, preset)),
                       rounds=1, iterations=1)
    report(benchmark, f"no-op unary, {preset}", figures, reference="grpcio")
    # the point of the native server: far less CPU per call than grpcio's
    assert figures["native"]["cpu_us_per_op"] < figures["grpcio"]["cpu_us_per_op"]


@pytest.fixture(scope="module")
def put_servers():
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not on PATH (Debian: apt-get install etcd-server)")
    from pykv.bench import servers

    running = {}
    try:
        running["native"] = servers.start("pykv", extra_args=["--grpc-server", "native"])
        running["grpcio"] = servers.start("pykv", extra_args=["--grpc-server", "grpcio"])
        running["etcd"] = servers.start("etcd")
        yield running
    finally:
        for server in running.values():
            server.stop()


@pytest.mark.parametrize("preset", ["put-1", "put-16", "put-256"])
def test_put_native_beside_grpcio_and_etcd(benchmark, put_servers, preset):
    figures = {}
    benchmark.pedantic(lambda: figures.update(alternate(put_servers, preset)),
                       rounds=1, iterations=1)
    report(benchmark, f"pykv serve put, {preset}", figures, reference="etcd")
    native, grpcio = figures["native"], figures["grpcio"]
    benchmark.extra_info["native_vs_grpcio_cpu_ratio"] = \
        grpcio["cpu_us_per_op"] / native["cpu_us_per_op"]
    print(f"  native vs grpcio: x{native['rps'] / grpcio['rps']:.2f} req/s, "
          f"x{grpcio['cpu_us_per_op'] / native['cpu_us_per_op']:.2f} less CPU per put")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    serve_noop(sys.argv[1], int(sys.argv[2]))
