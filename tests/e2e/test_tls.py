"""The everyday secured form: etcdctl over https with a client certificate
(`--cacert --cert --key`), against `pykv serve --client-cert-auth`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.e2e.harness import etcdctl


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: it makes the test certificates")
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", "san.cnf",
                 cwd=d)
    return d


def test_etcdctl_over_https_with_a_client_certificate(fresh_pykv, certs):
    server = fresh_pykv(scheme="https", extra_args=(
        "--cert-file", str(certs / "server.crt"), "--key-file", str(certs / "server.key"),
        "--trusted-ca-file", str(certs / "ca.crt"), "--client-cert-auth"))
    secure = ("--cacert", str(certs / "ca.crt"), "--cert", str(certs / "client.crt"),
              "--key", str(certs / "client.key"))
    endpoint = f"https://{server.endpoint}"
    etcdctl(endpoint, "put", "/tls/k", "v", extra=secure)
    out = etcdctl(endpoint, "get", "", "--prefix", "--keys-only", extra=secure)
    assert out.stdout.split() == [b"/tls/k"]
    # Without a client certificate the handshake is refused.
    refused = etcdctl(endpoint, "get", "/tls/k", "--dial-timeout=2s", "--command-timeout=3s",
                      extra=("--cacert", str(certs / "ca.crt")), check=False)
    assert refused.returncode != 0
