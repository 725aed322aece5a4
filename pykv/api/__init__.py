"""Generated protobuf and gRPC modules for etcd's API. Do not edit.

Regenerate with ``python scripts/genproto.py`` after changing proto/.

The message modules (``*_pb2``) need only protobuf; the service modules
(``*_pb2_grpc``) import grpc. Every descriptor lives in ``POOL``, pykv's own
descriptor pool, not protobuf's default one, so that pykv coexists in one
process with other etcd clients that carry their own copy of these protos.
"""

from google.protobuf import descriptor_pool as _descriptor_pool

POOL = _descriptor_pool.DescriptorPool()
