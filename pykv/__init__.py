"""pykv: an etcd-compatible, Raft-replicated, durable key-value store.

Importing pykv is cheap: it loads neither grpc nor the C core. ``pykv.open``
(the embedded engine) imports what it needs on first use.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "open"]


def open(path, **options):  # noqa: A001 - mirrors the builtin on purpose: pykv.open(path)
    """Open (or create) a pykv data directory in this process; see pykv.embedded."""
    from pykv.embedded import open as _open

    return _open(path, **options)
