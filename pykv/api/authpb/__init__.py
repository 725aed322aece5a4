"""Generated from proto/authpb. Do not edit."""
