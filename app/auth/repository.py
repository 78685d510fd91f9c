"""Tenant and API-key rows (keys are found by their hash, never stored in the clear)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiKey, Tenant


def tenant_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def active_key(session: Session, key_hash: str) -> ApiKey | None:
    """The key with this hash that has not been revoked."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))


def active_keys_with_prefix(session: Session, prefix: str) -> list[ApiKey]:
    """The keys not yet revoked whose shown prefix is ``prefix``."""
    return list(session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))))
