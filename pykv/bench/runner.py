"""Run one workload with several worker processes and gather one result.

The runner splits clients, connections, the request total and the rate over
the workers, starts them (``python -m pykv.bench.worker``), waits until each
has connected and set up, starts them all at one CLOCK_MONOTONIC instant, and
merges what they measured. It also measures the CPU the workers (and the
server, when it runs on this host) used, so the report can say whether the
generator kept up.
"""

from __future__ import annotations

import array
import base64
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pykv

from . import procstat
from .channels import parse_endpoint
from .config import BenchConfig, split_evenly
from .progress import ProgressBar
from .stats import LatencyStats

_SETUP_TIMEOUT_S = 60.0
_START_DELAY_NS = 50_000_000  # time for every worker to read "go" before t0
_BUCKET_S = 0.1


class BenchError(Exception):
    """The benchmark could not run; the message says why."""


@dataclass
class RunResult:
    """Everything one run measured."""

    config: BenchConfig
    procs: int
    conns: int
    total_s: float
    ops: dict[str, LatencyStats]
    errors: dict[str, int]
    throughput: dict[str, list[float]]  # label -> requests/s per 100 ms bucket
    generator_cpu_s: float
    server_pid: int | None
    server_cpu_s: float | None
    extra: dict[str, int] = field(default_factory=dict)
    # All operations together, for workloads that mix kinds (mixed).
    overall: LatencyStats | None = None
    loop: str = "asyncio"  # the workers' event loop

    @property
    def main_label(self) -> str:
        """The operation the workload is named for (e.g. "watch", not the puts that feed it)."""
        label = self.config.workload
        return label if label in self.ops else next(iter(self.ops), label)

    @property
    def main(self) -> LatencyStats | None:
        """The figures the workload is named for: all operations for mixed, else the main one."""
        return self.overall if self.overall is not None else self.ops.get(self.main_label)

    @property
    def requests(self) -> int:
        return sum(stats.count for stats in self.ops.values())

    @property
    def rps(self) -> float:
        return self.requests / self.total_s if self.total_s > 0 else 0.0


@dataclass
class _WorkerProcess:
    index: int
    proc: subprocess.Popen
    stderr_path: pathlib.Path
    done: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None
    error: str | None = None

    def read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "progress":
                self.done = int(rest)
            elif word == "ready":
                self.ready.set()
            elif word == "result":
                self.result = json.loads(rest)
                self.done = self.done_from_result()
            elif word == "error":
                self.error = rest
        self.proc.wait()
        if self.result is None and self.error is None:
            try:
                tail = self.stderr_path.read_text(errors="replace")[-2000:].strip()
            except OSError:  # the run already ended and removed its temp directory
                tail = "(its stderr is gone)"
            self.error = f"worker {self.index} exited with code {self.proc.returncode}: {tail}"
        self.ready.set()
        self.finished.set()

    def done_from_result(self) -> int:
        assert self.result is not None
        ops = sum(len(base64.b64decode(op["latencies_ns"])) // 8 for op in self.result["ops"].values())
        return ops + sum(self.result["errors"].values())


def _plans(config: BenchConfig) -> tuple[list[dict], int]:
    """One plan per worker process, and the number of connections in all."""
    watch = config.workload == "watch"
    units = config.streams if watch else config.clients
    procs = max(1, min(config.procs, units))
    conns = max(config.conns, procs)
    unit_split = split_evenly(units, procs)
    conn_split = split_evenly(conns, procs)
    quota_split = [0] * procs
    if config.total and not watch:
        # Requests in proportion to each worker's clients.
        quota_split = _proportional(config.total, unit_split)
    watcher_split = _proportional(config.watchers, unit_split) if watch else [0] * procs
    plans, conn_index = [], 0
    for index in range(procs):
        endpoints = [config.endpoints[(conn_index + j) % len(config.endpoints)]
                     for j in range(conn_split[index])]
        conn_index += conn_split[index]
        plans.append({
            "config": json.loads(config.to_json()),
            "index": index,
            "workers": procs,
            "clients": unit_split[index] if not watch else 0,
            "conn_endpoints": endpoints,
            "quota": config.total if (watch and index == 0) else quota_split[index],
            "rate": config.rate * unit_split[index] / units if config.rate else 0.0,
            "watchers": watcher_split[index],
            "streams": unit_split[index] if watch else 0,
            "putter": watch and index == 0,
        })
    return plans, conns


def _proportional(total: int, weights: list[int]) -> list[int]:
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    for i in range(total - sum(shares)):
        shares[i % len(shares)] += 1
    return shares


def _worker_env() -> dict[str, str]:
    # Workers must import this very pykv, wherever it was imported from.
    root = str(pathlib.Path(pykv.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _server_pid(config: BenchConfig) -> int | None:
    target, _ = parse_endpoint(config.endpoints[0])
    host, _, port = target.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]", "::1", "0.0.0.0") or not port.isdigit():
        return None
    return procstat.listening_pid(int(port))


def run(config: BenchConfig, *, progress: bool = False, server_pid: int | None = None) -> RunResult:
    """Run ``config`` and return what it measured. Raises BenchError when it cannot run.

    ``server_pid``: the server's process, for its CPU use; by default the process
    listening on the first endpoint's port, when that is on this host.
    """
    config.validate()
    plans, conns = _plans(config)
    if server_pid is None:
        server_pid = _server_pid(config)
    with tempfile.TemporaryDirectory(prefix="pykv-bench-") as tmp:
        workers = _start_workers(plans, pathlib.Path(tmp))
        try:
            return _drive(config, workers, conns, server_pid, progress)
        finally:
            for worker in workers:
                if worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()


def _start_workers(plans: list[dict], tmp: pathlib.Path) -> list[_WorkerProcess]:
    workers = []
    for plan in plans:
        stderr_path = tmp / f"worker-{plan['index']}.stderr"
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "pykv.bench.worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    text=True, env=_worker_env())
        worker = _WorkerProcess(plan["index"], proc, stderr_path)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(plan) + "\n")
        proc.stdin.flush()
        threading.Thread(target=worker.read_stdout, daemon=True).start()
        workers.append(worker)
    return workers


def _first_error(workers: list[_WorkerProcess]) -> str | None:
    return next((w.error for w in workers if w.error), None)


def _drive(config: BenchConfig, workers: list[_WorkerProcess], conns: int, server_pid: int | None,
           show_progress: bool) -> RunResult:
    deadline = time.monotonic() + _SETUP_TIMEOUT_S + config.dial_timeout_s
    for worker in workers:
        if not worker.ready.wait(max(0.0, deadline - time.monotonic())):
            raise BenchError(f"worker {worker.index} did not get ready within "
                             f"{_SETUP_TIMEOUT_S + config.dial_timeout_s:g} s")
        if worker.error:
            raise BenchError(worker.error)

    server_cpu_before = procstat.tree_cpu_seconds(server_pid) if server_pid else None
    own_before = _own_cpu_seconds()
    t0_ns = time.monotonic_ns() + _START_DELAY_NS
    for worker in workers:
        assert worker.proc.stdin is not None
        worker.proc.stdin.write(f"go {t0_ns}\n")
        worker.proc.stdin.flush()

    expected = config.total
    if config.workload == "watch":
        expected = config.total * (config.watchers + 1)  # every watcher sees every put
    bar = ProgressBar(expected, config.duration_s, show_progress)
    pending = list(workers)
    while pending:
        pending[0].finished.wait(0.1)
        pending = [w for w in pending if not w.finished.is_set()]
        bar.update(sum(w.done for w in workers))
        if (error := _first_error(workers)) is not None:
            raise BenchError(error)
    bar.finish(sum(w.done for w in workers))

    server_cpu_s = None
    if server_cpu_before:
        after = procstat.tree_cpu_seconds(server_pid) if server_pid else {}
        server_cpu_s = procstat.cpu_between(server_cpu_before, after) if after else None
    own_cpu_s = _own_cpu_seconds() - own_before
    return _merge(config, [w.result for w in workers if w.result], t0_ns, conns, server_pid,
                  server_cpu_s, own_cpu_s)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _merge(config: BenchConfig, results: list[dict], t0_ns: int, conns: int,
           server_pid: int | None, server_cpu_s: float | None, own_cpu_s: float) -> RunResult:
    end_ns = max((r["last_end_ns"] for r in results if r["last_end_ns"]), default=t0_ns)
    total_s = max(end_ns - t0_ns, 1) / 1e9
    latencies: dict[str, list[float]] = {}
    buckets: dict[str, list[int]] = {}
    errors: dict[str, int] = {}
    extra: dict[str, int] = {}
    for result in sorted(results, key=lambda r: r["index"]):
        for label, op in result["ops"].items():
            samples = array.array("q")
            samples.frombytes(base64.b64decode(op["latencies_ns"]))
            latencies.setdefault(label, []).extend(ns / 1e9 for ns in samples)
            merged = buckets.setdefault(label, [])
            for i, count in enumerate(op["buckets"]):
                if i >= len(merged):
                    merged.append(0)
                merged[i] += count
        for text, count in result["errors"].items():
            errors[text] = errors.get(text, 0) + count
        for name, value in result["extra"].items():
            extra[name] = extra.get(name, 0) + value
    return RunResult(
        config=config,
        procs=len(results),
        conns=conns,
        total_s=total_s,
        ops={label: LatencyStats.from_latencies(values, total_s) for label, values in latencies.items()},
        errors=errors,
        throughput=_throughput(config, buckets),
        generator_cpu_s=sum(r["cpu_s"] for r in results) + own_cpu_s,
        server_pid=server_pid,
        server_cpu_s=server_cpu_s,
        extra=extra,
        loop=results[0]["loop"] if results else "asyncio",
        overall=(LatencyStats.from_latencies([x for v in latencies.values() for x in v], total_s)
                 if config.workload == "mixed" else None),
    )


def _throughput(config: BenchConfig, buckets: dict[str, list[int]]) -> dict[str, list[float]]:
    """Requests/s per 100 ms bucket per label; for mixed also all labels summed as "mixed"."""
    series = {label: [count / _BUCKET_S for count in counts] for label, counts in buckets.items()}
    if config.workload == "mixed" and series:
        width = max(len(s) for s in series.values())
        series["mixed"] = [sum(s[i] for s in series.values() if i < len(s)) for i in range(width)]
    return series
