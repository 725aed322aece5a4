"""Generated from proto/v3electionpb. Do not edit."""
