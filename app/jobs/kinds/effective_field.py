"""``effective_field``: the measured effective receptive field of chosen layers of an
analysis's model (TensorFlow child process).

The job's parameters carry, per layer, the centre unit and its theoretical field from the
stored report (``app.analyses.effective_field`` computes them when the job is requested).
The model has the uploaded weights when the file had them, else Keras's initialisation. Its
outcome, measured or failed, reaches the parent analysis's report through
:func:`app.jobs.repository.settle_measurement`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.jobs.kinds.base import JobContext, measure_model, register_measurement
from app.jobs.resources import estimate_effective_field_bytes


def run(context: JobContext) -> dict[str, Any]:
    from app.worker.effective_field import measure

    params = context.job.parameters

    def measure_fields(model: Any, progress: Callable[[float], None]) -> dict[str, Any]:
        measured: dict[str, Any] = measure(
            model,
            params["layers"],
            samples=int(params.get("samples", 16)),
            batch_size=int(params.get("batch_size", 8)),
            seed=int(params.get("seed", 0)),
            progress=progress,
        )
        measured["weights"] = "uploaded" if context.architecture.weights_file is not None else "initialisation"
        return measured

    return measure_model(context, measure_fields, loading=0.05, measuring=0.2)


KIND = register_measurement(
    "effective_field", run, time_limit_setting="effective_field_time_limit_s",
    worker_module="app.worker.effective_field", memory_estimate=estimate_effective_field_bytes,
)
