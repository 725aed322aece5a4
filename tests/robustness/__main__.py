"""python -m tests.robustness --seeds N --duration S: more and longer runs than CI.

Each run gets its own data dir under --out (a temporary directory by
default); a failing run's directory, logs and history are kept and named.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

from tests.robustness.run import Config, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.robustness", description=__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="number of runs (seeds 1..N)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic per run")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--keys", type=int, default=6)
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs per run")
    parser.add_argument("--ops-per-s", type=float, default=200.0)
    parser.add_argument("--request-timeout", type=float, default=5.0,
                        help="seconds before a request counts as indeterminate")
    parser.add_argument("--compaction", action="store_true",
                        help="client 0 compacts; every client reads at past revisions")
    parser.add_argument("--leases", action="store_true",
                        help="grant leases, put keys with them, revoke them")
    parser.add_argument("--out", type=pathlib.Path, help="keep every run's data dir here")
    args = parser.parse_args(argv)
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="pykv-robustness-"))
    failed = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        run_dir = out / f"seed-{seed}"
        run_dir.mkdir(parents=True, exist_ok=False)
        config = Config(seed=seed, duration_s=args.duration, clients=args.clients,
                        keys=args.keys, kills=args.kills, ops_per_s=args.ops_per_s,
                        request_timeout_s=args.request_timeout,
                        compaction=args.compaction, leases=args.leases)
        report = run(config, run_dir / "data")
        if report.violations:
            failed += 1
            print(report.failure(), flush=True)
        else:
            print(report.summary(), flush=True)
            if args.out is None:
                shutil.rmtree(run_dir)
    print(f"{failed} of {args.seeds} runs failed" + (f"; kept under {out}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
