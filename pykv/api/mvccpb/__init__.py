"""Generated from proto/mvccpb. Do not edit."""
