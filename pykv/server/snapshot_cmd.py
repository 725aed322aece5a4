"""``pykv snapshot restore|status``: what etcdutl/etcdctl snapshot do, for the
files that ``etcdctl snapshot save`` fetches from pykv, and for those it
fetches from real etcd (their live state is imported; history is not)."""

from __future__ import annotations

import argparse
import json
import sys

from pykv import errors
from pykv.engine import restore
from pykv.server import config as config_mod


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    rest = sub.add_parser("restore", help="build a new data directory from a snapshot file "
                                          "(saved from pykv or from etcd)")
    rest.add_argument("file")
    rest.add_argument("--data-dir", default="", help="(default: ${name}.etcd)")
    rest.add_argument("--name", default="default")
    rest.add_argument("--initial-cluster", default="")
    rest.add_argument("--initial-cluster-token", default="etcd-cluster")
    rest.add_argument("--initial-advertise-peer-urls", default="http://localhost:2380")
    rest.add_argument("--skip-hash-check", action="store_true",
                      help="ignore the SHA-256 trailer (a file not made by snapshot save)")
    rest.add_argument("--quiet", action="store_true",
                      help="no progress lines on stderr while a big etcd snapshot is imported")
    stat = sub.add_parser("status", help="show the hash, revision and size of a snapshot file")
    stat.add_argument("file")
    stat.add_argument("-w", "--write-out", default="simple", choices=("simple", "json", "table"))


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "restore":
            return _restore(args)
        return _status(args)
    except (errors.StorageError, config_mod.ConfigError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


def _restore(args) -> int:
    config = config_mod.ServerConfig(
        name=args.name, data_dir=args.data_dir, initial_cluster=args.initial_cluster,
        initial_cluster_token=args.initial_cluster_token,
        initial_advertise_peer_urls=args.initial_advertise_peer_urls.split(","))
    members = config.initial_cluster_map()
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = restore.restore_data_dir(
        args.file, config.effective_data_dir, name=config.name,
        peer_urls=config.initial_advertise_peer_urls, cluster_token=config.initial_cluster_token,
        initial_cluster=members, skip_hash_check=args.skip_hash_check, progress=progress)
    report = {"msg": "restored snapshot", "path": args.file,
              "data-dir": config.effective_data_dir, "member-id": f"{result.member_id:x}",
              "cluster-id": f"{result.cluster_id:x}", "applied-index": result.applied_index}
    imported = result.etcd_import
    if imported is not None:
        report.update({"format": "etcd", "revision": imported.revision,
                       "compact-revision": imported.compact_revision, "keys": imported.keys,
                       "leases": imported.leases, "not-imported": imported.not_imported})
    print(json.dumps(report))
    if imported is not None:
        print(f"imported the live state of an etcd snapshot at revision {imported.revision}: "
              f"{imported.keys} keys, {imported.leases} leases (full TTLs again). History "
              f"below revision {imported.revision} is not carried: reads below it fail as "
              "compacted. Not imported: membership (a new one-member cluster)"
              + (", users and roles (etcd had auth enabled; pykv serves this with auth "
                 "off)" if imported.auth_enabled else "")
              + (", alarms" if "alarm" in imported.not_imported else "") + ".",
              file=sys.stderr)
    return 0


def _status(args) -> int:
    result = restore.status(args.file)
    if args.write_out == "json":
        print(json.dumps({"hash": result.hash, "revision": result.revision,
                          "totalKey": result.total_keys, "totalSize": result.total_size}))
    elif args.write_out == "table":
        print("+----------+----------+------------+------------+")
        print("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |")
        print("+----------+----------+------------+------------+")
        print(f"| {result.hash:8x} | {result.revision:8d} | {result.total_keys:10d} | "
              f"{result.total_size:10d} |")
        print("+----------+----------+------------+------------+")
    else:
        print(f"{result.hash:x}, {result.revision}, {result.total_keys}, {result.total_size}")
    return 0
