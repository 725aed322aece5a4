"""Server configuration with etcd's flag names, defaults and YAML keys.

Three sources, as etcd has them: command-line flags (``--data-dir``),
environment variables (``ETCD_DATA_DIR``; a flag given on the command line
wins), and ``--config-file`` (etcd's YAML keys, e.g. ``data-dir:``); as with
etcd, when a config file is given the other flags and variables are ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import urllib.parse
from dataclasses import dataclass, field

DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024  # 1.5 MiB, etcd's --max-request-bytes
DEFAULT_QUOTA_BACKEND_BYTES = 2 << 30  # 2 GiB, when --quota-backend-bytes is 0
MAX_QUOTA_BACKEND_BYTES_WARN = 8 << 30
GRPC_OVERHEAD_BYTES = 512 * 1024  # gRPC's receive limit is max-request-bytes + this


class ConfigError(ValueError):
    """A flag or config-file value that cannot be used; the message says which."""


@dataclass
class TLSConfig:
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    auto_tls: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file or self.key_file or self.auto_tls)


@dataclass
class ServerConfig:
    name: str = "default"
    data_dir: str = ""  # "" -> "<name>.etcd", as etcd
    wal_dir: str = ""
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    advertise_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    listen_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    initial_advertise_peer_urls: list[str] = field(
        default_factory=lambda: ["http://localhost:2380"])
    initial_cluster: str = ""  # "" -> "<name>=<initial-advertise-peer-urls>"
    initial_cluster_token: str = "etcd-cluster"
    initial_cluster_state: str = "new"
    listen_metrics_urls: list[str] = field(default_factory=list)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_txn_ops: int = 128
    quota_backend_bytes: int = 0
    snapshot_count: int = 10_000
    snapshot_catchup_entries: int = 5_000
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    pre_vote: bool = True
    strict_reconfig_check: bool = True
    max_snapshots: int = 5
    max_wals: int = 5
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "0"
    log_level: str = "info"
    log_outputs: list[str] = field(default_factory=lambda: ["stderr"])
    unsafe_no_fsync: bool = False
    # pykv's own: which gRPC server answers plaintext client URLs: "native"
    # (HTTP/2 in C, pykv/server/h2server.py) or "grpcio". TLS URLs always
    # use grpcio. PYKV_GRPC_SERVER sets the default (the e2e suite runs both).
    grpc_server: str = field(default_factory=lambda: os.environ.get("PYKV_GRPC_SERVER", "native"))
    # gRPC keepalive, as etcd's flags: ping a client silent for the interval,
    # close it when the ping is not answered within the timeout; a client
    # pinging more often than the min time is told to calm down.
    grpc_keepalive_min_time_s: float = 5.0
    grpc_keepalive_interval_s: float = 2 * 3600.0
    grpc_keepalive_timeout_s: float = 20.0
    # etcd's grpc-gateway (JSON over HTTP/1 on the client port) and the
    # origins a browser may call it from (none unless listed; "*": any).
    enable_grpc_gateway: bool = True
    cors: list[str] = field(default_factory=list)
    client_tls: TLSConfig = field(default_factory=TLSConfig)
    peer_tls: TLSConfig = field(default_factory=TLSConfig)

    # --- derived values -------------------------------------------------------

    @property
    def effective_data_dir(self) -> str:
        return self.data_dir or f"{self.name}.etcd"

    @property
    def effective_quota_backend_bytes(self) -> int:
        return self.quota_backend_bytes if self.quota_backend_bytes > 0 else \
            DEFAULT_QUOTA_BACKEND_BYTES

    @property
    def election_ticks(self) -> int:
        return max(1, self.election_timeout_ms // self.heartbeat_interval_ms)

    @property
    def grpc_max_receive_bytes(self) -> int:
        return self.max_request_bytes + GRPC_OVERHEAD_BYTES

    def initial_cluster_map(self) -> dict[str, list[str]]:
        """name -> peer URLs, from --initial-cluster (defaulting to this member)."""
        text = self.initial_cluster or ",".join(
            f"{self.name}={u}" for u in self.initial_advertise_peer_urls)
        members: dict[str, list[str]] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, sep, url = item.partition("=")
            if not sep or not name or not url:
                raise ConfigError(f"--initial-cluster: {item!r} is not of the form name=url")
            _check_url("--initial-cluster", url)
            members.setdefault(name, []).append(url)
        return members

    def validate(self) -> None:
        """Raise ConfigError with etcd-like wording for values etcd refuses."""
        for flag, urls in (("--listen-client-urls", self.listen_client_urls),
                           ("--advertise-client-urls", self.advertise_client_urls),
                           ("--listen-peer-urls", self.listen_peer_urls),
                           ("--initial-advertise-peer-urls", self.initial_advertise_peer_urls),
                           ("--listen-metrics-urls", self.listen_metrics_urls)):
            for url in urls:
                _check_url(flag, url)
        if self.heartbeat_interval_ms <= 0:
            raise ConfigError("--heartbeat-interval must be > 0 ms")
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout_ms}ms] should be at least as 5 times "
                f"as --heartbeat-interval[{self.heartbeat_interval_ms}ms]")
        if self.election_timeout_ms > 50_000:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout_ms}ms] is too long, and should be "
                "set less than 50000ms")
        if self.max_request_bytes <= 0:
            raise ConfigError("--max-request-bytes must be > 0")
        if self.max_txn_ops <= 0:
            raise ConfigError("--max-txn-ops must be > 0")
        if self.grpc_server not in ("native", "grpcio"):
            raise ConfigError(f"--grpc-server: {self.grpc_server!r} is not native or grpcio")
        for flag, value in (("--grpc-keepalive-min-time", self.grpc_keepalive_min_time_s),
                            ("--grpc-keepalive-interval", self.grpc_keepalive_interval_s),
                            ("--grpc-keepalive-timeout", self.grpc_keepalive_timeout_s)):
            if value < 0:
                raise ConfigError(f"{flag} must not be negative")
        if self.snapshot_count <= 0:
            raise ConfigError("--snapshot-count must be > 0")
        if self.initial_cluster_state not in ("new", "existing"):
            raise ConfigError(
                f"--initial-cluster-state: {self.initial_cluster_state!r} is not new or existing")
        if self.log_level not in ("debug", "info", "warn", "error", "panic", "fatal"):
            raise ConfigError(f"--log-level: unknown level {self.log_level!r}")
        if self.client_tls.client_cert_auth and not self.client_tls.trusted_ca_file:
            raise ConfigError("--client-cert-auth needs --trusted-ca-file")
        if bool(self.client_tls.cert_file) != bool(self.client_tls.key_file):
            raise ConfigError("--cert-file and --key-file go together")
        members = self.initial_cluster_map()
        if len(members) > 1 or self.initial_cluster_state == "existing":
            raise ConfigError(
                f"--initial-cluster names {len(members)} members / --initial-cluster-state is "
                f"{self.initial_cluster_state!r}: this version of pykv serves one member; "
                "peer replication (--listen-peer-urls) is not built yet, and starting members "
                "alone would make separate clusters")
        if self.client_tls.auto_tls or self.peer_tls.auto_tls:
            raise ConfigError("--auto-tls is not supported: give --cert-file and --key-file")
        parse_retention(self.auto_compaction_mode, self.auto_compaction_retention)
        if any(urllib.parse.urlparse(u).scheme == "https" for u in self.listen_client_urls) \
                and not self.client_tls.enabled:
            raise ConfigError("TLS key/cert (--cert-file, --key-file) must be provided "
                              "for https client URLs")


def _check_url(flag: str, url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("unix", "unixs"):
        raise ConfigError(f"{flag}: URL {url!r}: unix socket URLs are not supported yet")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{flag}: URL {url!r} must be http(s)://host:port")
    try:
        port = parsed.port
    except ValueError as exc:
        raise ConfigError(f"{flag}: URL {url!r}: {exc}") from None
    if port is None:
        raise ConfigError(f"{flag}: URL {url!r} has no port")


_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_retention(mode: str, retention: str) -> tuple[str, float]:
    """etcd's --auto-compaction-mode/--auto-compaction-retention: ("periodic",
    seconds) or ("revision", revisions); 0 is off. A periodic retention
    without a unit is in hours, as in etcd ("5" is 5 hours; "30m" 30 minutes)."""
    text = str(retention).strip()
    if mode not in ("periodic", "revision"):
        raise ConfigError(f"--auto-compaction-mode: {mode!r} is not periodic or revision")
    if mode == "revision":
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"--auto-compaction-retention: {text!r} is not a revision count") \
                from None
        if value < 0:
            raise ConfigError("--auto-compaction-retention must not be negative")
        return mode, float(value)
    try:
        return mode, float(text) * 3600.0
    except ValueError:
        pass
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ConfigError(f"--auto-compaction-retention: {text!r} is not a duration (e.g. 1h, 30m)")
    return mode, sum(float(n) * _UNITS_S[u] for n, u in parts)


# ---------------------------------------------------------------------------
# flags, environment, YAML
# ---------------------------------------------------------------------------

# flag -> (attribute path, kind). Kinds: str, int, bool, urls.
_FLAGS: dict[str, tuple[str, str, str]] = {
    "name": ("name", "str", "human-readable name for this member"),
    "data-dir": ("data_dir", "str", "path to the data directory (default: ${name}.etcd)"),
    "wal-dir": ("wal_dir", "str", "path to the dedicated WAL directory"),
    "listen-client-urls": ("listen_client_urls", "urls", "URLs to listen on for client traffic"),
    "advertise-client-urls": ("advertise_client_urls", "urls",
                              "client URLs to advertise to the rest of the cluster"),
    "listen-peer-urls": ("listen_peer_urls", "urls", "URLs to listen on for peer traffic"),
    "initial-advertise-peer-urls": ("initial_advertise_peer_urls", "urls",
                                    "this member's peer URLs to advertise to the cluster"),
    "initial-cluster": ("initial_cluster", "str", "initial cluster configuration: name=url,..."),
    "initial-cluster-token": ("initial_cluster_token", "str",
                              "initial cluster token for the cluster during bootstrap"),
    "initial-cluster-state": ("initial_cluster_state", "str", "initial cluster state: new or existing"),
    "listen-metrics-urls": ("listen_metrics_urls", "urls",
                            "URLs for /metrics, /health and /version (plain HTTP)"),
    "max-request-bytes": ("max_request_bytes", "int",
                          "maximum client request size in bytes the server will accept"),
    "max-txn-ops": ("max_txn_ops", "int", "maximum number of operations permitted in a transaction"),
    "quota-backend-bytes": ("quota_backend_bytes", "int",
                            "raise alarms when backend size exceeds the given quota (0 = 2 GiB)"),
    "snapshot-count": ("snapshot_count", "int",
                       "number of committed transactions to trigger a snapshot to disk"),
    "snapshot-catchup-entries": ("snapshot_catchup_entries", "int",
                                 "entries kept after a snapshot for slow followers to catch up"),
    "heartbeat-interval": ("heartbeat_interval_ms", "int", "time (in milliseconds) of a heartbeat interval"),
    "election-timeout": ("election_timeout_ms", "int", "time (in milliseconds) for an election to timeout"),
    "pre-vote": ("pre_vote", "bool", "enable the raft Pre-Vote algorithm"),
    "strict-reconfig-check": ("strict_reconfig_check", "bool",
                              "reject reconfiguration requests that would cause quorum loss"),
    "max-snapshots": ("max_snapshots", "int", "accepted for etcd compatibility; pykv keeps "
                      "one snapshot marker in the WAL"),
    "max-wals": ("max_wals", "int", "accepted for etcd compatibility; pykv removes WAL files "
                 "wholly before each snapshot"),
    "auto-compaction-mode": ("auto_compaction_mode", "str", "periodic or revision"),
    "auto-compaction-retention": ("auto_compaction_retention", "str",
                                  "auto compaction retention (0 = off)"),
    "log-level": ("log_level", "str", "debug, info, warn, error, panic, or fatal"),
    "log-outputs": ("log_outputs", "urls", "stderr, stdout, or a file path"),
    "unsafe-no-fsync": ("unsafe_no_fsync", "bool", "disables fsync, unsafe, will cause data loss"),
    "grpc-server": ("grpc_server", "str",
                    "pykv: native (HTTP/2 in C) or grpcio, for plaintext client URLs"),
    "grpc-keepalive-min-time": ("grpc_keepalive_min_time_s", "duration",
                                "minimum interval duration that a client should wait before "
                                "pinging server"),
    "grpc-keepalive-interval": ("grpc_keepalive_interval_s", "duration",
                                "frequency duration of server-to-client ping to check if a "
                                "connection is alive (0 to disable)"),
    "grpc-keepalive-timeout": ("grpc_keepalive_timeout_s", "duration",
                               "additional duration of wait before closing a non-responsive "
                               "connection"),
    "enable-grpc-gateway": ("enable_grpc_gateway", "bool",
                            "enable the JSON gateway (HTTP/1 on the client port)"),
    "cors": ("cors", "urls", "comma-separated origins browsers may call the gateway from "
                             "('*': any; pykv's default: none)"),
    "cert-file": ("client_tls.cert_file", "str", "path to the client server TLS cert file"),
    "key-file": ("client_tls.key_file", "str", "path to the client server TLS key file"),
    "trusted-ca-file": ("client_tls.trusted_ca_file", "str",
                        "path to the client server TLS trusted CA cert file"),
    "client-cert-auth": ("client_tls.client_cert_auth", "bool", "enable client cert authentication"),
    "auto-tls": ("client_tls.auto_tls", "bool", "client TLS using generated certificates"),
    "peer-cert-file": ("peer_tls.cert_file", "str", "path to the peer server TLS cert file"),
    "peer-key-file": ("peer_tls.key_file", "str", "path to the peer server TLS key file"),
    "peer-trusted-ca-file": ("peer_tls.trusted_ca_file", "str", "path to the peer server TLS trusted CA file"),
    "peer-client-cert-auth": ("peer_tls.client_cert_auth", "bool", "enable peer client cert authentication"),
    "peer-auto-tls": ("peer_tls.auto_tls", "bool", "peer TLS using generated certificates"),
}

# YAML sections etcd nests: client-transport-security / peer-transport-security.
_YAML_TLS_KEYS = {"cert-file": "cert_file", "key-file": "key_file",
                  "trusted-ca-file": "trusted_ca_file", "client-cert-auth": "client_cert_auth",
                  "auto-tls": "auto_tls"}


def _parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off"):
        return False
    raise ConfigError(f"{text!r} is not a boolean")


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")


def parse_duration(raw) -> float:
    """Seconds from a Go duration (``"2h0m0s"``, ``"20s"``, ``"1.5ms"``, ``"0"``);
    an integer from a YAML file is nanoseconds, as Go's decoder reads it."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return raw / 1e9
    text = str(raw).strip()
    if text == "0":
        return 0.0
    at, total = 0, 0.0
    while at < len(text):
        match = _DURATION_PART.match(text, at)
        if match is None:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        at = match.end()
    if not text:
        raise ValueError("time: invalid duration \"\"")
    return total


def _convert(flag: str, kind: str, raw):
    try:
        if kind == "int":
            return int(raw)
        if kind == "duration":
            return parse_duration(raw)
        if kind == "bool":
            return _parse_bool(raw)
        if kind == "urls":
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return [str(u).strip() for u in items if str(u).strip()]
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--{flag}: invalid value {raw!r}: {exc}") from None


def _set(config: ServerConfig, path: str, value) -> None:
    target = config
    *parents, leaf = path.split(".")
    for part in parents:
        target = getattr(target, part)
    setattr(target, leaf, value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-file", default=os.environ.get("ETCD_CONFIG_FILE", ""),
                        help="path to the server configuration file (etcd's YAML keys); "
                             "when given, other flags and environment variables are ignored")
    for flag, (_, kind, help_text) in _FLAGS.items():
        if kind == "bool":
            parser.add_argument(f"--{flag}", nargs="?", const="true", default=None,
                                metavar="BOOL", help=help_text)
        else:
            parser.add_argument(f"--{flag}", default=None, help=help_text)


def from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServerConfig:
    """Build the config from parsed flags, ETCD_* variables or a config file."""
    environ = os.environ if environ is None else environ
    if args.config_file:
        return from_yaml_file(args.config_file)
    config = ServerConfig()
    for flag, (path, kind, _) in _FLAGS.items():
        raw = getattr(args, flag.replace("-", "_"))
        if raw is None:
            raw = environ.get("ETCD_" + flag.upper().replace("-", "_"))
        if raw is not None:
            _set(config, path, _convert(flag, kind, raw))
    config.validate()
    return config


def from_yaml_file(path: str) -> ServerConfig:
    import yaml  # only the config-file path pays for PyYAML

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise ConfigError(f"--config-file: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config-file: {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config-file: {path} must hold a mapping of etcd keys")
    config = ServerConfig()
    for key, value in data.items():
        if key in ("client-transport-security", "peer-transport-security"):
            tls = config.client_tls if key.startswith("client") else config.peer_tls
            for tls_key, tls_value in (value or {}).items():
                if tls_key in _YAML_TLS_KEYS:
                    attr = _YAML_TLS_KEYS[tls_key]
                    kind = "bool" if isinstance(getattr(tls, attr), bool) else "str"
                    setattr(tls, attr, _convert(tls_key, kind, tls_value))
            continue
        if key not in _FLAGS or value is None:
            continue  # etcd ignores keys it does not use; so do we
        attr, kind, _ = _FLAGS[key]
        _set(config, attr, _convert(key, kind, value))
    config.validate()
    return config


def to_json(config: ServerConfig) -> str:
    import json

    return json.dumps(dataclasses.asdict(config))


def from_json(text: str) -> ServerConfig:
    import json

    data = json.loads(text)
    data["client_tls"] = TLSConfig(**data["client_tls"])
    data["peer_tls"] = TLSConfig(**data["peer_tls"])
    return ServerConfig(**data)
