"""``pykv wal``: check, repair or dump a write-ahead log directory.

For a server's data directory the WAL is ``<data-dir>/member/wal``. Every
command opens the WAL as the server would, so a torn tail is cut (with a
.broken copy) by ``check`` and ``dump`` too; only ``repair`` cuts at a
corruption in the middle. Run them while the server is stopped (the WAL is
locked while it runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from pykv import errors
from pykv.wal import WAL, RecordType


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="verify every record; report what recovery found")
    check.add_argument("dir", help="the WAL directory (<data-dir>/member/wal for a server)")
    repair = sub.add_parser("repair", help="cut at a corruption (keeping .broken copies) and "
                            "report what was lost")
    repair.add_argument("dir", help="the WAL directory")
    dump = sub.add_parser("dump", help="list the records: type, index, payload size")
    dump.add_argument("dir", help="the WAL directory")
    dump.add_argument("--from-index", type=int, default=0, help="start at this index")
    dump.add_argument("--payload", action="store_true", help="also print payloads in hex")


def _type_name(value: int) -> str:
    try:
        return RecordType(value).name
    except ValueError:
        return str(value)


def run(args: argparse.Namespace) -> int:
    try:
        wal = WAL.open(args.dir, repair=args.action == "repair")
    except errors.CorruptionError as exc:
        print(json.dumps({"error": "corrupt", "path": exc.path, "offset": exc.offset,
                          "message": str(exc)}, indent=1))
        return 1
    except errors.StorageError as exc:
        print(f"pykv wal: {exc}", file=sys.stderr)
        return 1
    with wal:
        if args.action == "dump":
            for batch in wal.read(args.from_index):
                for record in batch:
                    line = f"{_type_name(record.type):9s} {record.index:12d} {len(record.payload):9d}"
                    if args.payload:
                        line += " " + record.payload.hex()
                    print(line)
            return 0
        report = dataclasses.asdict(wal.recovery)
        report["segments_kept"] = [s.name for s in wal.segments()]
        print(json.dumps(report, indent=1))
    return 0
