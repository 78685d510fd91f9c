"""Bytes stored per tenant: the one definition the quota and ``/metrics`` both read.

A tenant's stored bytes are its architectures (``byte_size``: the uploaded file or the JSON
config, as received; kept as the tenant's counter plus the deltas not yet folded into it,
written in the transaction that adds or deletes one, so the quota reads one row and a few
deltas however many architectures a tenant has) and the datasets
of its training runs that have not ended (a run's dataset is deleted when it ends). Uploaded
files shared by content between tenants count for each tenant that stored them: the quota is
about what a tenant asked to keep.

Example::

    check_quota(session, settings, tenant_id="t1", adding=upload_size)  # 413 when over quota
    add_architecture_bytes(session, settings, tenant_id="t1", adding=len(config_json))  # checked, counted
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import StorageQuotaExceeded
from app.storage import repository


def datasets_dir(settings: Settings) -> Path:
    """Where training datasets are kept, one ``<run id>.npz`` each."""
    return settings.data_dir / "datasets"


def tenant_bytes(session: Session, settings: Settings, tenant_id: str) -> int:
    """What ``tenant_id`` stores now: its architectures' counter (one row, whatever their
    number) and the datasets of its runs that have not ended."""
    architectures, open_runs = repository.architecture_bytes_and_open_runs(session, tenant_id)
    if not open_runs:  # the common case: one statement
        return architectures
    runs = repository.open_run_ids(session, tenant_id)
    return architectures + sum(_size(datasets_dir(settings) / f"{run_id}.npz") for run_id in runs)


def architecture_bytes_changed(session: Session, tenant_id: str, delta: int) -> None:
    """Keep the tenant's count with its architectures: call it when one is added (``+size``)
    or deleted (``-size``), in the same transaction (an insert: no row two requests wait on)."""
    repository.insert_delta(session, tenant_id, delta)


def add_architecture_bytes(session: Session, settings: Settings, *, tenant_id: str, adding: int) -> None:
    """A new architecture's bytes: refused (413 ``storage_quota_exceeded``, see
    :func:`check_quota`) when they do not fit the tenant's quota, else counted. One statement
    when they fit and no training run's dataset counts; otherwise the full check, then the count."""
    quota = settings.storage_quota_bytes
    if quota > 0:
        if repository.insert_delta_within_quota(session, tenant_id, adding, quota):
            return
        check_quota(session, settings, tenant_id=tenant_id, adding=adding)
    architecture_bytes_changed(session, tenant_id, adding)


def check_quota(session: Session, settings: Settings, *, tenant_id: str, adding: int) -> None:
    """Refuse (413 ``storage_quota_exceeded``) when the tenant would store more than its quota
    with ``adding`` more bytes."""
    quota = settings.storage_quota_bytes
    if quota <= 0:
        return
    used = tenant_bytes(session, settings, tenant_id)
    if used + adding > quota:
        raise StorageQuotaExceeded(
            f"This tenant stores {used} bytes of its quota of {quota}; {adding} more do not fit. Delete "
            "architectures it no longer needs (DELETE /v1/architectures/{id}) or ask for a larger quota.",
            extra={"used_bytes": used, "quota_bytes": quota, "adding_bytes": adding},
        )


def stored_bytes(session: Session, settings: Settings) -> dict[str, int]:
    """Every tenant's stored bytes together, by kind, and what the data folder's files take."""
    figures = {"architectures": repository.all_architecture_bytes(session)}
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
