"""``analysis``: the static report of a queued analysis (pure Python, in the worker process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.jobs.kinds.base import JobContext, JobKind, register
from app.jobs.steps import analyse

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

    from app.models import Job


def run(context: JobContext) -> dict[str, Any]:
    job, architecture = context.job, context.architecture
    input_shape = job.parameters.get("input_shape")
    return analyse(architecture.config, input_shape, job.name or architecture.name, context.settings)


def settle(session: Session, row: Job) -> None:
    """A measurement that finished before its analysis goes into the new report."""
    from app.jobs.repository import settle_measurement

    settle_measurement(session, row.id)


KIND = register(
    JobKind(
        name="analysis",
        run=run,
        queue="analysis",
        in_tensorflow=False,
        time_limit_setting="analysis_time_limit_s",
        settle=settle,
    )
)
