"""Uploaded architectures (deduplicated by content)."""
