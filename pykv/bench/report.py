"""A run's result as text (etcd benchmark's layout plus CPU use) or as JSON."""

from __future__ import annotations

import dataclasses
import os

from .runner import RunResult
from .stats import render_errors

# Why each secondary operation is there, for the text report.
_ROLE = {("watch", "put"): "the puts that feed the watchers"}


def _cores() -> int:
    return os.cpu_count() or 1


def describe(result: RunResult) -> str:
    c = result.config
    amount = f"{c.total} requests" if c.total else f"{c.duration_s:g} s"
    if c.workload == "watch":
        shape = (f"{c.watchers} watchers on {c.streams} streams, {c.total or 'timed'} puts "
                 f"at {c.put_rate:g}/s")
    else:
        shape = f"{amount}, {c.clients} clients"
    rate = f", rate limit {c.rate:g}/s" if c.rate else ""
    return (f"pykv bench {c.workload}: {shape} over {result.conns} connections "
            f"from {result.procs} worker processes{rate}; endpoints {', '.join(c.endpoints)}")


def cpu_lines(result: RunResult) -> list[str]:
    wall = result.total_s
    gen = result.generator_cpu_s
    lines = [f"Generator: {result.procs} processes ({result.loop}) used {gen:.2f} s CPU over {wall:.2f} s = "
             f"{100 * gen / wall:.0f}% of one core (this host has {_cores()} cores, "
             f"shared with the server when it runs here)."]
    if result.server_cpu_s is not None:
        share = 100 * result.server_cpu_s / wall
        lines.append(f"Server (pid {result.server_pid} and its child processes): "
                     f"{result.server_cpu_s:.2f} s CPU = "
                     f"{share:.0f}% of one core.")
    busy = gen + (result.server_cpu_s or 0.0)
    if busy / wall > 0.9 * _cores():
        lines.append(f"Note: generator and server together kept {busy / wall:.1f} of {_cores()} "
                     "cores busy: figures are CPU-bound on this host.")
    return lines


def render_text(result: RunResult) -> str:
    parts = [describe(result)]
    main = result.main_label
    labels = [main] + [label for label in result.ops if label != main]
    for label in labels:
        stats = result.ops.get(label)
        if stats is None:
            continue
        if len(labels) > 1:
            role = _ROLE.get((result.config.workload, label), "")
            parts.append(f"\n== {label}{' (' + role + ')' if role else ''}")
        parts.append(stats.render())
    if not result.ops:
        parts.append("\nNo request succeeded.")
    elif result.overall is not None:
        parts.append("\n== all operations")
        parts.append(result.overall.render())
    if result.config.workload == "watch":
        puts = result.extra.get("watch_puts", 0)
        parts.append(f"Events delivered: {result.extra.get('watch_events', 0)} of "
                     f"{puts * result.config.watchers} expected ({puts} puts x "
                     f"{result.config.watchers} watchers).")
    parts.append(render_errors(result.errors))
    parts.extend(cpu_lines(result))
    return "\n".join(p for p in parts if p) + "\n"


def _public_config(result: RunResult) -> dict:
    """The run's settings without the --user password (reports get shared)."""
    config = dataclasses.asdict(result.config)
    if config["user"]:
        config["user"] = config["user"].partition(":")[0] + ":***"
    return config


def to_json(result: RunResult) -> dict:
    """Machine-readable figures; latencies in seconds, rates per second."""
    wall = result.total_s
    return {
        "workload": result.config.workload,
        "config": _public_config(result),
        "procs": result.procs,
        "conns": result.conns,
        "total_s": wall,
        "requests": result.requests,
        "requests_per_s": result.rps,
        "errors": result.errors,
        "error_count": sum(result.errors.values()),
        "main": result.main.to_json() if result.main else None,
        "ops": {label: stats.to_json() for label, stats in result.ops.items()},
        "throughput_per_100ms": result.throughput,
        "generator": {"processes": result.procs, "loop": result.loop, "cpu_s": result.generator_cpu_s,
                      "cpu_percent_of_core": 100 * result.generator_cpu_s / wall},
        "server": None if result.server_cpu_s is None else {
            "pid": result.server_pid, "cpu_s": result.server_cpu_s,
            "cpu_percent_of_core": 100 * result.server_cpu_s / wall},
        "host_cores": _cores(),
        "extra": result.extra,
    }
