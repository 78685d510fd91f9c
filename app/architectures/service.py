"""Storing architectures once per tenant and content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.architectures import repository
from app.config import Settings
from app.errors import NotFound
from app.models import Architecture


def get_or_create(
    session: Session,
    settings: Settings,
    *,
    tenant_id: str,
    sha256: str,
    fmt: str,
    name: str | None,
    byte_size: int,
    config: dict[str, Any],
    has_weights: bool,
    upload_path: Path | None = None,
) -> Architecture:
    """The tenant's architecture with this content hash, created if new.

    An uploaded file is moved to ``<data_dir>/blobs/<sha256>.<format>`` (the workers load
    weights from it); the same content uploaded twice is stored once.
    """
    existing = repository.get_by_sha(session, tenant_id, sha256)
    if existing is not None:
        if upload_path is not None:
            upload_path.unlink(missing_ok=True)
        return existing
    blob_path: str | None = None
    if upload_path is not None:
        settings.blob_dir.mkdir(parents=True, exist_ok=True)
        target = settings.blob_dir / f"{sha256}.{fmt}"
        if target.exists():
            upload_path.unlink(missing_ok=True)
        else:
            upload_path.replace(target)
        blob_path = str(target)
    architecture = Architecture(
        tenant_id=tenant_id, sha256=sha256, format=fmt, name=name, byte_size=byte_size,
        config=config, has_weights=has_weights, blob_path=blob_path,
    )
    try:
        with session.begin_nested():
            session.add(architecture)
            session.flush()
    except IntegrityError:  # the same content arrived concurrently
        existing = repository.get_by_sha(session, tenant_id, sha256)
        if existing is None:
            raise
        return existing
    return architecture


def get(session: Session, tenant_id: str, architecture_id: str) -> Architecture:
    architecture = repository.get(session, tenant_id, architecture_id)
    if architecture is None:
        raise NotFound(f"No architecture with id '{architecture_id}'.")
    return architecture


def delete(session: Session, tenant_id: str, architecture_id: str) -> None:
    architecture = get(session, tenant_id, architecture_id)
    blob = architecture.blob_path
    session.delete(architecture)
    session.flush()
    if blob:
        # The blob is content-addressed and may be shared by another tenant's row.
        from sqlalchemy import select

        still_used = session.scalar(select(Architecture.id).where(Architecture.blob_path == blob).limit(1))
        if still_used is None:
            Path(blob).unlink(missing_ok=True)
