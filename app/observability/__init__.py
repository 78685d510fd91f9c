"""Logging and metrics."""

from __future__ import annotations

import logging
import sys

from app.config import Settings


def configure_logging(settings: Settings) -> None:
    """Plain stdlib logging to stderr; structured JSON logs are configured here too."""
    root = logging.getLogger()
    if getattr(root, "_convlens_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root._convlens_configured = True  # type: ignore[attr-defined]
