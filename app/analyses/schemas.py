from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from app.analysis.schema import Report, Summary
from app.api.contract import documented_as
from app.architectures.schemas import ArchitectureOut
from app.pipeline import AnalysisCreate, InputShapeIn, InputShapes

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

InputShape = list[int | None]
InputShapeOut = InputShapes

__all__ = ["AnalysisCreate", "AnalysisListItem", "AnalysisOut", "AnalysisPage", "InputShape", "InputShapeIn",
           "InputShapeOut", "JobStatus"]


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
