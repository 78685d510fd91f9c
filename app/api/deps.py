"""FastAPI dependencies: settings, the request's database session, the caller's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.errors import Unauthorized
from app.models import DEFAULT_TENANT


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request: services flush, the request commits (or rolls back on error)."""
    with session_scope(request.app.state.settings) as session:
        yield session


def get_tenant(request: Request, session: Annotated[Session, Depends(get_session)]) -> str:
    """The tenant id of the caller: ``default`` without auth, else from the Bearer API key."""
    settings: Settings = request.app.state.settings
    cached = getattr(request.state, "tenant_id", None)
    if cached:
        return str(cached)
    if settings.auth_mode == "none":
        tenant_id = DEFAULT_TENANT
    else:
        from app.auth.service import tenant_for_key

        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
        found = tenant_for_key(session, token.strip())
        if found is None:
            raise Unauthorized("The API key is unknown or revoked.")
        tenant_id = found
    request.state.tenant_id = tenant_id
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(tenant_id)
    return tenant_id


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
TenantDep = Annotated[str, Depends(get_tenant)]
