"""Architecture rows, always scoped to one tenant."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Architecture


def get(session: Session, tenant_id: str, architecture_id: str) -> Architecture | None:
    return session.scalar(
        select(Architecture).where(Architecture.id == architecture_id, Architecture.tenant_id == tenant_id)
    )


def get_by_sha(session: Session, tenant_id: str, sha256: str) -> Architecture | None:
    return session.scalar(
        select(Architecture).where(Architecture.tenant_id == tenant_id, Architecture.sha256 == sha256)
    )


def page(session: Session, tenant_id: str, limit: int, offset: int) -> tuple[list[Architecture], int]:
    query = select(Architecture).where(Architecture.tenant_id == tenant_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Architecture.created_at.desc(), Architecture.id).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def blob_in_use(session: Session, blob_path: str) -> bool:
    """Whether any row (of any tenant: blobs are content-addressed) still points at the file."""
    return session.scalar(select(Architecture.id).where(Architecture.blob_path == blob_path).limit(1)) is not None
