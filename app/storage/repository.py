"""The storage counters' rows: each tenant's folded counter and the deltas not yet folded.

The statements of the request path are built once (values bound at execution) and run on the
session's connection: building a query and the ORM's execution layer cost more than the query.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, String, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app.models import Job, StorageDelta, Tenant

_TENANTS = cast(Table, Tenant.__table__)
_DELTAS = cast(Table, StorageDelta.__table__)
_JOBS = cast(Table, Job.__table__)
#: The tenant's training runs that have not ended (their datasets count).
_OPEN_RUNS = select(_JOBS.c.id).where(  # (no IN: an expanding parameter is rendered at each execution)
    _JOBS.c.tenant_id == bindparam("tenant_id"), _JOBS.c.kind == "training",
    or_(_JOBS.c.status == "queued", _JOBS.c.status == "running"))
#: The tenant's counter plus its deltas not yet folded.
_STORED_BYTES = (
    func.coalesce(select(_TENANTS.c.stored_bytes).where(_TENANTS.c.id == bindparam("tenant_id"))
                  .scalar_subquery(), 0)
    + select(func.coalesce(func.sum(_DELTAS.c.delta), 0))
    .where(_DELTAS.c.tenant_id == bindparam("tenant_id")).scalar_subquery()
)
#: How many of the tenant's training runs have not ended.
_OPEN_RUN_COUNT = select(func.count()).select_from(_OPEN_RUNS.subquery()).scalar_subquery()
#: Both, in one statement.
_ARCHITECTURE_BYTES = select(_STORED_BYTES, _OPEN_RUN_COUNT)
#: A pending change, inserted only when the tenant's bytes with it stay within the quota and no
#: training run's dataset counts (the common case: one statement instead of a read and an insert).
_INSERT_DELTA_WITHIN_QUOTA = insert(_DELTAS).from_select(
    ["tenant_id", "delta"],
    select(bindparam("tenant_id", type_=String), bindparam("delta", type_=BigInteger))
    .where(_STORED_BYTES + bindparam("delta", type_=BigInteger) <= bindparam("quota", type_=BigInteger),
           _OPEN_RUN_COUNT == 0),
).returning(_DELTAS.c.id)
_INSERT_DELTA = insert(_DELTAS)


def architecture_bytes_and_open_runs(session: Session, tenant_id: str) -> tuple[int, int]:
    """The tenant's architecture bytes (counter plus pending deltas) and how many of its
    training runs have not ended, in one statement."""
    architectures, open_runs = session.connection().execute(_ARCHITECTURE_BYTES, {"tenant_id": tenant_id}).one()
    return int(architectures or 0), int(open_runs or 0)


def open_run_ids(session: Session, tenant_id: str) -> list[str]:
    """The ids of the tenant's training runs that have not ended."""
    return list(session.connection().execute(_OPEN_RUNS, {"tenant_id": tenant_id}).scalars())


def insert_delta(session: Session, tenant_id: str, delta: int) -> None:
    """One pending change of the tenant's architecture bytes (an insert: no row to wait on)."""
    session.connection().execute(_INSERT_DELTA, {"tenant_id": tenant_id, "delta": delta})


def insert_delta_within_quota(session: Session, tenant_id: str, delta: int, quota: int) -> bool:
    """Insert a pending change of the tenant's architecture bytes if they stay within ``quota``
    with it and none of the tenant's training runs is open; whether it was inserted."""
    parameters = {"tenant_id": tenant_id, "delta": delta, "quota": quota}
    return session.connection().execute(_INSERT_DELTA_WITHIN_QUOTA, parameters).first() is not None


def fold_deltas(session: Session) -> int:
    """Add the pending deltas to their tenants' counters and delete them (the reconciler does
    it on every pass). Only rows seen here are deleted, so a delta committed meanwhile waits for
    the next fold. Returns how many were folded."""
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


def all_architecture_bytes(session: Session) -> int:
    """Every tenant's architecture bytes together: the folded counters and the pending deltas."""
    folded = session.scalar(select(func.coalesce(func.sum(Tenant.stored_bytes), 0))) or 0
    pending = session.scalar(select(func.coalesce(func.sum(StorageDelta.delta), 0))) or 0
    return int(folded) + int(pending)
