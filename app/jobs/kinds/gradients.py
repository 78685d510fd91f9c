"""``gradients``: measured gradient flow of an analysis's model (TensorFlow child process).

Its outcome, measured or failed, reaches the parent analysis's report through
:func:`app.jobs.repository.settle_measurement`.
"""

from __future__ import annotations

from typing import Any

from app.jobs.kinds.base import JobContext, load_architecture_model, register_measurement
from app.jobs.resources import estimate_measurement_bytes


def run(context: JobContext) -> dict[str, Any]:
    from app.worker.gradients import measure

    params = context.job.parameters
    context.progress(0.1, {"phase": "loading model"})
    model = load_architecture_model(context)
    context.progress(0.3, {"phase": "measuring"})
    measured: dict[str, Any] = measure(
        model,
        batches=int(params.get("batches", 4)),
        batch_size=int(params.get("batch_size", 8)),
        seed=int(params.get("seed", 0)),
    )
    context.progress(1.0, {"phase": "done"})
    return measured


KIND = register_measurement(
    "gradients", run, time_limit_setting="gradient_time_limit_s", worker_module="app.worker.gradients",
    memory_estimate=estimate_measurement_bytes,
)
