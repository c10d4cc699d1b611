"""Ingest: logs and documents in, a masked, structured dataset directory out."""
