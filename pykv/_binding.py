"""The one crossing into the C core: loads ``pykv._native`` and checks it.

This is the only module that imports ``pykv._native``. Modules that wrap a
part of the C core (``pykv.wal``, the snapshot codec) take ``ffi``, ``lib``
and ``check`` from here. At import the version baked into the shared library
is compared with ``pykv.__version__``, so a stale build fails loudly instead
of misbehaving.
"""

from __future__ import annotations

import pykv
from pykv import errors

try:
    from pykv._native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "pykv's C core (pykv._native) is not built: install the package with "
        "`pip install .` (or `pip install -e .`), which compiles csrc/ with cffi"
    ) from exc

_native_version = ffi.string(lib.pykv_native_version()).decode()
if _native_version != pykv.__version__:  # pragma: no cover - depends on the install
    raise ImportError(
        f"pykv._native was built for pykv {_native_version} but this is pykv "
        f"{pykv.__version__}: rebuild it (`pip install -e .`)"
    )

_CODE_NAMES = {
    lib.PYKV_EIO: "I/O error",
    lib.PYKV_ENOMEM: "out of memory",
    lib.PYKV_EINVAL: "invalid argument",
    lib.PYKV_ECORRUPT: "corrupt data",
    lib.PYKV_ETORN: "torn write",
    lib.PYKV_ECLOSED: "closed",
    lib.PYKV_ETOOLARGE: "too large",
    lib.PYKV_EEOF: "end of data",
    lib.PYKV_ELOCKED: "locked by another process",
    lib.PYKV_EFATAL: "an earlier fsync failed",
}


def check(rc: int, what: str, detail: str = "") -> int:
    """Return ``rc`` when it is not an error; otherwise raise the matching
    pykv exception, naming ``what`` was being done and any ``detail`` (the
    handle's last error text, a path) so no bare OSError reaches the user."""
    if rc >= 0:
        return rc
    text = f"{what}: {_CODE_NAMES.get(rc, f'error {rc}')}"
    if detail:
        text = f"{text}: {detail}"
    if rc == lib.PYKV_ECLOSED:
        raise errors.ClosedError(text)
    if rc == lib.PYKV_ECORRUPT:
        raise errors.CorruptionError(text)
    if rc == lib.PYKV_EFATAL:
        raise errors.FatalSyncError(text)
    if rc == lib.PYKV_ELOCKED:
        raise errors.LockedError(text)
    if rc == lib.PYKV_EINVAL:
        raise ValueError(text)
    if rc == lib.PYKV_ENOMEM:
        raise MemoryError(text)
    raise errors.StorageError(text)


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (chainable)."""
    return lib.pykv_crc32c(crc, ffi.from_buffer(data), len(data))
