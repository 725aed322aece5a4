"""The JSON gateway (HTTP/1.1 on the client port) of pykv beside etcd 3.4's,
same run.

Run:  python -m pytest bench/test_gateway.py -s -q -p no:cacheprovider
      PYKV_BENCH_GW_S=3 (seconds per run), PYKV_BENCH_GW_ROUNDS=2 (runs per side).
Results and their reading: bench/results/gateway.md.

``pykv serve`` (native server, fsync on) and etcd 3.4.23, each on its own
data directory, take POST /v3/kv/put (8 B keys at random from 10,000, 256 B
values) and POST /v3/kv/range (serializable, one key) from 16 kept-alive
HTTP/1.1 connections. The generator is this file run as a script: one
asyncio process (uvloop when installed) on the same 2 cores. The sides
alternate round by round (a, b, then b, a) so that load from other work on
this shared machine falls on both alike; each figure is the median of its
side's rounds. Server CPU is the server process's user+system time over the
run divided by the requests answered.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("PYKV_BENCH_GW_S", "3"))
ROUNDS = int(os.environ.get("PYKV_BENCH_GW_ROUNDS", "2"))
CONNECTIONS = 16


# --- the generator (run as a script) ---------------------------------------------------

def generate(port: int, kind: str, seconds: float, connections: int) -> dict:
    """Requests from ``connections`` kept-alive connections for ``seconds``;
    the count of 200 answers and of others."""
    import asyncio
    import base64
    import random
    import time

    value = base64.b64encode(b"v" * 256).decode()
    keys = [base64.b64encode(b"%08d" % i).decode() for i in range(10_000)]
    path = {"put": "/v3/kv/put", "range": "/v3/kv/range"}[kind]

    def body() -> bytes:
        key = random.choice(keys)
        if kind == "put":
            return json.dumps({"key": key, "value": value}).encode()
        return json.dumps({"key": key, "serializable": True}).encode()

    counts = {"ok": 0, "other": 0}

    async def one(deadline: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            payload = body()
            writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                         % (path.encode(), len(payload), payload))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            counts["ok" if head.startswith(b"HTTP/1.1 200") else "other"] += 1
        writer.close()

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(one(deadline) for _ in range(connections)))

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return counts


# --- the servers -------------------------------------------------------------------------

def start(kind: str, tmp_path: pathlib.Path):
    sys.path.insert(0, str(ROOT))
    from tests.e2e.harness import ServerProcess

    if kind == "etcd":
        return ServerProcess(tmp_path / "etcd", etcd=True).start()
    return ServerProcess(tmp_path / "pykv", env={"PYKV_GRPC_SERVER": "native"}).start()


def run_once(server, kind: str) -> dict:
    from pykv.bench.procstat import cpu_seconds

    pid = server.process.pid
    before = cpu_seconds(pid)
    out = subprocess.run([sys.executable, __file__, str(server.client_port), kind, str(SECONDS),
                          str(CONNECTIONS)], capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=SECONDS * 10 + 60)
    cpu = cpu_seconds(pid) - before
    counts = json.loads(out.stdout)
    assert counts["other"] == 0, counts
    return {"rps": counts["ok"] / SECONDS, "cpu_us": 1e6 * cpu / max(1, counts["ok"])}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not on PATH (Debian: apt-get install etcd-server)")
    base = tmp_path_factory.mktemp("gwbench")
    running = {"pykv": start("pykv", base), "etcd": start("etcd", base)}
    yield running
    for server in running.values():
        server.stop()


@pytest.mark.parametrize("kind", ["put", "range"])
def test_gateway_beside_etcd(benchmark, servers, kind):
    runs: dict[str, list[dict]] = {"pykv": [], "etcd": []}
    order = ["pykv", "etcd"]
    for round_index in range(ROUNDS):
        for side in order if round_index % 2 == 0 else order[::-1]:
            runs[side].append(run_once(servers[side], kind))
    figures = {side: {name: statistics.median(r[name] for r in rs) for name in ("rps", "cpu_us")}
               for side, rs in runs.items()}
    ours, ref = figures["pykv"], figures["etcd"]
    print(f"\ngateway {kind}, {CONNECTIONS} connections, median of {ROUNDS} rounds each")
    for side, f in figures.items():
        print(f"  {side:5s} {f['rps']:8,.0f} req/s  server CPU {f['cpu_us']:5.0f} us/req")
    print(f"  pykv / etcd: x{ours['rps'] / ref['rps']:.2f} req/s, "
          f"x{ref['cpu_us'] / ours['cpu_us']:.2f} less CPU per request")
    benchmark.extra_info.update({f"{side}_{k}": v for side, f in figures.items()
                                 for k, v in f.items()})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert ours["rps"] > 0 and ref["rps"] > 0


if __name__ == "__main__":
    port_text, kind_text, seconds_text, connections_text = sys.argv[1:5]
    print(json.dumps(generate(int(port_text), kind_text, float(seconds_text),
                              int(connections_text))))
