"""API keys: random, shown once, stored as a sha256 hash.

Example::

    key = create_key(session, tenant_name="acme")   # "cl_3q2..."; keep it, it is not stored
    tenant_id = tenant_for_key(session, key)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from app.auth import repository
from app.models import ApiKey, Tenant
from app.models.base import utcnow as utcnow_tz

KEY_PREFIX = "cl_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = repository.tenant_by_name(session, name)
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant_name: str, key_name: str | None = None) -> str:
    """Create a key for ``tenant_name`` (creating the tenant if needed); returns the key once."""
    tenant = get_or_create_tenant(session, tenant_name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, prefix=key[:10], key_hash=hash_key(key), name=key_name))
    session.flush()
    return key


def tenant_for_key(session: Session, key: str) -> str | None:
    """The tenant id a key belongs to, or None for unknown and revoked keys."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    row = repository.active_key(session, digest)
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row.tenant_id


def revoke_key(session: Session, prefix: str) -> int:
    rows = repository.active_keys_with_prefix(session, prefix)
    for row in rows:
        row.revoked_at = utcnow_tz()
    session.flush()
    return len(rows)
