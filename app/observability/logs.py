"""Logging: one JSON object per line (``settings.log_json``, the default) or plain text.

Every record carries the current request id and job id (see ``app.observability.context``);
``extra={...}`` fields become top-level JSON keys. structlog loggers, if a module uses them,
are routed through the same handler so that all lines look alike.

Example output::

    {"ts": "2026-11-24T10:00:00.123Z", "level": "info", "logger": "convlens.access",
     "message": "POST /v1/analyses 201", "request_id": "9f0c...", "status": 201, ...}
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from app.config import Settings
from app.observability.context import current_job_id, current_request_id

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, __file__, 0, "", None, None)).keys()
) | {"message", "asctime", "request_id", "job_id", "taskName"}


class ContextFilter(logging.Filter):
    """Copy the request and job ids of the logging call's context onto the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        if getattr(record, "job_id", None) is None:
            record.job_id = current_job_id()
        return True


#: What ``json.dumps(entry, default=str, ensure_ascii=False)`` would build for every record.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, request_id, job_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        job_id = getattr(record, "job_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        if job_id is not None:
            entry["job_id"] = job_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, ids in brackets when set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{key}={value}"
            for key in ("request_id", "job_id")
            if (value := getattr(record, key, None)) is not None
        ]
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones; safe to call again).

    Example::

        configure_logging(Settings(log_json=True))
        logging.getLogger("convlens").info("ready", extra={"port": 8000})
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # The access log is written by the observability middleware (with request ids);
    # uvicorn's own access lines would duplicate it without them.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    _configure_structlog()
    root._convlens_configured = True  # type: ignore[attr-defined]
    return handler


def _configure_structlog() -> None:
    """Send structlog events through the stdlib handler above (same format, same ids)."""
    try:
        import structlog
    except ImportError:  # structlog is a dependency, but logging must not depend on it
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
