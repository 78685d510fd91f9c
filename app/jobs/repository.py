"""Job rows: atomic claims, fenced writes, heartbeats, events and the reconciler's queries.

Every write a worker makes after its claim is fenced on ``(worker_id, attempts)``: a
worker that lost its job (its heartbeat went stale and another worker claimed it) can
no longer touch the row, so a result is written exactly once.

Example::

    held = claim(session, job_id, "host:123:ab12", stale_before=utc_cutoff(3))
    if held is not None:
        ...
        finish(session, held, status="succeeded", result={...})
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, extract, func, or_, select, update
from sqlalchemy.orm import Session

from app.analysis.effective_field import attach_effective_field
from app.analysis.gradient_flow import attach_measurement
from app.models import TERMINAL_STATUSES, Architecture, Job, JobEvent, Worker
from app.models.base import utcnow

#: Progress-detail keys that describe a running attempt and go stale when it ends.
_ATTEMPT_DETAIL_KEYS = ("eta_s", "loss", "elapsed_s", "message", "reason")


@dataclass(frozen=True)
class Claim:
    """What a worker holds after a successful claim."""

    job_id: str
    worker_id: str
    attempt: int
    kind: str


def utc_cutoff(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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


def load_for_run(session: Session, job_id: str) -> tuple[Job, Architecture] | None:
    """The job and its architecture (same tenant), detached; None when either is gone."""
    job = session.get(Job, job_id)
    if job is None or job.architecture_id is None:
        return None
    architecture = session.scalar(
        select(Architecture).where(
            Architecture.id == job.architecture_id, Architecture.tenant_id == job.tenant_id
        )
    )
    if architecture is None:
        return None
    session.expunge(job)
    session.expunge(architecture)
    return job, architecture


def job_row(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


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


def _history_entry(attempt: int, worker_id: str | None, outcome: str, reason: str | None) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "worker_id": worker_id,
        "outcome": outcome,
        "reason": reason,
        "at": utcnow().isoformat(),
    }


def finish(
    session: Session,
    held: Claim,
    *,
    status: str,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    attempts_in_result: bool = False,
) -> bool:
    """The final write, fenced: True when this worker still held the job and wrote it.

    The attempt is added to ``attempt_history`` (kept after a retry succeeds; with
    ``attempts_in_result`` the result carries it too, as ``attempt_history``).
    """
    row = session.scalar(select(Job).where(_fence(held.job_id, held.worker_id, held.attempt)))
    if row is None:
        return False
    reason = (error or {}).get("detail") if status != "succeeded" else None
    history = [*(row.attempt_history or []), _history_entry(held.attempt, held.worker_id, status, reason)]
    if error is not None and status == "failed":
        error = {**error, "attempts": history}
    if attempts_in_result and isinstance(result, dict):
        result = {**result, "attempt_history": history}
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "updated_at": now,
        "heartbeat_at": now,
        "error": error,
        "attempt_history": history,
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
    session.expire(row)
    return written.rowcount == 1  # type: ignore[attr-defined]


def release_after_crash(session: Session, held: Claim, reason: str) -> Job | None:
    """The process running this attempt died: queue the job again, or fail it at the cap.

    Returns the row in its new state, or None when it was no longer ours.
    """
    row = session.scalar(select(Job).where(_fence(held.job_id, held.worker_id, held.attempt)))
    if row is None:
        return None
    return row if _retry_or_fail(session, row, reason, outcome="crashed") else None


def give_back(session: Session, held: Claim) -> bool:
    """A graceful stop: the running attempt is returned to the queue without being counted."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(_fence(held.job_id, held.worker_id, held.attempt))
        .values(
            status="queued",
            attempts=Job.attempts - 1,
            worker_id=None,
            dispatched_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _short_reason(reason: str) -> str:
    """The few words a progress line can hold: "worker lost", "TensorFlow process killed"."""
    lowered = reason.lower()
    if "tensorflow process" in lowered:
        return "TensorFlow process killed" if "killed" in lowered else "TensorFlow process died"
    return "worker lost"


def _retry_or_fail(
    session: Session,
    row: Job,
    reason: str,
    *,
    outcome: str = "lost",
    stale_before: datetime | None = None,
) -> str | None:
    """End the row's running attempt: queued again (with a "retrying" phase and event),
    failed at the attempt cap, or cancelled if that was asked. None when the row changed
    under us (a fresh heartbeat, another writer)."""
    now = utcnow()
    history = [*(row.attempt_history or []), _history_entry(row.attempts, row.worker_id, outcome, reason)]
    detail = {
        key: value
        for key, value in (row.progress_detail or {}).items()
        if key not in _ATTEMPT_DETAIL_KEYS
    }
    values: dict[str, Any] = {"updated_at": now, "worker_id": None, "attempt_history": history}
    event: tuple[str, dict[str, Any]]
    if row.cancel_requested:
        status = "cancelled"
        values["error"] = {
            "code": "cancelled",
            "detail": "Cancelled while its worker was lost.",
            "attempts": history,
        }
        event = ("finished", {"status": "cancelled", "error": None})
    elif row.attempts >= row.max_attempts:
        status = "failed"
        values["error"] = {
            "code": "worker_lost",
            "detail": f"The job stopped its worker {row.attempts} time(s) (last: {reason}); "
            f"it is not retried after {row.max_attempts} attempts.",
            "attempts": history,
        }
        event = ("failed", {"status": "failed", "error": values["error"]["detail"]})
    else:
        status = "queued"
        message = f"retrying (attempt {row.attempts + 1} after {_short_reason(reason)})"
        values["error"] = None
        values["dispatched_at"] = None
        values["progress_detail"] = {
            **detail,
            "phase": "retrying",
            "message": message,
            "attempt": row.attempts + 1,
            "reason": reason,
        }
        event = (
            "retrying",
            {"attempt": row.attempts + 1, "after_attempt": row.attempts, "reason": reason, "message": message},
        )
    values["status"] = status
    if status != "queued":
        values["finished_at"] = now
    condition = _fence(row.id, row.worker_id or "", row.attempts)
    if stale_before is not None:
        condition = and_(condition, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before))
    changed = session.execute(
        update(Job).where(condition).values(**values).execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    add_event(session, row.id, *event)
    session.expire(row)
    return status


def stale_running(session: Session, *, stale_before: datetime, limit: int = 100) -> list[Job]:
    """Running jobs whose heartbeat is older than ``stale_before`` (their worker is lost),
    except analyses that have their report and wait for a measurement (no worker holds them)."""
    rows = session.scalars(
        select(Job)
        .where(
            Job.status == "running",
            Job.worker_id.is_not(None),
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
        )
        .limit(limit)
    )
    return [row for row in rows if not (row.kind == "analysis" and row.result is not None)]


def recover_stale(session: Session, *, stale_before: datetime) -> list[tuple[Job, str]]:
    """Requeue (or fail at the attempt cap) running jobs with a stale heartbeat."""
    changed = []
    for row in stale_running(session, stale_before=stale_before):
        seconds = (utcnow() - _aware(row.heartbeat_at)).total_seconds() if row.heartbeat_at else None
        reason = (
            f"worker lost: heartbeat {seconds:.1f} s old" if seconds is not None else "worker lost: no heartbeat"
        )
        status = _retry_or_fail(session, row, reason, stale_before=stale_before)
        if status is not None:
            changed.append((row, status))
    return changed


def release_worker_jobs(session: Session, worker_id: str, reason: str) -> list[tuple[Job, str]]:
    """The worker process ``worker_id`` is gone: end the attempts it held (retry or fail)."""
    rows = list(session.scalars(select(Job).where(Job.status == "running", Job.worker_id == worker_id)))
    changed = []
    for row in rows:
        status = _retry_or_fail(session, row, reason)
        if status is not None:
            changed.append((row, status))
    return changed


def queued_ids(session: Session, *, limit: int = 20) -> list[str]:
    """Queued jobs in the order they were created (what an idle worker looks for)."""
    query = select(Job.id).where(Job.status == "queued", Job.cancel_requested.is_(False))
    return list(session.scalars(query.order_by(Job.created_at).limit(limit)))


def overdue_queued(
    session: Session, *, never_sent_before: datetime, redispatch_after_s: float, limit: int = 200
) -> list[tuple[str, str]]:
    """Queued jobs whose message is overdue, as (id, kind): never sent (a send failed, or the
    process died between commit and send) and older than ``never_sent_before``, or sent more
    than ``redispatch_after_s * 2**(sends - 1)`` ago (the message may have been lost)."""
    now = utcnow()
    rows = session.execute(
        select(Job.id, Job.kind, Job.dispatched_at, Job.dispatches)
        .where(
            Job.status == "queued",
            Job.cancel_requested.is_(False),
            or_(
                and_(Job.dispatched_at.is_(None), Job.updated_at < never_sent_before),
                Job.dispatched_at < now - timedelta(seconds=redispatch_after_s),
            ),
        )
        .order_by(Job.created_at)
        .limit(limit)
    ).all()
    overdue = []
    for row in rows:
        if row.dispatched_at is not None:
            wait = redispatch_after_s * 2 ** min(max(int(row.dispatches) - 1, 0), 6)
            if (now - _aware(row.dispatched_at)).total_seconds() < wait:
                continue
        overdue.append((str(row.id), str(row.kind)))
    return overdue


def mark_dispatched(session: Session, job_id: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(dispatched_at=utcnow(), dispatches=Job.dispatches + 1)
        .execution_options(synchronize_session=False)
    )


def kind_of(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.kind).where(Job.id == job_id))


def fail_exhausted_queued(session: Session) -> list[Job]:
    """Queued jobs that have no attempts left (claims would refuse them) end failed."""
    rows = list(
        session.scalars(select(Job).where(Job.status == "queued", Job.attempts >= Job.max_attempts))
    )
    now = utcnow()
    for row in rows:
        history = list(row.attempt_history or [])
        last = history[-1]["reason"] if history else None
        row.status = "failed"
        row.finished_at = now
        row.error = {
            "code": "worker_lost",
            "attempts": history,
            "detail": f"No attempts left after {row.attempts}; last: {last or 'unknown'}",
        }
        add_event(session, row.id, "failed", {"status": "failed", "error": row.error["detail"]})
    return rows


def cancel_queued(session: Session) -> list[Job]:
    """Queued jobs whose cancellation was requested end cancelled without running."""
    rows = list(
        session.scalars(select(Job).where(Job.status == "queued", Job.cancel_requested.is_(True)))
    )
    now = utcnow()
    for row in rows:
        row.status = "cancelled"
        row.finished_at = now
    return rows


def statuses(session: Session, job_ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{id: (status, parameters)}`` of the jobs that exist among ``job_ids``."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.status, Job.parameters).where(Job.id.in_(job_ids)))
    return {str(r.id): (str(r.status), dict(r.parameters or {})) for r in rows}


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


def add_event(session: Session, job_id: str, kind: str, payload: dict[str, Any]) -> None:
    """One event written by whoever ends an attempt (no worker holds the job then)."""
    add_events(session, job_id, next_event_seq(session, job_id), [(kind, payload)])


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


def _attach(report: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """The one call that puts a measurement into a report (the gradient-flow module's)."""
    return attach_measurement(report, measured)


def settle_measurement(session: Session, analysis_id: str) -> None:
    """Bring an analysis in line with its newest gradients and effective-field jobs: the one
    place a measurement reaches a report. Called when any of them ends (whichever ends last
    completes it).

    The analysis shows ``running`` while its report is there and a measurement is pending,
    and ``succeeded`` with the measurement (or the measurement's failure) in the report after.
    """
    query = select(Job).where(Job.id == analysis_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    parent = session.scalar(query)
    if parent is None or parent.result is None or parent.status not in ("running", "succeeded"):
        return  # not analysed yet: it settles when it finishes
    measured, pending = measured_from_children(session, analysis_id)
    field, field_pending = effective_field_from_children(session, analysis_id)
    pending = pending or field_pending
    now = utcnow()
    if measured is not None:
        parent.result = _attach(parent.result, measured)
        parent.updated_at = now
    if field is not None:
        parent.result = attach_effective_field(parent.result, field)
        parent.updated_at = now
    if pending:  # no worker holds it while it waits; its report is half the work
        parent.status, parent.finished_at, parent.worker_id = "running", None, None
        parent.progress = min(float(parent.progress or 0.0), 0.5)
    elif not pending and parent.status == "running":
        parent.status, parent.progress, parent.finished_at = "succeeded", 1.0, now


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


def effective_field_from_children(session: Session, parent_id: str) -> tuple[dict[str, Any] | None, bool]:
    """(result of the newest finished effective-field child, whether one is still pending)."""
    child = session.scalar(
        select(Job)
        .where(Job.parent_id == parent_id, Job.kind == "effective_field")
        .order_by(Job.created_at.desc())
        .limit(1)
    )
    if child is None:
        return None, False
    if child.status == "succeeded" and child.result is not None:
        return {**child.result, "job_id": child.id}, False
    if child.status in ("failed", "cancelled"):
        detail = (child.error or {}).get("detail") if isinstance(child.error, dict) else None
        return {"status": "failed", "reason": detail or "the measurement failed", "error": child.error,
                "job_id": child.id}, False
    return None, True


def failed_measurement(error: dict[str, Any] | None) -> dict[str, Any]:
    detail = (error or {}).get("detail") if isinstance(error, dict) else None
    return {
        "status": "failed",
        "verdict": None,
        "reason": detail or "the measurement failed",
        "error": error,
    }


# -- workers --------------------------------------------------------------------------


def beat_worker(
    session: Session,
    *,
    worker_id: str,
    executor: str,
    hostname: str,
    pid: int,
    queues: list[str],
    memory_bytes: int,
    current_job_id: str | None,
) -> None:
    """Insert or refresh the worker's row (its liveness for readiness and the reconciler)."""
    now = utcnow()
    changed = session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(heartbeat_at=now, current_job_id=current_job_id)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        session.add(
            Worker(
                id=worker_id,
                executor=executor,
                hostname=hostname[:255],
                pid=pid,
                queues=queues,
                memory_bytes=memory_bytes,
                current_job_id=current_job_id,
                started_at=now,
                heartbeat_at=now,
            )
        )


def remove_worker(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


def live_workers(session: Session, *, fresh_after: datetime) -> list[Worker]:
    return list(session.scalars(select(Worker).where(Worker.heartbeat_at >= fresh_after)))


def live_worker_memory(session: Session, *, queue: str, fresh_after: datetime) -> int | None:
    """The largest per-job memory declared by a live worker that takes ``queue``."""
    sizes = [w.memory_bytes for w in live_workers(session, fresh_after=fresh_after) if queue in (w.queues or [])]
    return max(sizes) if sizes else None


def forget_workers(session: Session, *, silent_since: datetime) -> int:
    result = session.execute(delete(Worker).where(Worker.heartbeat_at < silent_since))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- what /metrics reads at scrape time -----------------------------------------------------------


def counts_by_kind_and_status(session: Session) -> dict[tuple[str, str], int]:
    """How many jobs are stored, per (kind, status)."""
    rows = session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status))
    return {(kind, status): count for kind, status, count in rows}


def run_time_histogram(session: Session, buckets: Iterable[float]) -> list[tuple[Any, ...]]:
    """Per (kind, status) of finished jobs still stored: how many ran at most each bound
    (started_at to finished_at), their count and their total seconds (one aggregate query)."""
    return _histogram_rows(
        session, Job.started_at, Job.finished_at, [Job.kind, Job.status],
        Job.status.in_(TERMINAL_STATUSES) & Job.started_at.is_not(None) & Job.finished_at.is_not(None),
        buckets,
    )


def queue_wait_histogram(session: Session, buckets: Iterable[float]) -> list[tuple[Any, ...]]:
    """Per kind of started jobs: how many waited at most each bound (created_at to started_at),
    their count and their total seconds (one aggregate query)."""
    return _histogram_rows(session, Job.created_at, Job.started_at, [Job.kind], Job.started_at.is_not(None),
                           buckets)


def _duration_expression(dialect: str, start: Any, end: Any) -> Any:
    """Seconds between two timestamp columns, in SQL (SQLite stores text, PostgreSQL timestamps)."""
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def _histogram_rows(
    session: Session, start: Any, end: Any, group: list[Any], where: Any, buckets: Iterable[float]
) -> list[tuple[Any, ...]]:
    """Per group, the count at or below each bucket bound, the total count and the sum."""
    duration = _duration_expression(session.get_bind().dialect.name, start, end)
    columns = [func.sum(case((duration <= bound, 1), else_=0)) for bound in buckets]
    query = (
        select(*group, *columns, func.count(), func.coalesce(func.sum(duration), 0.0))
        .where(where)
        .group_by(*group)
    )
    return [tuple(row) for row in session.execute(query)]
