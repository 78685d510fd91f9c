"""The pipeline steps the jobs use: the gate and the analysis, each reached through one call.

A job never imports an HTTP domain. When the service's pipeline module provides these steps,
each body below becomes one import line (``gate_architecture`` from the security gate,
``analyse`` from the pipeline).

Example::

    >>> from app.config import Settings
    >>> config = {"class_name": "Sequential", "config": {"name": "s", "layers": []}}
    >>> analyse(gate(config, Settings()), None, "s", Settings())["summary"]["layer_count"]
    0
"""

from __future__ import annotations

from typing import Any

from app.config import Settings


def gate(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The worker's own gate before Keras sees a config: the allowlist and the static limits.

    Returns the config to build: the sanitised config where the security package provides
    the one-walk gate (``gate_architecture``), else the config that passed its checks.
    """
    from app import security

    one_walk = getattr(security, "gate_architecture", None)
    if one_walk is not None:
        sanitised: dict[str, Any] = one_walk(config, settings)
        return sanitised
    security.validate_architecture(config, settings)
    security.check_static_limits(config, settings)
    return config


def analyse(
    config: dict[str, Any], input_shape: Any, name: str | None, settings: Settings
) -> dict[str, Any]:
    """The static report (the engine plus the report-level limits), as the API computes it."""
    from app.analysis import analyze
    from app.security import check_report_limits

    report = analyze(config, input_shape=input_shape, name=name)
    check_report_limits(report, settings)
    return report
