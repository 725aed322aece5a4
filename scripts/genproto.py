#!/usr/bin/env python3
"""Regenerate pykv/api from proto/: ``python scripts/genproto.py [--out DIR]``.

Runs grpc_tools' bundled protoc over every ``proto/**/*.proto`` and then
post-processes the output so that it lives inside the pykv package:

- imports between generated modules are rewritten from ``from mvccpb import
  kv_pb2`` to ``from pykv.api.mvccpb import kv_pb2`` (protoc knows nothing of
  the package the files end up in);
- descriptors are added to pykv's own descriptor pool (``pykv.api.POOL``)
  instead of protobuf's default pool, so that pykv can be imported in the same
  process as another etcd client that registers its own copy of
  ``etcdserverpb`` (python-etcd3, aetcd, ...): two files defining the same
  symbols in one pool is an import-time error;
- ``*_pb2_grpc.py`` is kept only for files that define a service;
- every package directory gets an ``__init__.py``.

The output is deterministic for a given grpcio-tools version, which
tests/unit/test_proto_current.py checks byte for byte. Never edit pykv/api by
hand: edit proto/ and rerun this script.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "pykv" / "api"
PACKAGE = "pykv.api"

API_INIT = '''\
"""Generated protobuf and gRPC modules for etcd's API. Do not edit.

Regenerate with ``python scripts/genproto.py`` after changing proto/.

The message modules (``*_pb2``) need only protobuf; the service modules
(``*_pb2_grpc``) import grpc. Every descriptor lives in ``POOL``, pykv's own
descriptor pool, not protobuf's default one, so that pykv coexists in one
process with other etcd clients that carry their own copy of these protos.
"""

from google.protobuf import descriptor_pool as _descriptor_pool

POOL = _descriptor_pool.DescriptorPool()
'''

SUBPACKAGE_INIT = '"""Generated from proto/{name}. Do not edit."""\n'


def _proto_files() -> list[pathlib.Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def _run_protoc(args: list[str]) -> None:
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("genproto: grpcio-tools is not installed (pip install grpcio-tools)") from exc
    import importlib.resources

    # grpc_tools ships google/protobuf/*.proto; pass its include dir as protoc's own CLI does.
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{well_known}", *args])
    if rc != 0:
        raise SystemExit(f"genproto: protoc failed with exit code {rc}")


def _top_packages(protos: list[pathlib.Path]) -> list[str]:
    return sorted({p.relative_to(PROTO_DIR).parts[0] for p in protos})


def _rewrite(text: str, top_packages: list[str]) -> str:
    alternatives = "|".join(re.escape(p) for p in top_packages)
    # "from mvccpb import kv_pb2 as ..." and "import mvccpb.kv_pb2" forms.
    text = re.sub(rf"^from ({alternatives})(\.| import )", rf"from {PACKAGE}.\1\2", text,
                  flags=re.MULTILINE)
    text = re.sub(rf"^import ({alternatives})\.", rf"import {PACKAGE}.\1.", text, flags=re.MULTILINE)
    # The module name protobuf records in each message class's __module__.
    text = re.sub(rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')({alternatives})\.",
                  rf"\1{PACKAGE}.\2.", text)
    if "_descriptor_pool.Default().AddSerializedFile(" in text:
        text = text.replace("_descriptor_pool.Default().AddSerializedFile(",
                            "_PYKV_POOL.AddSerializedFile(")
        text = text.replace("# @@protoc_insertion_point(imports)\n",
                            f"# @@protoc_insertion_point(imports)\nfrom {PACKAGE} import POOL as _PYKV_POOL\n",
                            1)
    return text


def generate(out: pathlib.Path) -> None:
    """Write the generated package into ``out``, replacing whatever was there."""
    protos = _proto_files()
    if not protos:
        raise SystemExit(f"genproto: no .proto files under {PROTO_DIR}")
    rel = [str(p.relative_to(PROTO_DIR)) for p in protos]
    with_services = [str(p.relative_to(PROTO_DIR)) for p in protos
                     if re.search(r"^service\s", p.read_text(), flags=re.MULTILINE)]
    top_packages = _top_packages(protos)

    with tempfile.TemporaryDirectory(prefix="genproto-") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        _run_protoc([f"--python_out={tmp}", f"--pyi_out={tmp}", *rel])
        _run_protoc([f"--grpc_python_out={tmp}", *with_services])

        for path in sorted(tmp.rglob("*.py*")):
            path.write_text(_rewrite(path.read_text(), top_packages))
        for directory in sorted({p.parent for p in tmp.rglob("*.py")}):
            if directory != tmp:
                name = directory.relative_to(tmp).as_posix()
                (directory / "__init__.py").write_text(SUBPACKAGE_INIT.format(name=name))
        (tmp / "__init__.py").write_text(API_INIT)

        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    generate(args.out.resolve())
    print(f"genproto: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
