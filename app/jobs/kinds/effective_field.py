"""``effective_field``: the measured effective receptive field of chosen layers of an
analysis's model (TensorFlow child process).

The job's parameters carry, per layer, the centre unit and its theoretical field from the
stored report (``app.analyses.effective_field`` computes them when the job is requested).
The model has the uploaded weights when the file had them, else Keras's initialisation. Its
outcome, measured or failed, reaches the parent analysis's report through
:func:`app.jobs.repository.settle_measurement`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.jobs.kinds.base import JobContext, JobKind, register
from app.jobs.resources import estimate_effective_field_bytes

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

    from app.models import Job


def run(context: JobContext) -> dict[str, Any]:
    from app.worker.effective_field import measure
    from app.worker.loader import load_model

    params = context.job.parameters
    architecture = context.architecture
    weights_file = architecture.weights_file
    context.progress(0.05, {"phase": "loading model"})
    model = load_model(
        architecture.config, weights_file, architecture.format, input_shape=params.get("input_shape")
    )
    context.progress(0.2, {"phase": "measuring"})
    measured: dict[str, Any] = measure(
        model,
        params["layers"],
        samples=int(params.get("samples", 16)),
        batch_size=int(params.get("batch_size", 8)),
        seed=int(params.get("seed", 0)),
        progress=lambda fraction: context.progress(0.2 + 0.8 * fraction, {"phase": "measuring"}),
    )
    measured["weights"] = "uploaded" if weights_file is not None else "initialisation"
    context.progress(1.0, {"phase": "done"})
    return measured


def settle(session: Session, row: Job) -> None:
    from app.jobs.repository import settle_measurement

    if row.parent_id:
        settle_measurement(session, row.parent_id)


KIND = register(
    JobKind(
        name="effective_field",
        run=run,
        queue="training",
        in_tensorflow=True,
        time_limit_setting="effective_field_time_limit_s",
        preload=("app.worker.loader", "app.worker.effective_field"),
        settle=settle,
        memory_estimate=estimate_effective_field_bytes,
    )
)
