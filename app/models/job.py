"""Jobs: analyses, gradient measurements and training runs. The row is the truth.

A queue (local or Celery) only ever carries a job id; a worker claims the row
atomically, writes heartbeats, and writes the result once, fenced by its
``worker_id`` and ``attempts``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, column
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, new_id, utcnow

# The job kinds are declared in one place, the registry in ``app.jobs.kinds``.
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
        Index("ix_jobs_tenant_kind_created", "tenant_id", "kind", "created_at"),
        # Only the jobs that have a parent (an analysis's measurements), looked up by
        # ``parent_id = :id``: the analyses and training runs themselves add no entry.
        Index("ix_jobs_parent_id", "parent_id", sqlite_where=column("parent_id").is_not(None),
              postgresql_where=column("parent_id").is_not(None)),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    name: Mapped[str | None] = mapped_column(String(300), default=None)
    architecture_id: Mapped[str | None] = mapped_column(
        ForeignKey("architectures.id", ondelete="CASCADE"), index=True, default=None
    )
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), default=None  # (indexed above)
    )
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    time_limit_s: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    #: How many times a result was written; the fencing makes this 0 or 1.
    result_writes: Mapped[int] = mapped_column(Integer, default=0)
    #: Every attempt that ended, oldest first: ``{"attempt", "worker_id", "outcome",
    #: "reason", "at"}`` (outcome: succeeded, failed, cancelled, lost, crashed). Kept after
    #: a retry succeeds, so a crash stays visible on the finished job.
    attempt_history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, default=None)
    #: When the job id was last handed to the executor, and how many times: the reconciler
    #: re-sends only what is overdue (never sent, or sent long ago with backoff).
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    dispatches: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class JobEvent(Base):
    """Progress records of a job (training steps, probes), streamed as server-sent events."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_seq", "job_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["JOB_STATUSES", "TERMINAL_STATUSES", "Job", "JobEvent"]
