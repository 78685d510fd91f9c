"""The result of a finished training run (``GET /v1/training-runs/{id}`` → ``result``), typed
for the OpenAPI document and generated clients.

The worker writes it (``app.worker.training.run_training``); the service returns it as
stored. Training results may gain fields between releases (new phases, new measurements):
the models allow fields they do not name, and name every field clients rely on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["vanishing", "healthy", "exploding"]


class Open(BaseModel):
    """A training-result object: the fields below, and possibly newer ones."""

    model_config = ConfigDict(extra="allow")


class OverfitCheck(Open):
    """Whether the model can drive the loss of one fixed batch down (a sanity check)."""

    passed: bool | None = Field(description="null when the check did not run (see reason).")
    steps: int = Field(description="Steps the check ran (count).")
    reason: str | None = Field(default=None, description="Why the check did not run.")
    batch_size: int | None = Field(default=None)
    initial_loss: float | None = Field(default=None)
    final_loss: float | None = Field(default=None, description="Lowest of the last three losses.")
    factor: float | None = Field(default=None, description="initial_loss / final_loss (dimensionless).")
    required_factor: float | None = Field(default=None, description="The factor needed to pass.")
    duration_s: float | None = Field(default=None, description="Wall time of the check (seconds).")


class GradientHealth(Open):
    step: int = Field(description="The training step of the probe.")
    first_to_last_ratio: float | None = Field(description="First weighted layer's gradient norm over the last's.")
    verdict: Verdict | None


class TrainingVerdict(Open):
    """What the run says about the architecture, in numbers and in one sentence."""

    loss_initial: float | None = Field(description="Mean loss of the first five steps.")
    loss_final: float | None = Field(description="Mean loss of the last five steps.")
    loss_change: float | None = Field(description="loss_final - loss_initial.")
    loss_relative_change: float | None = Field(description="loss_change / loss_initial (-0.5: halved).")
    loss_decreased: bool = Field(description="Whether the loss fell by more than 10%.")
    overfit_one_batch_passed: bool | None
    overfit_one_batch: OverfitCheck
    gradient_health: list[GradientHealth] = Field(description="The gradient verdict at each probe step.")
    gradient_health_overall: Verdict | None
    max_dead_fraction: float | None = Field(description="Largest share of dead ReLU units seen (0 to 1).")
    stopped: str = Field(description="completed, or why the run stopped (cancelled, time_limit, diverged).")
    summary: str = Field(description="The verdict in one sentence.")


class TrainingHistory(Open):
    loss: list[float | None] = Field(description="Loss at every step.")
    accuracy: list[float | None] | None = Field(description="Accuracy at every step, for classifiers.")
    step_time_s: list[float] = Field(description="Wall time of every step (seconds).")
    grad_global_norm: list[float | None] = Field(description="Global L2 norm of the gradients at every step.")


class TrainingDataset(Open):
    kind: Literal["synthetic", "npz"]
    samples: int | None = Field(description="Samples in the dataset (null: generated on the fly).")


class AttemptRecord(Open):
    """One attempt of the run that ended (kept after a retry succeeds)."""

    attempt: int
    worker_id: str | None = Field(default=None)
    outcome: str = Field(description="succeeded, failed, cancelled, lost (its worker was lost) or crashed "
                         "(its TensorFlow process died).")
    reason: str | None = Field(default=None, description="Why the attempt ended, when it did not succeed.")
    at: str = Field(description="When it ended (ISO 8601, UTC).")


class TrainingResult(Open):
    """A finished run: its history, probes, the overfit check and the verdict."""

    status: str = Field(description="completed, cancelled, time_limit or diverged.")
    device: str = Field(description="Where it ran, e.g. CPU:0.")
    steps_completed: int
    elapsed_s: float = Field(description="Wall time of the run (seconds).")
    train_elapsed_s: float = Field(description="Of which training steps (seconds).")
    compile_s: float = Field(description="Of which building the step functions (seconds).")
    median_step_time_s: float | None = Field(description="Median wall time of a step (seconds).")
    samples_per_s: float | None = Field(description="Throughput at the median step time (samples per second).")
    dataset: TrainingDataset
    history: TrainingHistory
    overfit_one_batch: OverfitCheck
    verdict: TrainingVerdict
    resumed_from_step: int | None = Field(
        default=None, description="The checkpoint step the last attempt resumed from (null: it started at step 0)."
    )
    overfit_check_s: float | None = Field(default=None, description="Wall time of the overfit check (seconds).")
    attempt_history: list[AttemptRecord] | None = Field(
        default=None, description="Every attempt of the run, oldest first, with why each one ended."
    )
