#!/usr/bin/env python3
"""Write docs/embedded.md, the API reference of ``pykv.open`` and ``pykv.aio``,
from the docstrings and signatures of the code.

    python scripts/gen_embedded_docs.py          # rewrite docs/embedded.md
    python scripts/gen_embedded_docs.py --check  # exit 1 if it is stale

tests/embedded/test_docs.py runs the check, so the page and the code cannot
drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pykv  # noqa: E402
import pykv.aio  # noqa: E402
from pykv import errors  # noqa: E402
from pykv.embedded import db, lease, options, txn, watch  # noqa: E402
from pykv.mvcc import types  # noqa: E402

OUT = ROOT / "docs" / "embedded.md"

# The errors the embedded API raises on purpose, in the order a reader meets them.
ERRORS = ["KeyNotProvided", "ValueTooLarge", "NoSpace", "Compacted", "FutureRevision",
          "LeaseNotFound", "LeaseExists", "LeaseTTLTooLarge", "TTLZero", "TooManyOps",
          "DuplicateKey", "InvalidSortOption", "WatchCanceled", "ClosedError", "LockedError",
          "CorruptionError", "StorageError", "FatalSyncError"]
RESULTS = [types.PutResult, types.RangeResult, types.DeleteRangeResult, types.TxnResult,
           types.CompactResult, types.KeyValue, types.Event, types.LeaseRevokeResult,
           types.LeaseTimeToLive, types.HashKVResult, types.AlarmMember]


def doc(obj: object) -> str:
    text = inspect.getdoc(obj) or ""
    return text.replace("\\\\", "\\")


def signature(name: str, fn: object) -> str:
    """``name(params) -> returns`` with annotations as written in the source
    (they are strings under ``from __future__ import annotations``)."""
    sig = inspect.signature(fn)
    params = []
    star_done = False
    for param in sig.parameters.values():
        if param.name == "self":
            continue
        if param.kind == param.KEYWORD_ONLY and not star_done:
            params.append("*")
            star_done = True
        text = param.name
        if param.kind == param.VAR_POSITIONAL:
            text, star_done = "*" + text, True
        elif param.kind == param.VAR_KEYWORD:
            text = "**" + text
        if param.annotation is not param.empty:
            text += f": {param.annotation}"
        if param.default is not param.empty:
            text += f" = {param.default!r}"
        params.append(text)
    returns = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"{name}({', '.join(params)}){returns}"


def members(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties, in the order they are defined."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value) or isinstance(value, property):
            out.append((name, value))
    return out


def method_block(owner: str, name: str, value: object) -> str:
    if isinstance(value, property):
        head = f"`{owner}.{name}` (property)"
        body = doc(value.fget)
    else:
        head = f"`{owner}.{signature(name, value)}`"
        body = doc(value)
    return f"#### {head}\n\n{body}\n" if body else f"#### {head}\n"


def class_section(title: str, cls: type, owner: str) -> str:
    parts = [f"### {title}\n\n{doc(cls)}\n"]
    parts += [method_block(owner, name, value) for name, value in members(cls)]
    return "\n".join(parts)


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comments above each dataclass field."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"(\w+):\s*[^=]+=", stripped)
        if match and pending:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    return comments


def options_table() -> str:
    comments = field_comments(options.Options)
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(options.Options):
        default = field.default
        shown = getattr(default, "__qualname__", None) or repr(default)
        if field.name == "clock":
            shown = "time.monotonic"
        meaning = comments.get(field.name, "see above" if field.name == "sync" else "")
        rows.append(f"| `{field.name}` | `{shown}` | {meaning} |")
    return "\n".join(rows)


def results_section() -> str:
    parts = []
    for cls in RESULTS:
        fields = getattr(cls, "__slots__", ())
        if cls is types.KeyValue:
            fields = ("key", "value", "create_revision", "mod_revision", "version", "lease")
        listed = ", ".join(f"`{f}`" for f in fields if not f.startswith("_"))
        parts.append(f"- **`{cls.__name__}`** ({listed}). {doc(cls)}".rstrip())
    return "\n".join(parts)


def errors_section() -> str:
    rows = ["| exception | when | message (etcd's, where etcd has one) |", "|---|---|---|"]
    whens = {
        "KeyNotProvided": "an empty key", "ValueTooLarge": "a request over max_request_bytes",
        "NoSpace": "past quota_bytes (a NOSPACE alarm is raised; `disarm()` clears it)",
        "Compacted": "a revision below the compact revision",
        "FutureRevision": "a revision past the current one",
        "LeaseNotFound": "an unknown, expired or revoked lease",
        "LeaseExists": "granting an id in use", "LeaseTTLTooLarge": "a TTL over 9e9 s",
        "TTLZero": "a TTL <= 0", "TooManyOps": "a txn branch over max_txn_ops",
        "DuplicateKey": "a txn writing a key twice", "InvalidSortOption": "a bad sort",
        "WatchCanceled": "a watch the store had to cancel",
        "ClosedError": "any call after close()",
        "LockedError": "the directory is open in another process (or DB)",
        "CorruptionError": "files that cannot be trusted (where: path, offset)",
        "StorageError": "the disk failed or is full; the database must be reopened",
        "FatalSyncError": "an fdatasync failed (a StorageError)",
    }
    for name in ERRORS:
        cls = getattr(errors, name)
        message = getattr(cls, "message", "")
        rows.append(f"| `pykv.errors.{name}` | {whens[name]} | {message and f'`{message}`'} |")
    return "\n".join(rows)


def txn_functions() -> str:
    parts = []
    for name in ("value", "version", "create_revision", "mod_revision", "lease_of", "put_op",
                 "get_op", "delete_op", "txn_op"):
        fn = getattr(txn, name)
        parts.append(f"#### `pykv.embedded.{signature(name, fn)}`\n\n{doc(fn)}\n")
    return "\n".join(parts)


def render() -> str:
    sections = [
        "# `pykv.open`: the embedded API\n",
        "<!-- Generated by scripts/gen_embedded_docs.py from the docstrings; do not edit. -->\n",
        doc(sys.modules["pykv.embedded"]) + "\n",
        "## Opening\n",
        f"### `pykv.{signature('open', db.open)}`\n\n{doc(db.open)}\n",
        doc(options.Options) + "\n",
        options_table() + "\n",
        "## The database\n",
        class_section("`DB`", db.DB, "DB"),
        f"### `Status`\n\n{doc(db.Status)}\n\n"
        + ", ".join(f"`{f.name}`" for f in dataclasses.fields(db.Status)) + "\n",
        "## Transactions\n",
        doc(txn) + "\n",
        txn_functions(),
        class_section("`Txn`", txn.Txn, "Txn"),
        "## Watches\n",
        doc(watch) + "\n",
        class_section("`Watch`", watch.Watch, "Watch"),
        f"### `WatchCompacted`\n\n{doc(watch.WatchCompacted)}\n",
        "## Leases\n",
        class_section("`Lease`", lease.Lease, "Lease"),
        "## Results\n",
        "Results are small `__slots__` classes with etcd's field names "
        "(`pykv.mvcc.types`); every key and value in them is `bytes`.\n",
        results_section() + "\n",
        "## Errors\n",
        doc(errors) + "\n",
        errors_section() + "\n",
        "## asyncio: `pykv.aio`\n",
        doc(pykv.aio) + "\n",
        f"### `pykv.aio.{signature('open', pykv.aio.open)}`\n\n{doc(pykv.aio.open)}\n",
        class_section("`AsyncDB`", pykv.aio.AsyncDB, "AsyncDB"),
        class_section("`AsyncWatch`", pykv.aio.AsyncWatch, "AsyncWatch"),
        class_section("`AsyncLease`", pykv.aio.AsyncLease, "AsyncLease"),
    ]
    text = "\n".join(sections)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/embedded.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run python scripts/gen_embedded_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
