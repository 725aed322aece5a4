"""``pykv bench``: load any etcd v3 endpoint (pykv or real etcd), like etcd's benchmark tool.

    pykv bench put --clients 16 --total 10000 --endpoints 127.0.0.1:2379
    pykv bench range --consistency s --duration 10
    pykv bench watch --watchers 100 --streams 10 --put-rate 100 --total 1000
    pykv bench compare --a 127.0.0.1:2379 --b etcd --out bench-report/
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .config import WORKLOADS, BenchConfig, TLSConfig

_HELP = {
    "put": "puts of --val-size values to keys from the key space",
    "range": "range reads of one key (or [key, range_end)); linearizable unless --consistency s",
    "txn-put": "txns of --txn-ops puts each",
    "watch": "put->event delivery latency with --watchers watchers on --streams streams",
    "lease-keepalive": "keepalive round trips, one lease and stream per client",
    "mixed": "a mix of range reads and puts over the key space (--read-ratio)",
}


def _common_arguments() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("load")
    g.add_argument("--endpoints", default="127.0.0.1:2379",
                   help="comma-separated gRPC endpoints, host:port or http(s)://host:port")
    g.add_argument("--clients", type=int, default=1, help="concurrent clients (calls in flight)")
    g.add_argument("--conns", type=int, default=1, help="gRPC connections (at least one per process)")
    g.add_argument("--procs", type=int, default=0,
                   help="generator processes (default: min(clients, cores))")
    g.add_argument("--total", type=int, default=0, help="requests to send (default 10000)")
    g.add_argument("--duration", type=float, default=0.0, help="run for this many seconds instead")
    g.add_argument("--rate", type=float, default=0.0, help="at most this many requests/s (0: no limit)")
    g.add_argument("--key-size", type=int, default=8, help="key bytes (default 8)")
    g.add_argument("--val-size", type=int, default=8, help="value bytes (default 8)")
    g.add_argument("--key-space", "--key-space-size", dest="key_space", type=int, default=1,
                   help="distinct keys to choose from (default 1, as etcd's benchmark)")
    g.add_argument("--seq-keys", "--sequential-keys", dest="seq_keys", action="store_true",
                   help="use keys in order instead of at random")
    g.add_argument("--prefix", default="", help="prefix of every key written or read")
    g.add_argument("--seed", type=int, default=0, help="seed for keys and values")
    g.add_argument("--dial-timeout", type=float, default=5.0, help="seconds to wait for a connection")
    g.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="workers' event loop (auto: uvloop when installed)")
    t = common.add_argument_group("TLS and auth (as etcdctl)")
    t.add_argument("--cacert", default="", help="CA bundle to verify the server")
    t.add_argument("--cert", default="", help="client certificate")
    t.add_argument("--key", default="", help="client private key")
    t.add_argument("--tls-server-name", default="", help="name the server certificate must match")
    t.add_argument("--user", default="", help="NAME:PASSWORD to authenticate as (etcd auth)")
    t.add_argument("--insecure-skip-tls-verify", action="store_true",
                   help="not supported: gRPC Python always verifies; give --cacert instead")
    o = common.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--server-pid", type=int, default=0,
                   help="server process to measure CPU of (default: the one on the endpoint's port)")
    return common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    # A fresh parent per subcommand: argparse shares the parent's actions, so one
    # subcommand's set_defaults (watch's val_size) would otherwise leak into the others.
    for name in WORKLOADS:
        p = sub.add_parser(name, parents=[_common_arguments()], help=_HELP[name],
                           description=_HELP[name])
        if name in ("range", "mixed"):
            p.add_argument("--consistency", choices=("l", "s"), default="l",
                           help="linearizable (l) or serializable (s) reads")
        if name == "range":
            p.add_argument("range_key", nargs="?", default="",
                           help="key to read (default: the first key of the key space, written first)")
            p.add_argument("range_end", nargs="?", default="", help="end of the range, exclusive")
        if name == "mixed":
            p.add_argument("--read-ratio", type=float, default=0.9, help="fraction of reads (default 0.9)")
        if name == "txn-put":
            p.add_argument("--txn-ops", type=int, default=1, help="puts per txn")
        if name == "watch":
            p.add_argument("--watchers", type=int, default=100, help="watchers on the one key")
            p.add_argument("--streams", type=int, default=10, help="watch streams they share")
            p.add_argument("--put-rate", type=float, default=100.0, help="puts per second")
            p.set_defaults(val_size=32)
        if name == "lease-keepalive":
            p.add_argument("--lease-ttl", type=int, default=60, help="TTL of each lease, seconds")
        p.set_defaults(_run=run_workload)
    from . import compare

    cp = sub.add_parser("compare", parents=[_common_arguments()], help=compare.HELP, description=compare.DESCRIPTION,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_arguments(cp)
    cp.set_defaults(_run=compare.run)


def config_from_args(args: argparse.Namespace, workload: str | None = None) -> BenchConfig:
    """The BenchConfig that ``args`` describe. Raises ValueError on contradictions."""
    if args.insecure_skip_tls_verify:
        raise ValueError("--insecure-skip-tls-verify is not supported: gRPC Python always verifies "
                         "the server; pass its CA with --cacert (and --tls-server-name if needed)")
    clients = args.clients
    procs = args.procs or max(1, min(clients, os.cpu_count() or 1))
    total, duration = args.total, args.duration
    if not total and not duration:
        total = 10000
    config = BenchConfig(
        workload=workload or args.workload,
        endpoints=[e for e in (s.strip() for s in args.endpoints.split(",")) if e],
        clients=clients, conns=args.conns, procs=procs, total=total, duration_s=duration,
        rate=args.rate, key_size=args.key_size, val_size=args.val_size, key_space=args.key_space,
        seq_keys=args.seq_keys, prefix=args.prefix, seed=args.seed, dial_timeout_s=args.dial_timeout,
        loop=args.loop, user=args.user,
        tls=TLSConfig(cacert=args.cacert, cert=args.cert, key=args.key, server_name=args.tls_server_name),
    )
    if getattr(args, "consistency", "l") == "s":
        config.serializable = True
    for name in ("range_key", "range_end", "read_ratio", "txn_ops", "watchers", "streams", "put_rate"):
        if hasattr(args, name):
            setattr(config, name, getattr(args, name))
    if hasattr(args, "lease_ttl"):
        config.lease_ttl_s = args.lease_ttl
    if config.workload == "watch":
        config.procs = args.procs or max(1, min(config.streams, os.cpu_count() or 1))
        config.val_size = max(config.val_size, 20)  # room for the send-time stamp
    config.validate()
    return config


def run_workload(args: argparse.Namespace) -> int:
    from .report import render_text, to_json
    from .runner import BenchError, run

    try:
        config = config_from_args(args)
        result = run(config, progress=not args.no_progress and not args.json and sys.stderr.isatty(),
                     server_pid=args.server_pid or None)
    except (ValueError, BenchError) as exc:
        print(f"pykv bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npykv bench: interrupted; workers stopped, no report", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(to_json(result), indent=1))
    else:
        print(render_text(result), end="")
    return 1 if result.errors else 0


def run(args: argparse.Namespace) -> int:
    return int(args._run(args) or 0)
