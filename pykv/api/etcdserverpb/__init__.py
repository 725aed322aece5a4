"""Generated from proto/etcdserverpb. Do not edit."""
