"""``gradients``: measured gradient flow of an analysis's model (TensorFlow child process).

Its outcome, measured or failed, reaches the parent analysis's report through
:func:`app.jobs.repository.settle_measurement`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.jobs.kinds.base import JobContext, JobKind, register
from app.jobs.resources import estimate_measurement_bytes

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

    from app.models import Job


def run(context: JobContext) -> dict[str, Any]:
    from app.worker.gradients import measure
    from app.worker.loader import load_model

    params = context.job.parameters
    architecture = context.architecture
    context.progress(0.1, {"phase": "loading model"})
    model = load_model(
        architecture.config,
        architecture.weights_file,
        architecture.format,
        input_shape=params.get("input_shape"),
    )
    context.progress(0.3, {"phase": "measuring"})
    measured: dict[str, Any] = measure(
        model,
        batches=int(params.get("batches", 4)),
        batch_size=int(params.get("batch_size", 8)),
        seed=int(params.get("seed", 0)),
    )
    context.progress(1.0, {"phase": "done"})
    return measured


def settle(session: Session, row: Job) -> None:
    from app.jobs.repository import settle_measurement

    if row.parent_id:
        settle_measurement(session, row.parent_id)


KIND = register(
    JobKind(
        name="gradients",
        run=run,
        queue="training",
        in_tensorflow=True,
        time_limit_setting="gradient_time_limit_s",
        preload=("app.worker.loader", "app.worker.gradients"),
        settle=settle,
        memory_estimate=estimate_measurement_bytes,
    )
)
