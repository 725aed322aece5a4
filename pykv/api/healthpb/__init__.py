"""Generated from proto/healthpb. Do not edit."""
