"""Logging, request/job ids and Prometheus metrics.

Examples::

    from app.observability import bind_job_id, configure_logging
    configure_logging(settings)            # JSON lines on stderr when settings.log_json
    with bind_job_id(job_id):              # every log line in the block carries job_id
        ...

Metrics (``/metrics``) live in ``app.observability.metrics``; it imports prometheus_client
and the database layer, so it is not imported here.
"""

from __future__ import annotations

from app.observability.context import (
    accept_request_id,
    bind_job_id,
    bind_request_id,
    current_job_id,
    current_request_id,
)
from app.observability.logs import ContextFilter, JsonFormatter, TextFormatter, configure_logging

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "accept_request_id",
    "bind_job_id",
    "bind_request_id",
    "configure_logging",
    "current_job_id",
    "current_request_id",
]
