"""Job worker processes that are alive: each writes its row every heartbeat interval.

Readiness reads it (are there workers for every queue?), the job-size check reads the memory
the workers declared, and the reconciler forgets rows that stopped beating long ago.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, utcnow


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    executor: Mapped[str] = mapped_column(String(16))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: Memory one TensorFlow job may use on this worker (the job-size check's budget).
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    current_job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


__all__ = ["Worker"]
