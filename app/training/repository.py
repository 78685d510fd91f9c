"""Training-run rows (jobs of kind ``training``), always scoped to one tenant."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Job


def get(session: Session, tenant_id: str, run_id: str) -> Job | None:
    return session.scalar(
        select(Job).where(Job.id == run_id, Job.tenant_id == tenant_id, Job.kind == "training")
    )


def active_count(session: Session, tenant_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.tenant_id == tenant_id,
                Job.kind == "training",
                Job.status.in_(("queued", "running")),
            )
        )
        or 0
    )


def status_of(session: Session, run_id: str) -> str:
    """The run's status (``cancelled`` once its row is gone: the stream then ends)."""
    return session.scalar(select(Job.status).where(Job.id == run_id)) or "cancelled"


def named(session: Session, tenant_id: str, name: str) -> Job | None:
    """The tenant's newest training run with this name."""
    return session.scalar(
        select(Job).where(Job.tenant_id == tenant_id, Job.kind == "training", Job.name == name)
        .order_by(Job.created_at.desc()).limit(1)
    )


def of_architecture(session: Session, tenant_id: str, architecture_id: str, limit: int = 200) -> list[Job]:
    """The tenant's training runs of an architecture, newest first."""
    return list(session.scalars(
        select(Job)
        .where(Job.tenant_id == tenant_id, Job.kind == "training", Job.architecture_id == architecture_id)
        .order_by(Job.created_at.desc())
        .limit(limit)
    ))
