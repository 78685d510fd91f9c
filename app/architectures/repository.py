"""Architecture rows, always scoped to one tenant."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import Architecture, Job


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


def jobs_of(session: Session, architecture_id: str) -> list[tuple[str, str, dict | None]]:
    """(id, kind, parameters) of the jobs of an architecture (deleted with it)."""
    rows = session.execute(select(Job.id, Job.kind, Job.parameters).where(Job.architecture_id == architecture_id))
    return [(job_id, kind, parameters) for job_id, kind, parameters in rows]


def insert_if_new(session: Session, values: dict[str, Any]) -> bool:
    """Insert the row (``values``: every column) unless the tenant already has this content
    (one statement, no savepoint). Returns whether it was inserted."""
    connection = session.connection()  # a Core statement: no ORM execution layer
    statement = _INSERT_IF_NEW[connection.dialect.name == "postgresql"]
    return connection.execute(statement, values).first() is not None


#: The statement, built once per dialect (values are bound at execution).
_INSERT_IF_NEW = {
    is_postgresql: insert(cast(Table, Architecture.__table__))
    .on_conflict_do_nothing(index_elements=[Architecture.tenant_id, Architecture.sha256])
    .returning(Architecture.__table__.c.id)
    for is_postgresql, insert in ((False, sqlite.insert), (True, postgresql.insert))
}


def delete(session: Session, architecture: Architecture) -> None:
    """Delete the architecture row (its analyses and runs cascade)."""
    session.delete(architecture)
    session.flush()
