"""Storing architectures once per tenant and content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.api.responses import dumps
from app.architectures import repository
from app.config import Settings
from app.db import delete_after_commit, discard_on_rollback, loaded_instance
from app.errors import Conflict, NotFound
from app.models import Architecture
from app.models.base import new_id, utcnow
from app.storage.files import disk, storage_errors
from app.storage.usage import add_architecture_bytes, architecture_bytes_changed


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
    blob_path = str(settings.blob_dir / f"{sha256}.{fmt}") if upload_path is not None else None
    if upload_path is not None:  # a request that fails from here on leaves no upload behind
        discard_on_rollback(session, upload_path)
    values = {
        "id": new_id(), "tenant_id": tenant_id, "sha256": sha256, "format": fmt, "name": name,
        "byte_size": byte_size, "config": config, "has_weights": has_weights, "blob_path": blob_path,
        "created_at": utcnow(),
    }
    # The row's instance before its INSERT (the transaction's first write: on SQLite the write
    # lock is held from there to the commit); dropped again if the tenant has this content.
    row = loaded_instance(session, Architecture, values)
    # One statement in the common case (new content): INSERT ... ON CONFLICT DO NOTHING.
    if not repository.insert_if_new(session, values):
        session.expunge(row)
        if upload_path is not None:
            upload_path.unlink(missing_ok=True)
        existing = repository.get_by_sha(session, tenant_id, sha256)
        if existing is None:  # deleted between the two statements
            raise Conflict("The architecture changed while it was being stored; send the request again.")
        return existing
    add_architecture_bytes(session, settings, tenant_id=tenant_id, adding=byte_size)  # new content: it counts
    if upload_path is not None and blob_path is not None:
        target = Path(blob_path)
        if target.exists():  # the same file, stored for another tenant
            upload_path.unlink(missing_ok=True)
        else:
            with storage_errors("the uploaded file", settings.blob_dir):
                disk.place(upload_path, target)
            discard_on_rollback(session, target)
    return row


def get(session: Session, tenant_id: str, architecture_id: str) -> Architecture:
    architecture = repository.get(session, tenant_id, architecture_id)
    if architecture is None:
        raise NotFound(f"No architecture with id '{architecture_id}'.")
    return architecture


def delete(session: Session, settings: Settings, tenant_id: str, architecture_id: str) -> None:
    """Delete the architecture with its analyses and runs (rows cascade), and, once that is
    committed, the files they owned: the runs' datasets and work folders, and the uploaded file
    unless another row still points at it."""
    from app.jobs.lifecycle import owned_paths

    architecture = get(session, tenant_id, architecture_id)
    blob = architecture.blob_path
    owned = [path for job_id, kind, parameters in repository.jobs_of(session, architecture_id)
             for path in owned_paths(settings, job_id, kind, parameters or {})]
    repository.delete(session, architecture)
    architecture_bytes_changed(session, tenant_id, -architecture.byte_size)
    if blob and not repository.blob_in_use(session, blob):
        # The blob is content-addressed and may be shared by another tenant's row.
        owned.append(Path(blob))
    delete_after_commit(session, owned)


def document(row: Architecture, *, with_config: bool = False) -> dict[str, Any]:
    """``ArchitectureOut`` as a dict, in the model's field order."""
    return {
        "id": row.id, "name": row.name, "format": row.format, "sha256": row.sha256,
        "byte_size": row.byte_size, "has_weights": row.has_weights, "created_at": row.created_at,
        "config": row.config if with_config else None,
    }


def read(session: Session, tenant_id: str, architecture_id: str) -> bytes:
    """``GET /v1/architectures/{id}``: the architecture with its config, as the response body."""
    return dumps(document(get(session, tenant_id, architecture_id), with_config=True))


def page(session: Session, tenant_id: str, limit: int, offset: int) -> bytes:
    """``GET /v1/architectures``: one page of the tenant's architectures, as the response body."""
    rows, total = repository.page(session, tenant_id, limit, offset)
    return dumps({"items": [document(row) for row in rows], "total": total, "limit": limit, "offset": offset})
