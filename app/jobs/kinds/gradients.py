"""``gradients``: measured gradient flow of an analysis's model (TensorFlow child process).

Its outcome, measured or failed, reaches the parent analysis's report through
:func:`app.jobs.repository.settle_measurement`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.jobs.kinds.base import JobContext, measure_model, register_measurement
from app.jobs.resources import estimate_measurement_bytes


def run(context: JobContext) -> dict[str, Any]:
    from app.worker.gradients import measure

    params = context.job.parameters

    def measure_flow(model: Any, progress: Callable[[float], None]) -> dict[str, Any]:
        return measure(model, batches=int(params.get("batches", 4)), batch_size=int(params.get("batch_size", 8)),
                       seed=int(params.get("seed", 0)))

    return measure_model(context, measure_flow, loading=0.1, measuring=0.3)


KIND = register_measurement(
    "gradients", run, time_limit_setting="gradient_time_limit_s", worker_module="app.worker.gradients",
    memory_estimate=estimate_measurement_bytes,
)
