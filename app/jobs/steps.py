"""The pipeline steps the jobs use: the gate and the analysis, each reached through one call.

A job never imports an HTTP domain; it uses the pipeline's own steps, the same ones a request
uses (:mod:`app.pipeline`): ``gate`` (the one-walk safety gate, returning the sanitised
config to build) and ``analyse`` (the engine plus the report-level limits).

Example::

    >>> from app.config import Settings
    >>> config = {"class_name": "Sequential", "config": {"name": "s", "layers": []}}
    >>> analyse(gate(config, Settings()), None, "s", Settings())["summary"]["layer_count"]
    0
"""

from __future__ import annotations

from app.pipeline import analyse, gate

__all__ = ["analyse", "gate"]
