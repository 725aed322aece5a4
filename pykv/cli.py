"""The ``pykv`` command: ``pykv serve | bench | ...``.

Each subcommand lives in its own module, imported only when it runs, so that
``pykv --version`` stays instant. A subcommand module provides
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import pykv

# name -> (module, one-line help). Keep sorted by name.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("pykv.bench.cli", "load an etcd v3 endpoint (pykv or etcd) and report latency and throughput"),
    "serve": ("pykv.server.serve", "run an etcd-compatible server (one member of a cluster)"),
    "snapshot": ("pykv.server.snapshot_cmd",
                 "restore a data directory from, or inspect, a saved snapshot"),
    "wal": ("pykv.wal.cli", "check, repair or dump a write-ahead log directory"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pykv",
        description="pykv: an etcd-compatible, Raft-replicated, durable key-value store",
    )
    parser.add_argument("--version", action="version", version=f"pykv {pykv.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the chosen subcommand's module: serve should not pay for bench.
    if argv and argv[0] in SUBCOMMANDS:
        module_name, help_text = SUBCOMMANDS[argv[0]]
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"pykv {argv[0]}", description=help_text)
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
