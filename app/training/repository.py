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
