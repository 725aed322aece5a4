"""Keep the dependency graph of DESIGN.md honest with an AST scan of imports.

The leaves (raft, wal, mvcc) know nothing of each other; only server and
embedded put them together; only server knows asyncio and gRPC; importing
pykv loads neither grpc nor the C core.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKG = ROOT / "pykv"

# What sits above the leaves: no leaf may import any of it.
_UPPER = ("pykv.engine", "pykv.server", "pykv.embedded", "pykv.aio", "pykv.bench", "pykv.api")

# package -> (forbidden module prefixes)
RULES: dict[str, tuple[str, ...]] = {
    "pykv.raft": (
        "asyncio", "socket", "time", "threading", "selectors", "grpc", "lmdb", "os",
        "pykv.wal", "pykv.mvcc", "pykv._binding", "pykv._native", *_UPPER,
    ),
    # The WAL knows Raft only through its value types (DESIGN.md).
    "pykv.wal": ("asyncio", "grpc", "lmdb", "pykv.mvcc", "pykv.raft.core", "pykv.raft.rawnode",
                 "pykv.raft.log", "pykv.raft.storage", *_UPPER),
    "pykv.mvcc": ("asyncio", "grpc", "pykv.raft", "pykv.wal", *_UPPER),
    "pykv.engine": ("asyncio", "grpc", "pykv.server", "pykv.embedded", "pykv.aio", "pykv.bench"),
    "pykv.server": ("pykv.embedded", "pykv.aio"),
    "pykv.embedded": ("grpc", "pykv.server", "pykv.bench"),
    "pykv.aio": ("grpc", "pykv.server", "pykv.bench"),
}

# Packages that may use protobuf messages but must not pay for gRPC.
NO_GRPC_STUBS = ("pykv.engine", "pykv.embedded", "pykv.mvcc", "pykv.wal", "pykv.raft")


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    module = _module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # "from pkg import mod" imports pkg.mod too (when mod is a module).
            found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        for package, forbidden in RULES.items():
            if module != package and not module.startswith(package + "."):
                continue
            for lineno, name in _imports(path):
                for prefix in forbidden:
                    if name == prefix or name.startswith(prefix + "."):
                        bad.append(f"{path.relative_to(ROOT)}:{lineno}: {module} imports {name}")
    return bad


def test_packages_import_only_what_the_design_allows():
    assert _violations() == []


def test_engine_and_embedded_never_import_grpc_stubs():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        if not any(module == p or module.startswith(p + ".") for p in NO_GRPC_STUBS):
            continue
        for lineno, name in _imports(path):
            if name.endswith("_pb2_grpc"):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {name}")
    assert offenders == []


def test_only_binding_imports_the_native_module():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "_binding.py" and path.parent == PKG:
            continue
        for lineno, name in _imports(path):
            if name == "pykv._native" or name.startswith("pykv._native."):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}")
    assert offenders == []


def test_import_pykv_loads_neither_grpc_nor_the_c_core():
    code = (
        "import sys, pykv, pykv.errors, pykv.cli\n"
        "loaded = [m for m in ('grpc', 'pykv._native', 'lmdb') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
