"""Bytes stored per tenant: the one definition the quota and ``/metrics`` both read.

A tenant's stored bytes are its architectures (``byte_size``: the uploaded file or the JSON
config, as received) and the datasets of its training runs that have not ended (a run's
dataset is deleted when it ends). Uploaded files shared by content between tenants count
for each tenant that stored them: the quota is about what a tenant asked to keep.

Example::

    check_quota(session, settings, tenant_id="t1", adding=upload_size)  # 413 when over quota
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import StorageQuotaExceeded
from app.models import Architecture, Job


def datasets_dir(settings: Settings) -> Path:
    """Where training datasets are kept, one ``<run id>.npz`` each."""
    return settings.data_dir / "datasets"


def tenant_bytes(session: Session, settings: Settings, tenant_id: str) -> int:
    """What ``tenant_id`` stores now (flushed rows of the session included)."""
    architectures = session.scalar(
        select(func.coalesce(func.sum(Architecture.byte_size), 0)).where(Architecture.tenant_id == tenant_id)
    ) or 0
    runs = session.scalars(select(Job.id).where(
        Job.tenant_id == tenant_id, Job.kind == "training", Job.status.in_(("queued", "running"))))
    return int(architectures) + sum(_size(datasets_dir(settings) / f"{run_id}.npz") for run_id in runs)


def check_quota(session: Session, settings: Settings, *, tenant_id: str, adding: int,
                flushed: bool = False) -> None:
    """Refuse (413 ``storage_quota_exceeded``) when the tenant would store more than its quota
    with ``adding`` more bytes (``flushed``: those are a row the session already holds)."""
    quota = settings.storage_quota_bytes
    if quota <= 0:
        return
    used = tenant_bytes(session, settings, tenant_id) - (adding if flushed else 0)
    if used + adding > quota:
        raise StorageQuotaExceeded(
            f"This tenant stores {used} bytes of its quota of {quota}; {adding} more do not fit. Delete "
            "architectures it no longer needs (DELETE /v1/architectures/{id}) or ask for a larger quota.",
            extra={"used_bytes": used, "quota_bytes": quota, "adding_bytes": adding},
        )


def stored_bytes(session: Session, settings: Settings) -> dict[str, int]:
    """Every tenant's stored bytes together, by kind, and what the data folder's files take."""
    architectures = session.scalar(select(func.coalesce(func.sum(Architecture.byte_size), 0))) or 0
    figures = {"architectures": int(architectures)}
    for kind, folder in (("blob_files", settings.blob_dir), ("dataset_files", datasets_dir(settings)),
                         ("upload_files", settings.data_dir / "uploads")):
        figures[kind] = _folder_bytes(folder)
    return figures


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _folder_bytes(folder: Path) -> int:
    import os

    try:
        with os.scandir(folder) as entries:
            return sum(entry.stat().st_size for entry in entries if entry.is_file(follow_symlinks=False))
    except OSError:
        return 0
