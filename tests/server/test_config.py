"""etcd's flag names, environment variables and YAML keys."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from pykv.server import config as cfg


def parse(argv, environ=None) -> cfg.ServerConfig:
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    return cfg.from_args(parser.parse_args(argv), environ or {})


def test_defaults_are_etcds():
    config = parse([])
    assert config.effective_data_dir == "default.etcd"
    assert config.listen_client_urls == ["http://localhost:2379"]
    assert config.max_request_bytes == 1572864
    assert config.max_txn_ops == 128
    assert config.effective_quota_backend_bytes == 2 << 30
    assert (config.heartbeat_interval_ms, config.election_timeout_ms) == (100, 1000)
    assert config.election_ticks == 10
    assert config.grpc_max_receive_bytes == 1572864 + 512 * 1024


def test_flags_then_environment_then_defaults():
    config = parse(["--name", "n1", "--max-txn-ops", "256"],
                   {"ETCD_MAX_TXN_OPS": "999", "ETCD_DATA_DIR": "/tmp/x",
                    "ETCD_CLIENT_CERT_AUTH": "true", "ETCD_TRUSTED_CA_FILE": "/ca"})
    assert config.name == "n1" and config.max_txn_ops == 256
    assert config.data_dir == "/tmp/x"
    assert config.client_tls.client_cert_auth and config.client_tls.trusted_ca_file == "/ca"
    assert parse(["--name", "n2"]).effective_data_dir == "n2.etcd"


def test_config_file_uses_etcds_yaml_keys_and_ignores_the_flags(tmp_path):
    path = tmp_path / "etcd.yaml"
    path.write_text(
        "name: infra1\n"
        "data-dir: /var/lib/etcd\n"
        "listen-client-urls: http://10.0.0.1:2379,http://127.0.0.1:2379\n"
        "max-request-bytes: 3145728\n"
        "quota-backend-bytes: 8589934592\n"
        "heartbeat-interval: 200\n"
        "election-timeout: 2000\n"
        "client-transport-security:\n"
        "  cert-file: /etc/etcd/server.crt\n"
        "  key-file: /etc/etcd/server.key\n"
        "  client-cert-auth: true\n"
        "  trusted-ca-file: /etc/etcd/ca.crt\n"
        "enable-v2: false\n")  # a key pykv does not use: ignored, as etcd ignores unknowns
    config = parse(["--config-file", str(path), "--name", "ignored"])
    assert config.name == "infra1" and config.data_dir == "/var/lib/etcd"
    assert config.listen_client_urls == ["http://10.0.0.1:2379", "http://127.0.0.1:2379"]
    assert config.max_request_bytes == 3145728 and config.quota_backend_bytes == 8 << 30
    assert config.election_ticks == 10
    assert config.client_tls.cert_file == "/etc/etcd/server.crt"
    assert config.client_tls.client_cert_auth


@pytest.mark.parametrize("argv,message", [
    (["--listen-client-urls", "localhost:2379"], "must be http(s)://host:port"),
    (["--heartbeat-interval", "100", "--election-timeout", "300"], "at least as 5 times"),
    (["--election-timeout", "60000"], "is too long"),
    (["--max-txn-ops", "zero"], "invalid value"),
    (["--initial-cluster", "n1"], "not of the form name=url"),
    (["--client-cert-auth"], "needs --trusted-ca-file"),
    (["--listen-client-urls", "https://127.0.0.1:2379"], "must be provided"),
    (["--log-level", "loud"], "unknown level"),
    (["--name", "a", "--initial-cluster", "a=http://h1:2380,b=http://h2:2380"],
     "serves one member"),
    (["--initial-cluster-state", "existing"], "serves one member"),
    (["--listen-client-urls", "unix://localhost:2379"], "unix socket URLs are not supported"),
    (["--auto-tls"], "--auto-tls is not supported"),
    (["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"],
     "is not a revision count"),
])
def test_bad_values_are_refused_with_a_message_naming_the_flag(argv, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        parse(argv)


def test_serve_exits_2_with_the_reason_on_a_bad_flag(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pykv", "serve", "--data-dir", str(tmp_path),
                          "--election-timeout", "50"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--election-timeout" in out.stderr


def test_config_survives_the_trip_to_a_front_end_process():
    config = parse(["--name", "n1", "--cert-file", "/c", "--key-file", "/k", "--max-txn-ops", "9"])
    assert cfg.from_json(cfg.to_json(config)) == config


def test_keepalive_flags_take_go_durations_and_default_to_etcds():
    config = parse([])
    assert (config.grpc_keepalive_min_time_s, config.grpc_keepalive_interval_s,
            config.grpc_keepalive_timeout_s) == (5.0, 7200.0, 20.0)
    config = parse(["--grpc-keepalive-interval", "1m30s", "--grpc-keepalive-timeout", "500ms"],
                   {"ETCD_GRPC_KEEPALIVE_MIN_TIME": "2h0m0s"})
    assert (config.grpc_keepalive_min_time_s, config.grpc_keepalive_interval_s,
            config.grpc_keepalive_timeout_s) == (7200.0, 90.0, 0.5)
    assert parse(["--grpc-keepalive-interval", "0"]).grpc_keepalive_interval_s == 0.0


def test_keepalive_in_a_config_file_is_nanoseconds_or_a_duration(tmp_path):
    path = tmp_path / "etcd.yaml"
    path.write_text("grpc-keepalive-min-time: 3000000000\ngrpc-keepalive-timeout: 15s\n")
    config = parse(["--config-file", str(path)])
    assert (config.grpc_keepalive_min_time_s, config.grpc_keepalive_timeout_s) == (3.0, 15.0)


@pytest.mark.parametrize("text", ["", "5", "5x", "-1s", "s", "1h-2m"])
def test_a_bad_duration_names_the_flag(text):
    with pytest.raises(cfg.ConfigError, match="--grpc-keepalive-timeout: invalid value"):
        parse([f"--grpc-keepalive-timeout={text}"])


def test_gateway_is_on_and_cors_closed_by_default():
    config = parse([])
    assert config.enable_grpc_gateway is True and config.cors == []
    config = parse(["--enable-grpc-gateway=false", "--cors", "http://a.example,http://b.example"])
    assert config.enable_grpc_gateway is False
    assert config.cors == ["http://a.example", "http://b.example"]
