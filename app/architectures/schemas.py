from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ArchitectureOut(BaseModel):
    id: str
    name: str | None
    format: Literal["json", "keras", "h5"]
    sha256: str
    byte_size: int
    has_weights: bool
    created_at: datetime
    config: dict[str, Any] | None = Field(
        default=None, description="The parsed Keras model config (only on GET /v1/architectures/{id})."
    )


class ArchitecturePage(BaseModel):
    items: list[ArchitectureOut]
    total: int
    limit: int
    offset: int
