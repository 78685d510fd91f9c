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
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import StorageQuotaExceeded
from app.models import Job, StorageDelta, Tenant


def datasets_dir(settings: Settings) -> Path:
    """Where training datasets are kept, one ``<run id>.npz`` each."""
    return settings.data_dir / "datasets"


def tenant_bytes(session: Session, settings: Settings, tenant_id: str) -> int:
    """What ``tenant_id`` stores now: its architectures' counter (one row, whatever their
    number) and the datasets of its runs that have not ended."""
    connection = session.connection()
    architectures, open_runs = connection.execute(_ARCHITECTURE_BYTES, {"tenant_id": tenant_id}).one()
    if not open_runs:  # the common case: one statement
        return int(architectures or 0)
    runs = connection.execute(_OPEN_RUNS, {"tenant_id": tenant_id}).scalars()
    return int(architectures or 0) + sum(_size(datasets_dir(settings) / f"{run_id}.npz") for run_id in runs)


def architecture_bytes_changed(session: Session, tenant_id: str, delta: int) -> None:
    """Keep the tenant's count with its architectures: call it when one is added (``+size``)
    or deleted (``-size``), in the same transaction (an insert: no row two requests wait on)."""
    session.connection().execute(_INSERT_DELTA, {"tenant_id": tenant_id, "delta": delta})


# The statements of the request path, built once (values bound at execution) and run on the
# session's connection: building a query and the ORM's execution layer cost more than the query.
_TENANTS = cast(Table, Tenant.__table__)
_DELTAS = cast(Table, StorageDelta.__table__)
_JOBS = cast(Table, Job.__table__)
#: The tenant's training runs that have not ended (their datasets count).
_OPEN_RUNS = select(_JOBS.c.id).where(  # (no IN: an expanding parameter is rendered at each execution)
    _JOBS.c.tenant_id == bindparam("tenant_id"), _JOBS.c.kind == "training",
    or_(_JOBS.c.status == "queued", _JOBS.c.status == "running"))
#: The tenant's counter plus its deltas not yet folded, and how many runs have not ended, in
#: one statement.
_ARCHITECTURE_BYTES = select(
    func.coalesce(select(_TENANTS.c.stored_bytes).where(_TENANTS.c.id == bindparam("tenant_id"))
                  .scalar_subquery(), 0)
    + select(func.coalesce(func.sum(_DELTAS.c.delta), 0))
    .where(_DELTAS.c.tenant_id == bindparam("tenant_id")).scalar_subquery(),
    select(func.count()).select_from(_OPEN_RUNS.subquery()).scalar_subquery(),
)
_INSERT_DELTA = insert(_DELTAS)


def fold_deltas(session: Session) -> int:
    """Add the pending deltas to their tenants' counters and delete them (the reconciler's
    chores). Only rows seen here are deleted, so a delta committed meanwhile waits for the next
    fold. Returns how many were folded."""
    ids = list(session.scalars(select(StorageDelta.id).order_by(StorageDelta.id).limit(10_000)))
    if not ids:
        return 0
    # What this transaction deleted is what it adds: a fold running at the same time elsewhere
    # deletes (and adds) each delta at most once between them.
    deleted = session.execute(delete(StorageDelta).where(StorageDelta.id.in_(ids))
                              .returning(StorageDelta.tenant_id, StorageDelta.delta)).all()
    totals: dict[str, int] = {}
    for tenant_id, delta in deleted:
        totals[tenant_id] = totals.get(tenant_id, 0) + int(delta)
    for tenant_id, delta in totals.items():
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(stored_bytes=Tenant.stored_bytes + delta))
    return len(deleted)


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
    folded = session.scalar(select(func.coalesce(func.sum(Tenant.stored_bytes), 0))) or 0
    pending = session.scalar(select(func.coalesce(func.sum(StorageDelta.delta), 0))) or 0
    figures = {"architectures": int(folded) + int(pending)}
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
