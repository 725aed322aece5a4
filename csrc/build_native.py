"""cffi builder for the C core: ``pykv._native`` (API mode, out of line).

setup.py points ``cffi_modules`` here. The cdef is the concatenation of the
part headers ``csrc/pykv_*.h`` (declaration-only; their preprocessor guard
and include lines are dropped here), so the headers stay the one contract
between C and Python. Every ``csrc/*.c`` file is compiled in.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

CSRC = pathlib.Path(__file__).resolve().parent
ROOT = CSRC.parent


def _version() -> str:
    text = (ROOT / "pykv" / "__init__.py").read_text()
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise RuntimeError("pykv/__init__.py has no __version__")
    return match.group(1)


def _part_headers() -> list[pathlib.Path]:
    # pykv_common.h first: the others use its constants.
    parts = sorted(p for p in CSRC.glob("pykv_*.h") if p.name != "pykv_native.h")
    parts.sort(key=lambda p: p.name != "pykv_common.h")
    return parts


def _cdef_text(header: pathlib.Path) -> str:
    lines = []
    for line in header.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(("#ifndef", "#endif", "#include")):
            continue
        if re.match(r"#define\s+PYKV_\w+_H\s*$", stripped):
            continue  # include guard
        lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef("\n".join(_cdef_text(h) for h in _part_headers()))
ffibuilder.set_source(
    "pykv._native",
    '#include "pykv_native.h"\n',
    sources=[str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.c"))],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    define_macros=[("PYKV_VERSION", '"%s"' % _version()), ("_GNU_SOURCE", "1")],
    # -UNDEBUG: distutils forces NDEBUG; our assertions must stay alive.
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-UNDEBUG",
                        "-Wno-unused-parameter"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(ROOT), verbose=True)
