"""Structured, quiet-by-default logs for the server: one JSON object a line.

Library code anywhere in pykv logs through the standard ``logging`` module
(``logging.getLogger("pykv.<part>")``) and passes fields as
``extra={"fields": {...}}``; the server installs this formatter, which writes
what etcd's zap logger writes (level, ts, logger, msg, fields), so the same
log tooling reads both. The embedded engine installs nothing: the host
application decides.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "panic": logging.CRITICAL, "fatal": logging.CRITICAL}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc)
        entry = {
            "level": record.levelname.lower().replace("warning", "warn"),
            "ts": ts.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "info", outputs: list[str] | None = None) -> None:
    """Send pykv's logs to ``outputs`` (stderr, stdout or file paths) as JSON lines."""
    root = logging.getLogger("pykv")
    root.handlers.clear()
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
    for output in outputs or ["stderr"]:
        if output in ("stderr", "default"):
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
        elif output == "stdout":
            handler = logging.StreamHandler(sys.stdout)
        else:
            handler = logging.FileHandler(output)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    # grpc's own logger is noisy about client disconnects; warnings only.
    logging.getLogger("grpc").setLevel(logging.WARNING)


def fields(**values) -> dict:
    """``log.info("msg", extra=fields(member_id=...))``; keys are written with
    dashes (``member-id``), as etcd's logs name them."""
    return {"fields": {key.replace("_", "-"): value for key, value in values.items()}}
