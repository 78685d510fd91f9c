"""The static gates in the order the service applies them, for tests that replay the corpus.

Example::

    stage, error = first_refusal(case.data, case.filename, settings)
    assert (stage, error.code) == ("validate", "unsafe_architecture")
"""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.errors import DomainError


def first_refusal(data: bytes | Path, filename: str, settings: Settings,
                  *, with_engine: bool = True) -> tuple[str, DomainError] | None:
    """Run ingest -> validator -> static limits -> engine + report limits; the first refusal."""
    from app.ingest import ingest_bytes
    from app.security import check_report_limits, check_static_limits, validate_architecture

    try:
        ingested = ingest_bytes(data, filename=filename, settings=settings)
    except DomainError as exc:
        return "ingest", exc
    try:
        validate_architecture(ingested.config, settings)
    except DomainError as exc:
        return "validate", exc
    try:
        check_static_limits(ingested.config, settings)
    except DomainError as exc:
        return "limits", exc
    if with_engine:
        from app.analysis import analyze

        try:
            check_report_limits(analyze(ingested.config), settings)
        except DomainError as exc:
            return "report", exc
    return None
