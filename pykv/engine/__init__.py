"""What ``pykv serve`` and ``pykv.open`` share: the data directory, the
encoding of requests inside Raft entries, the application of committed
entries to the MVCC store, and the durable Raft log on the WAL.

Neither gRPC nor asyncio: the server adds Raft peers and gRPC on top, the
embedded API a direct single-node write path.
"""
