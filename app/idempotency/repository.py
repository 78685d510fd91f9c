"""Idempotency key rows, always scoped to one tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import IdempotencyKey


def get(session: Session, tenant_id: str, key: str) -> IdempotencyKey | None:
    return session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key)
    )


def delete_expired(session: Session, now: datetime, *, tenant_id: str | None = None,
                   key: str | None = None) -> int:
    """Delete expired keys (of one tenant and key when given); the number deleted."""
    statement = delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)
    if tenant_id is not None:
        statement = statement.where(IdempotencyKey.tenant_id == tenant_id)
    if key is not None:
        statement = statement.where(IdempotencyKey.key == key)
    return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]
