"""Analysis rows (jobs of kind ``analysis``), always scoped to one tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Job
from app.models.base import utcnow


def get(session: Session, tenant_id: str, analysis_id: str) -> Job | None:
    return session.scalar(
        select(Job).where(Job.id == analysis_id, Job.tenant_id == tenant_id, Job.kind == "analysis")
    )


def latest_child(session: Session, parent_id: str, kind: str) -> Job | None:
    return session.scalar(
        select(Job).where(Job.parent_id == parent_id, Job.kind == kind).order_by(Job.created_at.desc()).limit(1)
    )


def page(
    session: Session,
    tenant_id: str,
    *,
    limit: int,
    offset: int,
    status: str | None = None,
    name: str | None = None,
    architecture_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> tuple[list[Job], int]:
    query = select(Job).where(Job.tenant_id == tenant_id, Job.kind == "analysis")
    if status:
        query = query.where(Job.status == status)
    if name:
        query = query.where(Job.name.contains(name, autoescape=True))
    if architecture_id:
        query = query.where(Job.architecture_id == architecture_id)
    if created_after:
        query = query.where(Job.created_at >= created_after)
    if created_before:
        query = query.where(Job.created_at < created_before)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).all()
    return list(rows), total


def write_late_result(session: Session, analysis_id: str, *, report: dict[str, Any] | None,
                      error: dict[str, Any] | None) -> bool:
    """Store a result computed after the request answered 202, unless a worker took the row.

    Fenced on ``status == "queued"``: the first writer wins. Returns whether this one did.
    """
    now = utcnow()
    values: dict[str, Any] = {"finished_at": now, "updated_at": now, "started_at": now}
    if report is not None:
        values.update(status="succeeded", result=report, progress=1.0, result_writes=Job.result_writes + 1)
    else:
        values.update(status="failed", error=error)
    result = session.execute(
        update(Job).where(Job.id == analysis_id, Job.status == "queued").values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


def with_ids(session: Session, tenant_id: str, analysis_ids: list[str]) -> list[Job]:
    """The tenant's analyses among ``analysis_ids`` (those that exist)."""
    return list(session.scalars(
        select(Job).where(Job.id.in_(analysis_ids), Job.tenant_id == tenant_id, Job.kind == "analysis")
    ))


def active_count(session: Session, tenant_id: str, kind: str) -> int:
    """The tenant's jobs of ``kind`` that are queued or running."""
    return int(session.scalar(
        select(func.count()).select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.kind == kind, Job.status.in_(("queued", "running")))
    ) or 0)


def delete(session: Session, analysis: Job) -> None:
    """Delete the analysis row (its events and measurement jobs cascade)."""
    session.delete(analysis)
    session.flush()
