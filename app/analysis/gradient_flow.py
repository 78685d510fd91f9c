"""Gradient-flow prediction from the architecture (placeholder until implemented).

``predict(result)`` receives the full :class:`app.analysis.graph.AnalysisResult`
(per-layer results in topological order, edges, input shapes) and returns the
``report.gradient_flow.predicted`` dict.
"""

from __future__ import annotations

from typing import Any

from app.analysis.graph import AnalysisResult


def predict(result: AnalysisResult) -> dict[str, Any]:
    """Not computed yet: says so instead of inventing a verdict."""
    return {"verdict": None, "status": "not_computed"}
