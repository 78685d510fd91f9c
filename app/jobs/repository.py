"""Job rows: atomic claims, fenced writes, heartbeats, events and the reconciler's queries.

Every write a worker makes after its claim is fenced on ``(worker_id, attempts)``: a
worker that lost its job (its heartbeat went stale and another worker claimed it) can
no longer touch the row, so a result is written exactly once.

Example::

    attempt = claim(session, job_id, "host:123:ab12", stale_before=utcnow() - timedelta(seconds=30))
    if attempt is not None:
        ...
        finish(session, job_id, "host:123:ab12", attempt, status="succeeded", result={...})
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.models import Job, JobEvent
from app.models.base import utcnow


@dataclass(frozen=True)
class Claim:
    """What a worker holds after a successful claim."""

    job_id: str
    worker_id: str
    attempt: int
    kind: str


def claim(session: Session, job_id: str, worker_id: str, *, stale_before: datetime) -> Claim | None:
    """Take the job if it is queued, or running with a stale heartbeat, and attempts remain.

    One UPDATE decides: two workers racing for the same id cannot both win.
    """
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.attempts < Job.max_attempts,
            Job.cancel_requested.is_(False),
            or_(
                Job.status == "queued",
                and_(
                    Job.status == "running",
                    or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
                ),
            ),
        )
        .values(
            status="running",
            attempts=Job.attempts + 1,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = session.execute(select(Job.attempts, Job.kind).where(Job.id == job_id)).one()
    return Claim(job_id, worker_id, int(row.attempts), str(row.kind))


def _fence(job_id: str, worker_id: str, attempt: int) -> Any:
    return and_(
        Job.id == job_id,
        Job.worker_id == worker_id,
        Job.attempts == attempt,
        Job.status == "running",
    )


def heartbeat(
    session: Session,
    held: Claim,
    *,
    progress: float | None = None,
    progress_detail: dict[str, Any] | None = None,
) -> tuple[bool, bool]:
    """Write the heartbeat (and progress). Returns (still ours, cancel requested)."""
    now = utcnow()
    values: dict[str, Any] = {"heartbeat_at": now, "updated_at": now}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    if progress_detail is not None:
        values["progress_detail"] = progress_detail
    result = session.execute(
        update(Job)
        .where(_fence(held.job_id, held.worker_id, held.attempt))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    ours = result.rowcount == 1  # type: ignore[attr-defined]
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == held.job_id)))
    return ours, cancel


def finish(
    session: Session,
    held: Claim,
    *,
    status: str,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """The final write, fenced: True when this worker still held the job and wrote it."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "updated_at": now,
        "heartbeat_at": now,
        "error": error,
    }
    if status == "succeeded":
        values["progress"] = 1.0
    if result is not None:
        values["result"] = result
        values["result_writes"] = Job.result_writes + 1
    written = session.execute(
        update(Job)
        .where(_fence(held.job_id, held.worker_id, held.attempt))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return written.rowcount == 1  # type: ignore[attr-defined]


def release_after_crash(session: Session, held: Claim, reason: str) -> str | None:
    """The worker's process for this attempt died: queue the job again, or fail it at the cap.

    Returns the new status, or None when the row was no longer ours.
    """
    row = session.scalar(select(Job).where(_fence(held.job_id, held.worker_id, held.attempt)))
    if row is None:
        return None
    return _retry_or_fail(session, row, reason)


def _retry_or_fail(session: Session, row: Job, reason: str) -> str:
    now = utcnow()
    history = list((row.error or {}).get("attempts", [])) if isinstance(row.error, dict) else []
    history.append(
        {
            "attempt": row.attempts,
            "worker_id": row.worker_id,
            "reason": reason,
            "at": now.isoformat(),
        }
    )
    if row.cancel_requested:
        status, error = (
            "cancelled",
            {
                "code": "cancelled",
                "detail": "Cancelled while its worker was lost.",
                "attempts": history,
            },
        )
    elif row.attempts >= row.max_attempts:
        status = "failed"
        error = {
            "code": "worker_lost",
            "detail": f"The job stopped its worker {row.attempts} time(s) (last: {reason}); "
            f"it is not retried after {row.max_attempts} attempts.",
            "attempts": history,
        }
    else:
        status, error = "queued", {"code": "retrying", "detail": reason, "attempts": history}
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "updated_at": now,
        "worker_id": None,
    }
    if status != "queued":
        values["finished_at"] = now
    session.execute(
        update(Job)
        .where(_fence(row.id, row.worker_id or "", row.attempts))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return status


def stale_running(session: Session, *, stale_before: datetime, limit: int = 100) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .where(
                Job.status == "running",
                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
            )
            .limit(limit)
        )
    )


def recover_stale(session: Session, *, stale_before: datetime) -> list[tuple[str, str]]:
    """Requeue (or fail at the attempt cap) running jobs with a stale heartbeat: [(id, status)]."""
    changed = []
    for row in stale_running(session, stale_before=stale_before):
        if row.kind == "analysis" and row.result is not None:
            continue  # a finished analysis waiting for its measured gradients
        seconds = (
            (utcnow() - _aware(row.heartbeat_at)).total_seconds() if row.heartbeat_at else None
        )
        reason = f"heartbeat lost ({seconds:.0f} s old)" if seconds is not None else "no heartbeat"
        changed.append((row.id, _retry_or_fail(session, row, reason)))
    return changed


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def queued_ids(
    session: Session, *, limit: int = 20, older_than: datetime | None = None
) -> list[str]:
    query = select(Job.id).where(Job.status == "queued", Job.cancel_requested.is_(False))
    if older_than is not None:
        query = query.where(Job.updated_at < older_than)
    return list(session.scalars(query.order_by(Job.created_at).limit(limit)))


def fail_exhausted_queued(session: Session) -> list[str]:
    """Queued jobs that have no attempts left (claims would refuse them) end failed."""
    rows = list(
        session.scalars(select(Job).where(Job.status == "queued", Job.attempts >= Job.max_attempts))
    )
    now = utcnow()
    for row in rows:
        detail = (row.error or {}).get("detail") if isinstance(row.error, dict) else None
        row.status = "failed"
        row.finished_at = now
        row.error = {
            "code": "worker_lost",
            "attempts": (row.error or {}).get("attempts", []),
            "detail": f"No attempts left after {row.attempts}; last: {detail or 'unknown'}",
        }
    return [row.id for row in rows]


def cancel_queued(session: Session) -> list[str]:
    """Queued jobs whose cancellation was requested end cancelled without running."""
    rows = list(
        session.scalars(select(Job).where(Job.status == "queued", Job.cancel_requested.is_(True)))
    )
    now = utcnow()
    for row in rows:
        row.status = "cancelled"
        row.finished_at = now
    return [row.id for row in rows]


# -- events --------------------------------------------------------------------------


def next_event_seq(session: Session, job_id: str) -> int:
    return (
        int(
            session.scalar(
                select(func.coalesce(func.max(JobEvent.seq), 0)).where(JobEvent.job_id == job_id)
            )
            or 0
        )
        + 1
    )


def add_events(
    session: Session, job_id: str, first_seq: int, events: list[tuple[str, dict[str, Any]]]
) -> int:
    """Append events with consecutive sequence numbers; returns the next free number."""
    seq = first_seq
    for kind, payload in events:
        session.add(JobEvent(job_id=job_id, seq=seq, kind=kind, payload=payload))
        seq += 1
    return seq


def events_after(session: Session, job_id: str, after_seq: int, limit: int = 500) -> list[JobEvent]:
    return list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
            .order_by(JobEvent.seq)
            .limit(limit)
        )
    )


# -- analyses and their measured gradients --------------------------------------------


def merge_measured_gradients(session: Session, parent_id: str, measured: dict[str, Any]) -> bool:
    """Put a gradients job's result into its analysis's report (``gradient_flow.measured``).

    Returns False when the analysis has no report yet (it merges finished children itself).
    """
    query = select(Job).where(Job.id == parent_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    parent = session.scalar(query)
    if parent is None or parent.result is None:
        return False
    report = copy.deepcopy(parent.result)
    flow = report.get("gradient_flow")
    if not isinstance(flow, dict):
        flow = report["gradient_flow"] = {"predicted": None}
    flow["measured"] = measured
    parent.result = report
    parent.updated_at = utcnow()
    if parent.status == "running":
        parent.status = "succeeded"
        parent.progress = 1.0
        parent.finished_at = utcnow()
    return True


def measured_from_children(session: Session, parent_id: str) -> tuple[dict[str, Any] | None, bool]:
    """(measured record of the newest finished gradients child, whether one is still pending)."""
    child = session.scalar(
        select(Job)
        .where(Job.parent_id == parent_id, Job.kind == "gradients")
        .order_by(Job.created_at.desc())
        .limit(1)
    )
    if child is None:
        return None, False
    if child.status == "succeeded" and child.result is not None:
        return child.result, False
    if child.status in ("failed", "cancelled"):
        return failed_measurement(child.error), False
    return None, True


def failed_measurement(error: dict[str, Any] | None) -> dict[str, Any]:
    detail = (error or {}).get("detail") if isinstance(error, dict) else None
    return {
        "status": "failed",
        "verdict": None,
        "reason": detail or "the measurement failed",
        "error": error,
    }


def utc_cutoff(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)
