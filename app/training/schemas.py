"""Request and response bodies of ``/v1/training-runs``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.contract import documented_as
from app.training.results import TrainingResult

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class TrainingRunCreate(BaseModel):
    """Body of ``POST /v1/training-runs`` (JSON, or the same fields as multipart form fields
    with the model as a ``file`` part and the dataset as a ``dataset_file`` part holding an
    ``.npz`` with ``x`` and ``y``).

    The model to train is one of: ``analysis_id``, ``architecture_id``, ``architecture`` (the
    Keras model JSON, as ``POST /v1/analyses`` takes it) or, in a multipart body, the ``file``
    part. An inline or uploaded model is analysed and stored as an analysis in the same
    request (the run's ``analysis_id``), so its report page shows the run.
    """

    model_config = ConfigDict(extra="forbid")

    analysis_id: str | None = Field(
        default=None, max_length=64, description="Train the analysed architecture."
    )
    architecture_id: str | None = Field(
        default=None, max_length=64, description="Or a stored architecture."
    )
    architecture: dict[str, Any] | str | None = Field(
        default=None,
        description="Or the Keras model JSON itself: the object, or the string `model.to_json()` "
        "returns (analysed and stored in the same request).",
    )
    name: str | None = Field(
        default=None, max_length=300,
        description="Name of the analysis stored for an inline architecture or an uploaded file.",
    )
    steps: int = Field(
        default=100,
        ge=1,
        description="Training steps (capped by the service's training_max_steps).",
    )
    batch_size: int = Field(default=32, ge=1)
    optimizer: Literal["sgd", "adam", "rmsprop"] = "adam"
    learning_rate: float | None = Field(
        default=None, gt=0, le=10, description="Default 1e-3 (0.01 for sgd)."
    )
    dataset: Literal["synthetic", "npz"] = Field(
        default="synthetic",
        description="synthetic: a learnable task at the model's shapes; npz: the dataset_file.",
    )
    input_shape: list[Any] | dict[str, list[Any]] | str | None = Field(
        default=None,
        description="Override of the input shape without the batch dimension: [224, 224, 3], "
        "\"224,224,3\" or per input name (checked by the same rules as analyses).",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    probe_every: int = Field(default=10, ge=1, le=10_000)
    overfit_steps: int = Field(default=50, ge=0, le=1000)
    overfit_check: bool = Field(
        default=True,
        description="After training, check that the initial weights can overfit one fixed batch "
        "(overfit_steps steps): a phase of its own ('overfit_check' in progress.phase), its "
        "duration in result.overfit_one_batch.duration_s.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TrainingRunCreate:
        given = [self.analysis_id, self.architecture_id, self.architecture]
        if sum(value is not None for value in given) > 1:
            raise ValueError(
                "give one model to train: analysis_id, architecture_id or architecture "
                "(or a multipart 'file'), not several"
            )
        return self

    @property
    def has_source(self) -> bool:
        """Whether the body names the model itself (else a multipart ``file`` must)."""
        return any(value is not None for value in (self.analysis_id, self.architecture_id, self.architecture))


class TrainingProgress(BaseModel):
    steps_done: int = 0
    steps: int
    fraction: float = 0.0
    eta_s: float | None = None
    loss: float | None = None
    phase: str | None = None
    #: e.g. "retrying (attempt 2 after worker lost)" while a retry waits for a worker
    message: str | None = None


class TrainingRunOut(BaseModel):
    id: str
    status: JobStatus
    architecture_id: str | None
    analysis_id: str | None = None
    parameters: dict[str, Any]
    progress: TrainingProgress
    attempts: int
    time_limit_s: float | None
    cancel_requested: bool
    result: Annotated[dict[str, Any] | None, documented_as(
        TrainingResult, nullable=True, description="The finished run's history and verdict (null until then)."
    )] = None
    error: dict[str, Any] | None = None
    events_url: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
