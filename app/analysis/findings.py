"""Findings that interpret the architecture in words (placeholder until implemented).

``find(result)`` receives the full :class:`app.analysis.graph.AnalysisResult`
and returns ``report.findings``: dicts with code, severity, layers, message, details.
"""

from __future__ import annotations

from typing import Any

from app.analysis.graph import AnalysisResult


def find(result: AnalysisResult) -> list[dict[str, Any]]:
    """No findings yet."""
    return []
