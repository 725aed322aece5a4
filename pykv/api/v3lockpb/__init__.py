"""Generated from proto/v3lockpb. Do not edit."""
