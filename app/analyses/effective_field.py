"""Requesting the effective-receptive-field measurement of an analysis.

``POST /v1/analyses/{id}/effective-field`` with an optional JSON body
(:class:`EffectiveFieldCreate`) queues an ``effective_field`` job for the analysis's model at
the analysis's input size. The layers are checked against the stored report here, before
anything is queued: each must be a top-level layer with a 2-D feature map and a finite field
(the job gets its centre unit and theoretical field box from the report). Without ``layers``
the job measures the last layer of each stage along the main path, or, for a model with
fewer than three stages, up to four layers spread along that path.

Example::

    body = EffectiveFieldCreate(layers=["conv2_block3_out"], samples=16)
    job = request_effective_field(session, settings, analysis, body)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from app.analysis.effective_field import NotMeasurable, unit_field
from app.config import Settings
from app.db import enqueue
from app.errors import Conflict, ValidationFailed
from app.models import Job
from app.reports.view import Report, derive_stages, field_axes, main_path

#: Default number of layers measured when a model has fewer stages than this.
DEFAULT_LAYER_COUNT = 4
MAX_LAYERS = 8


class EffectiveFieldCreate(BaseModel):
    """What to measure (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    layers: list[str] | None = Field(
        default=None, min_length=1, max_length=MAX_LAYERS,
        description="Top-level layers whose centre unit is measured (default: the last layer of each stage, "
        "or a few layers along the main path).",
    )
    samples: int = Field(default=16, ge=1, le=256, description="Random inputs the gradients are averaged over.")
    batch_size: int = Field(default=8, ge=1, le=64, description="Inputs per backward pass.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed of the random inputs.")


def parse_body(payload: Any) -> EffectiveFieldCreate:
    """The request body (``None`` or ``{}``: every default), or 422 ``validation_error``."""
    from app.pipeline import validation_failed

    try:
        return EffectiveFieldCreate.model_validate(payload if payload is not None else {})
    except ValidationError as exc:
        raise validation_failed(exc) from None


def _measurable(report: Report) -> list[tuple[str, dict[str, Any]]]:
    """Main-path layers (top level, in graph order) whose centre unit sees more than one pixel
    through a 2-D field, as ``unit_field`` entries."""
    found = []
    for flat in main_path(report):
        if flat.depth != 0 or flat.class_name == "InputLayer" or field_axes(flat.layer) is None:
            continue
        try:
            unit = unit_field(flat.layer)
        except NotMeasurable:
            continue
        if any(last > first for first, last in unit["box"]):
            found.append((flat.name, unit))
    return found


def default_layers(report: Report) -> list[dict[str, Any]]:
    """The stages' last layers (when there are three or more), else up to four main-path
    layers spread from the first field size to the last (the last layer of each size), as
    ``unit_field`` entries."""
    candidates = _measurable(report)
    if not candidates:
        return []
    by_name = dict(candidates)
    stage_outputs = [str(stage.get("output_layer")) for stage in derive_stages(report)]
    chosen = list(dict.fromkeys(name for name in stage_outputs if name in by_name))
    if len(chosen) >= 3:
        return [by_name[name] for name in chosen][:MAX_LAYERS]
    by_size: dict[Any, dict[str, Any]] = {}
    for _, unit in candidates:
        size = tuple(last - first for first, last in unit["box"])
        by_size.pop(size, None)
        by_size[size] = unit
    distinct = list(by_size.values())
    count = min(DEFAULT_LAYER_COUNT, len(distinct))
    if count == 1:
        return [distinct[-1]]
    picks = sorted({round(i * (len(distinct) - 1) / (count - 1)) for i in range(count)})
    return [distinct[index] for index in picks]


def chosen_layers(report: Report, names: list[str] | None) -> list[dict[str, Any]]:
    """The ``unit_field`` entries of ``names`` (or the defaults); 422 for a layer the report
    has not, or one without a measurable field."""
    input_shapes = (report.get("summary") or {}).get("input_shapes") or []
    if len(input_shapes) != 1 or not isinstance(input_shapes[0], list) or len(input_shapes[0]) != 4:
        raise ValidationFailed(
            "The effective field is measured on models with one image input (batch, height, width, channels). "
            f"Received: input shapes {input_shapes}",
            code="effective_field_unsupported",
        )
    if names is None:
        layers = default_layers(report)
        if not layers:
            raise ValidationFailed(
                "The model has no layer with a 2-D receptive field to measure.", code="effective_field_unsupported"
            )
        return layers
    top_level = {str(layer.get("name")): layer for layer in report.get("layers") or []}
    layers = []
    for name in dict.fromkeys(names):
        layer = top_level.get(name)
        if layer is None:
            raise ValidationFailed(
                f"layers: the model has no top-level layer {name!r}. Received: layers={names}"
            )
        try:
            layers.append(unit_field(layer))
        except NotMeasurable as exc:
            raise ValidationFailed(f"layers: {exc}. Received: layers={names}") from None
    return layers


def request_effective_field(session: Session, settings: Settings, analysis: Job,
                            request: EffectiveFieldCreate) -> Job:
    """Queue an effective-field job for a finished analysis; the analysis shows it as running.

    The static report must be there (409 while it is computed): the layers and their fields
    come from it. A measurement that would not fit a worker's memory is refused (422)."""
    from app.jobs.resources import check_job_resources

    if analysis.result is None:
        raise Conflict(
            "The analysis has no report yet; request the effective field when it has. "
            f"Received: status {analysis.status!r}"
        )
    layers = chosen_layers(analysis.result, request.layers)
    parameters = {
        "input_shape": (analysis.parameters or {}).get("input_shape"),
        "layers": layers,
        "samples": request.samples,
        "batch_size": request.batch_size,
        "seed": request.seed,
    }
    from app.analyses.service import check_measurement_cap

    check_measurement_cap(session, settings, analysis.tenant_id)
    check_job_resources("effective_field", analysis.result, settings, parameters, session=session)
    child = Job(
        tenant_id=analysis.tenant_id, kind="effective_field", name=analysis.name,
        architecture_id=analysis.architecture_id, parent_id=analysis.id, parameters=parameters,
        max_attempts=settings.job_max_attempts, time_limit_s=settings.effective_field_time_limit_s,
    )
    session.add(child)
    if analysis.status == "succeeded":
        analysis.status = "running"
        analysis.finished_at = None
    session.flush()
    enqueue(session, child.id)
    return child
