from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.analysis.schema import Report, Summary
from app.api.contract import documented_as
from app.architectures.schemas import ArchitectureOut

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

InputShape = list[int | None]


class AnalysisCreate(BaseModel):
    """Body of ``POST /v1/analyses`` as JSON."""

    model_config = ConfigDict(extra="forbid")

    architecture: dict[str, Any] | str = Field(
        description="The Keras model JSON: the object, or the string `model.to_json()` returns."
    )
    input_shape: InputShape | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="Override of the input shape without the batch dimension, e.g. [224, 224, 3].",
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
    input_shape: InputShape | None = None
    report: Annotated[dict[str, Any] | None, documented_as(
        Report, nullable=True, description="The report (null until the static analysis finished)."
    )] = None
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
    summary: Annotated[dict[str, Any] | None, documented_as(
        Summary, nullable=True, description="The report's summary (null until finished)."
    )] = None
    created_at: datetime
    updated_at: datetime


class AnalysisPage(BaseModel):
    items: list[AnalysisListItem]
    total: int
    limit: int
    offset: int
