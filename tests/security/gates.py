"""The static gates in the order the service applies them, for tests that replay the corpus.

Example::

    stage, error = first_refusal(case.data, case.filename, settings)
    assert (stage, error.code) == ("validate", "unsafe_architecture")
"""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.errors import DomainError, ResourceLimitExceeded


def first_refusal(data: bytes | Path, filename: str, settings: Settings,
                  *, with_engine: bool = True) -> tuple[str, DomainError] | None:
    """Run ingestion (reading and inspection), the gate, then the engine and the report limits.

    The gate's refusals are reported by kind: ``validate`` for an object or name it will not
    let through, ``limits`` for a static limit.
    """
    from app.ingest import read_architecture
    from app.security import check_report_limits, gate_architecture

    try:
        read = read_architecture(data, filename=filename, settings=settings)
    except DomainError as exc:
        return "ingest", exc
    try:
        sanitised = gate_architecture(read.config, settings)
    except ResourceLimitExceeded as exc:
        return "limits", exc
    except DomainError as exc:
        return "validate", exc
    if with_engine:
        from app.analysis import analyze

        try:
            check_report_limits(analyze(sanitised), settings)
        except DomainError as exc:
            return "report", exc
    return None
