from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.architectures.schemas import ArchitectureOut

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

InputShape = list[int | None]
#: What a client may send as an override; ``app.ingest.shapes.parse_input_shape`` checks it.
InputShapeIn = list[Any] | dict[str, list[Any]] | str
#: What is stored and returned: one shape, or one per named input.
InputShapeOut = list[int | None] | dict[str, list[int | None]]


class AnalysisCreate(BaseModel):
    """Body of ``POST /v1/analyses`` as JSON."""

    model_config = ConfigDict(extra="forbid")

    architecture: dict[str, Any] | str = Field(
        description="The Keras model JSON: the object, or the string `model.to_json()` returns."
    )
    input_shape: InputShapeIn | None = Field(
        default=None,
        description=(
            "Override of the input shape without the batch dimension, e.g. [224, 224, 3] (also "
            "\"224,224,3\"), or per input name for a model with several inputs: "
            "{\"image\": [224, 224, 3], \"mask\": [224, 224, 1]}."
        ),
    )
    name: str | None = Field(default=None, max_length=300)
    measure_gradients: bool = Field(
        default=False, description="Also measure gradient flow with TensorFlow in a queued job."
    )


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str


class AnalysisOut(BaseModel):
    id: str
    status: JobStatus
    name: str | None
    architecture: ArchitectureOut
    input_shape: InputShapeOut | None = None
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    progress: float = 0.0
    gradient_job_id: str | None = None
    created_at: datetime
    updated_at: datetime


class AnalysisListItem(BaseModel):
    id: str
    status: JobStatus
    name: str | None
    architecture_id: str | None
    summary: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class AnalysisPage(BaseModel):
    items: list[AnalysisListItem]
    total: int
    limit: int
    offset: int
