"""``training``: a short instrumented training run (TensorFlow child process).

It checkpoints every ``training_checkpoint_every_steps`` steps into the job's work folder; a
retry resumes from there. Step events carry their ``attempt``. The uploaded dataset and the
checkpoints are deleted when the run ends, however it ends.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.config import Settings
from app.jobs.kinds.base import JobContext, JobKind, JobSpec, register
from app.jobs.resources import estimate_training_bytes


class StepHold:
    """Tests only (``test_hooks_dir``): pause the run after a given step, or when it enters a
    phase, until released.

    A test writes ``<hooks>/<job id>.hold`` as ``{"step": K}`` or ``{"phase": "overfit_check"}``,
    optionally with ``"attempt": A``; there the run writes ``<job id>.reached``
    (``{"step", "phase", "attempt", "pid"}``) and waits until the hold file is removed (or the
    job is told to stop). So a test can kill, cancel or look at a job where it chose, instead
    of racing it.
    """

    def __init__(self, settings: Settings, job: JobSpec) -> None:
        folder = settings.test_hooks_dir
        self.hold = Path(folder) / f"{job.id}.hold" if folder else None
        self.attempt = job.attempt

    def _wanted(self) -> dict[str, Any] | None:
        if self.hold is None:
            return None
        try:
            wanted: dict[str, Any] = json.loads(self.hold.read_text())
        except (OSError, ValueError):
            return None
        return wanted if wanted.get("attempt", self.attempt) == self.attempt else None

    def _wait(self, where: dict[str, Any], should_stop: Any) -> None:
        assert self.hold is not None
        reached = {**where, "attempt": self.attempt, "pid": os.getpid()}
        partial = self.hold.with_suffix(".reached.tmp")
        partial.write_text(json.dumps(reached))
        os.replace(partial, self.hold.with_suffix(".reached"))
        while self.hold.exists() and not should_stop():
            time.sleep(0.02)

    def after_step(self, step: int, should_stop: Any) -> None:
        wanted = self._wanted()
        if wanted is not None and wanted.get("step") == step:
            self._wait({"step": step, "phase": "training"}, should_stop)

    def at_phase(self, phase: str, should_stop: Any) -> None:
        wanted = self._wanted()
        if wanted is not None and wanted.get("phase") == phase:
            self._wait({"step": None, "phase": phase}, should_stop)


def run(context: JobContext) -> dict[str, Any]:
    from app.worker.loader import load_model
    from app.worker.runtime import init_tensorflow
    from app.worker.training import TrainingCheckpoint, TrainingParams, run_training

    settings, job, architecture = context.settings, context.job, context.architecture
    raw = dict(job.parameters)
    input_shape = raw.pop("input_shape", None)
    raw.pop("time_limit_s", None)
    raw.pop("analysis_id", None)
    params = TrainingParams.from_dict(
        raw, max_steps=settings.training_max_steps, max_batch_size=settings.training_max_batch_size
    )
    started = time.monotonic()
    total = params.steps + (params.overfit_steps if params.overfit_check else 0)
    base = {"steps": params.steps, "attempt": job.attempt}
    context.progress(0.0, {**base, "phase": "loading model", "steps_done": 0})
    init_tensorflow(seed=params.seed)  # the same initial weights on every attempt
    model = load_model(
        architecture.config, architecture.weights_file, architecture.format, input_shape=input_shape
    )
    every = settings.training_checkpoint_every_steps
    checkpoint = TrainingCheckpoint(context.work_dir, every) if every > 0 else None
    hold = StepHold(settings, job)

    def on_phase(name: str, info: dict[str, Any]) -> None:
        if name == "training":
            resumed = info.get("resumed_from_step")
            if resumed:
                context.event("resumed", {"attempt": job.attempt, "from_step": resumed})
            context.progress(
                (resumed or 0) / total,
                {**base, "phase": "training", "steps_done": resumed or 0, "resumed_from_step": resumed},
            )
        else:
            context.progress(
                params.steps / total,
                {**base, "phase": name, "steps_done": params.steps, "overfit_steps": params.overfit_steps},
            )
            hold.at_phase(name, context.should_stop)

    def on_step(event: dict[str, Any]) -> None:
        probe = event.pop("probe", None)
        event["attempt"] = job.attempt
        context.event("step", event)
        if probe is not None:
            context.event("probe", {**probe, "attempt": job.attempt})
        context.progress(
            event["step"] / total,
            {
                **base,
                "phase": "training",
                "steps_done": event["step"],
                "eta_s": event["eta_s"],
                "loss": event["loss"],
                "elapsed_s": event["elapsed_s"],
            },
        )
        hold.after_step(event["step"], context.should_stop)

    time_limit = float(job.time_limit_s)
    result = run_training(
        model,
        params,
        on_step=on_step,
        should_stop=context.should_stop,
        time_limit_s=max(0.0, time_limit - (time.monotonic() - started)),
        max_npz_bytes=settings.max_npz_bytes,
        checkpoint=checkpoint,
        on_phase=on_phase,
    )
    context.progress(
        1.0,
        {**base, "phase": "done", "steps_done": result["steps_completed"], "eta_s": 0, "stopped": result["status"]},
    )
    return result


def dataset_files(settings: Settings, parameters: Mapping[str, Any]) -> list[Path]:
    path = parameters.get("npz_path")
    return [Path(path)] if isinstance(path, str) and path else []


KIND = register(
    JobKind(
        name="training",
        run=run,
        queue="training",
        in_tensorflow=True,
        time_limit_setting="training_time_limit_s",
        preload=("app.worker.loader", "app.worker.training"),
        owned_files=dataset_files,
        memory_estimate=estimate_training_bytes,
        attempts_in_result=True,
    )
)
