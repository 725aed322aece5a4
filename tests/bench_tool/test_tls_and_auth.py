"""pykv bench over TLS (--cacert, --cert, --key) and with etcd auth (--user)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pykv.bench.config import BenchConfig, TLSConfig
from pykv.bench.report import to_json
from pykv.bench.runner import BenchError, run
from pykv.bench.servers import ServerTLS, start

pytestmark = pytest.mark.timeout(120)


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(directory, name: str, usage: str) -> None:
    """A key and a certificate for ``name`` signed by the test CA in ``directory``."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=directory)
    (directory / f"{name}.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH: cannot make test certificates")
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not on PATH (Debian: apt-get install etcd-server)")
    directory = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=pykv-test-ca", cwd=directory)
    _issue(directory, "server", "serverAuth")
    _issue(directory, "client", "clientAuth")
    return directory


@pytest.fixture(scope="module")
def tls_etcd(certs):
    client = TLSConfig(cacert=str(certs / "ca.pem"), cert=str(certs / "client.pem"),
                       key=str(certs / "client.key"))
    server_tls = ServerTLS(str(certs / "server.pem"), str(certs / "server.key"),
                           trusted_ca_file=str(certs / "ca.pem"), client_cert_auth=True)
    with start("etcd", tls=server_tls, client_tls=client) as server:
        yield server, client


def test_put_over_tls_with_a_client_certificate(tls_etcd):
    server, client = tls_etcd
    assert server.endpoint.startswith("https://")
    report = to_json(run(BenchConfig("put", endpoints=[server.endpoint], clients=4, procs=2, total=100,
                                     tls=client)))
    assert report["requests"] == 100 and report["errors"] == {}
    assert report["server"]["pid"] == server.pid


def test_without_the_client_certificate_the_bench_says_it_cannot_connect(tls_etcd):
    server, client = tls_etcd
    no_cert = TLSConfig(cacert=client.cacert)
    with pytest.raises(BenchError, match="cannot connect to https://127.0.0.1:.*--dial-timeout"):
        run(BenchConfig("put", endpoints=[server.endpoint], total=10, tls=no_cert, dial_timeout_s=1.0))


@pytest.fixture(scope="module")
def auth_etcd():
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not on PATH (Debian: apt-get install etcd-server)")
    import grpc

    from pykv.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    with start("etcd") as server:
        with grpc.insecure_channel(server.endpoint) as channel:
            auth = rpc_pb2_grpc.AuthStub(channel)
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="secret"), timeout=10)
            auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=10)
            auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
            auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)
        yield server


def test_user_flag_authenticates_every_call(auth_etcd):
    # Worker processes each authenticate once and send the token with every call.
    report = to_json(run(BenchConfig("put", endpoints=[auth_etcd.endpoint], clients=4, procs=2,
                                     total=60, user="root:secret")))
    assert report["requests"] == 60 and report["errors"] == {}
    assert report["config"]["user"] == "root:***"  # the password stays out of reports


def test_without_credentials_every_request_is_counted_as_an_error(auth_etcd):
    report = to_json(run(BenchConfig("put", endpoints=[auth_etcd.endpoint], clients=2, procs=1,
                                     total=20)))
    assert report["requests"] == 0 and report["error_count"] == 20
    assert report["ops"] == {} and report["main"] is None
    assert report["errors"] == {"INVALID_ARGUMENT: etcdserver: user name is empty": 20}


def test_wrong_password_is_a_clear_error(auth_etcd):
    with pytest.raises(BenchError, match="--user root: authentication failed: INVALID_ARGUMENT"):
        run(BenchConfig("put", endpoints=[auth_etcd.endpoint], total=5, user="root:wrong"))
