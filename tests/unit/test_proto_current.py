"""pykv/api is exactly what scripts/genproto.py makes from proto/, and the
protos keep etcd's wire contract (package, service and method names, field
names and numbers; ETCD-FACTS §2)."""

from __future__ import annotations

import filecmp
import importlib.metadata
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
API = ROOT / "pykv" / "api"


def _files(directory: pathlib.Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _grpc_tools_version_or_skip() -> str:
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        pytest.skip("grpcio-tools is not installed (it is in the 'test' extra): cannot regenerate")
    return importlib.metadata.version("grpcio-tools")


def test_generated_api_matches_proto_sources(tmp_path):
    installed = _grpc_tools_version_or_skip()
    recorded = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'",
                         (API / "etcdserverpb" / "rpc_pb2_grpc.py").read_text()).group(1)
    if installed != recorded:
        pytest.skip(f"pykv/api was generated with grpcio-tools {recorded} but {installed} is "
                    f"installed; output differs by version (pip install grpcio-tools=={recorded})")
    out = tmp_path / "api"
    subprocess.run([sys.executable, "scripts/genproto.py", "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    expected, actual = _files(out), _files(API)
    assert actual == expected, "files differ: run python scripts/genproto.py"
    _, mismatch, errors = filecmp.cmpfiles(out, API, sorted(expected), shallow=False)
    assert mismatch == [] and errors == [], "stale pykv/api: run python scripts/genproto.py"


def _fields(message) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_fields_keep_etcd_names_and_numbers():
    from pykv.api.authpb import auth_pb2
    from pykv.api.etcdserverpb import rpc_pb2
    from pykv.api.mvccpb import kv_pb2

    assert _fields(kv_pb2.KeyValue) == {"key": 1, "create_revision": 2, "mod_revision": 3,
                                        "version": 4, "value": 5, "lease": 6}
    assert _fields(rpc_pb2.RangeRequest) == {
        "key": 1, "range_end": 2, "limit": 3, "revision": 4, "sort_order": 5, "sort_target": 6,
        "serializable": 7, "keys_only": 8, "count_only": 9, "min_mod_revision": 10,
        "max_mod_revision": 11, "min_create_revision": 12, "max_create_revision": 13}
    assert _fields(rpc_pb2.Compare) == {"result": 1, "target": 2, "key": 3, "version": 4,
                                        "create_revision": 5, "mod_revision": 6, "value": 7,
                                        "lease": 8, "range_end": 64}
    assert _fields(rpc_pb2.WatchCreateRequest) == {
        "key": 1, "range_end": 2, "start_revision": 3, "progress_notify": 4, "filters": 5,
        "prev_kv": 6, "watch_id": 7, "fragment": 8}
    assert _fields(rpc_pb2.WatchResponse) == {
        "header": 1, "watch_id": 2, "created": 3, "canceled": 4, "compact_revision": 5,
        "cancel_reason": 6, "fragment": 7, "events": 11}
    assert _fields(rpc_pb2.StatusResponse) == {
        "header": 1, "version": 2, "dbSize": 3, "leader": 4, "raftIndex": 5, "raftTerm": 6,
        "raftAppliedIndex": 7, "errors": 8, "dbSizeInUse": 9, "isLearner": 10,
        "storageVersion": 11, "dbSizeQuota": 12, "downgradeInfo": 13}
    assert _fields(rpc_pb2.LeaseTimeToLiveResponse) == {"header": 1, "ID": 2, "TTL": 3,
                                                        "grantedTTL": 4, "keys": 5}
    assert _fields(rpc_pb2.HashKVResponse)["hash_revision"] == 4
    assert _fields(rpc_pb2.SnapshotResponse)["version"] == 4
    assert _fields(rpc_pb2.MemberListRequest) == {"linearizable": 1}
    assert _fields(rpc_pb2.AuthUserGrantRoleRequest) == {"user": 1, "role": 2}
    assert _fields(rpc_pb2.AuthUserAddRequest) == {"name": 1, "password": 2, "options": 3,
                                                   "hashedPassword": 4}
    assert _fields(auth_pb2.Permission) == {"permType": 1, "key": 2, "range_end": 3}


def test_enums_keep_etcd_values():
    from pykv.api.etcdserverpb import rpc_pb2
    from pykv.api.mvccpb import kv_pb2

    assert (kv_pb2.Event.PUT, kv_pb2.Event.DELETE) == (0, 1)
    assert [rpc_pb2.Compare.CompareTarget.Value(n)
            for n in ("VERSION", "CREATE", "MOD", "VALUE", "LEASE")] == [0, 1, 2, 3, 4]
    assert rpc_pb2.Compare.NOT_EQUAL == 3
    assert [rpc_pb2.RangeRequest.SortTarget.Value(n)
            for n in ("KEY", "VERSION", "CREATE", "MOD", "VALUE")] == [0, 1, 2, 3, 4]
    assert (rpc_pb2.NONE, rpc_pb2.NOSPACE, rpc_pb2.CORRUPT) == (0, 1, 2)
    assert rpc_pb2.WatchCreateRequest.NODELETE == 1


def test_services_have_etcd_method_paths():
    from pykv.api.etcdserverpb import rpc_pb2
    from pykv.api.healthpb import health_pb2
    from pykv.api.v3electionpb import v3election_pb2
    from pykv.api.v3lockpb import v3lock_pb2

    def paths(module) -> set[str]:
        return {f"/{s.full_name}/{m.name}" for s in module.DESCRIPTOR.services_by_name.values()
                for m in s.methods}

    etcd = paths(rpc_pb2)
    assert {"/etcdserverpb.KV/Range", "/etcdserverpb.KV/Txn", "/etcdserverpb.Watch/Watch",
            "/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.Cluster/MemberPromote",
            "/etcdserverpb.Maintenance/Snapshot", "/etcdserverpb.Maintenance/Downgrade",
            "/etcdserverpb.Auth/AuthStatus", "/etcdserverpb.Auth/RoleRevokePermission"} <= etcd
    assert len(etcd) == 6 + 1 + 5 + 5 + 8 + 17
    assert paths(v3lock_pb2) == {"/v3lockpb.Lock/Lock", "/v3lockpb.Lock/Unlock"}
    assert paths(v3election_pb2) == {f"/v3electionpb.Election/{m}" for m in
                                     ("Campaign", "Proclaim", "Leader", "Observe", "Resign")}
    assert paths(health_pb2) == {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List",
                                 "/grpc.health.v1.Health/Watch"}


def test_nested_txn_round_trips_through_the_wire_format():
    from pykv.api.etcdserverpb import rpc_pb2

    inner = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=b"k", value=b"v", lease=7, prev_kv=True))])
    outer = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.CREATE, create_revision=0,
                                 range_end=b"l")],
        success=[rpc_pb2.RequestOp(request_txn=inner)])
    data = outer.SerializeToString()
    back = rpc_pb2.TxnRequest.FromString(data)
    assert back == outer
    assert back.success[0].WhichOneof("request") == "request_txn"
    assert back.compare[0].WhichOneof("target_union") == "create_revision"
    # range_end = 64 is a two-byte tag: (64 << 3 | 2) as a varint is 0x82 0x04.
    assert b"\x82\x04\x01l" in data


def test_api_coexists_with_another_copy_of_etcd_protos_in_the_default_pool():
    # Another etcd client (python-etcd3, aetcd) registers its own "rpc.proto" with
    # package etcdserverpb in protobuf's default pool; that must not clash with ours.
    code = (
        "from google.protobuf import descriptor_pool, descriptor_pb2\n"
        "from pykv.api.etcdserverpb import rpc_pb2\n"
        "other = descriptor_pb2.FileDescriptorProto(name='rpc.proto', package='etcdserverpb',"
        " syntax='proto3')\n"
        "other.message_type.add(name='ResponseHeader')\n"
        "descriptor_pool.Default().Add(other)\n"
        "print(rpc_pb2.ResponseHeader(revision=5).revision)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5"


def test_message_modules_do_not_import_grpc():
    # The engine imports *_pb2 and must not pay for grpc (docs/architecture.md).
    code = (
        "import sys\n"
        "from pykv.api.etcdserverpb import rpc_pb2\n"
        "from pykv.api.v3electionpb import v3election_pb2\n"
        "print('grpc' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
