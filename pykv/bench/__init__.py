"""``pykv bench``: a load generator for any etcd v3 endpoint (see pykv.bench.cli)."""
