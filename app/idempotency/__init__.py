"""Idempotency-Key: a retried POST that creates work answers what the first one answered."""
