"""The one path from received bytes to a stored report: prepare -> gate -> analyse -> store.

Every entry point goes through these four steps, each done once: the API (JSON bodies and
uploads), ``convlens analyze`` (no server), the demo data and the jobs (``analyse`` only,
after their own gate).

- **prepare**: parse the bytes once (one strict JSON parse for a body; a file is read by
  :mod:`app.ingest`), check that it is a Keras model config, and take its identity: a
  file's sha256 as received, a JSON model's sha256 of its canonical form.
- **gate**: the allowlist and the static resource limits over the parsed tree, before
  anything is stored or analysed.
- **analyse**: the engine and the report-level limits; then the report is serialised once
  (:func:`encode`: the database column and the response embed the same bytes).
- **store**: the architecture (once per tenant and content) and the analysis row, flushed;
  the caller's scope commits.

Nothing here knows about HTTP. Example::

    prepared = prepare_file(Path("model.keras"), settings=settings)
    report = analyse(prepared.config, None, prepared.name, settings)
    report["summary"]["total_params"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.analysis import analyze
from app.architectures.service import get_or_create
from app.config import Settings
from app.db import EncodedDocument, insert_row, loaded_instance
from app.errors import InvalidJSON, ValidationFailed
from app.gcpause import no_cycle_collection
from app.ingest import ingest_bytes, ingest_config, parse_json_bytes
from app.ingest.shapes import parse_input_shape
from app.models import Architecture, Job
from app.models.base import new_id, utcnow
from app.security import check_report_limits
from app.security.gate import gate_architecture

InputShape = list[int | None]
#: What a client may send as an override; ``app.ingest.shapes.parse_input_shape`` checks it.
InputShapeIn = list[Any] | dict[str, list[Any]] | str
#: What is stored and analysed: one shape, or one per named input.
InputShapes = list[int | None] | dict[str, list[int | None]]


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


@dataclass(frozen=True)
class Prepared:
    """An architecture that passed the gate: its config and what identifies the content."""

    format: str
    config: dict[str, Any]
    name: str | None
    has_weights: bool
    sha256: str
    byte_size: int
    upload_path: Path | None = None

    def discard(self) -> None:
        """Remove the spooled upload (a refusal must leave no file behind)."""
        if self.upload_path is not None:
            self.upload_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class AnalysisRequest:
    """What an analysis is asked for, whatever the body's format."""

    architecture: Prepared
    input_shape: InputShapes | None
    name: str | None
    measure_gradients: bool


def check_wrapped(payload: dict[str, Any], operation: str) -> None:
    """A Keras model's JSON posted as the body itself (``model.to_json()`` unwrapped) is refused
    with what to send instead, rather than a list of its keys as "extra inputs".

    >>> check_wrapped({"class_name": "Functional", "config": {}}, "an analysis")
    Traceback (most recent call last):
    ...
    app.errors.ValidationFailed: The body is a Keras model's JSON itself (class_name 'Functional'); \
for an analysis send it as the field architecture: {"architecture": <model.to_json()>, ...}.
    """
    if "architecture" not in payload and {"class_name", "config"} <= payload.keys():
        raise ValidationFailed(
            f"The body is a Keras model's JSON itself (class_name {str(payload['class_name'])[:60]!r}); "
            f"for {operation} send it as the field architecture: "
            '{"architecture": <model.to_json()>, ...}.',
            extra={"expected": {"architecture": "<the model JSON>"}},
        )


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """A pydantic error as the API's ``validation_error`` problem (first error in the detail)."""
    errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    first = errors[0]
    where = ".".join(first["loc"]) or "body"
    return ValidationFailed(f"{where}: {first['msg']}", extra={"errors": errors[:50]})


# -- prepare -------------------------------------------------------------------------------------


def prepare_json_body(body: bytes, settings: Settings) -> AnalysisRequest:
    """``{"architecture", "input_shape"?, "name"?, "measure_gradients"?}``: parsed once, gated.

    The architecture may be the object or the string ``model.to_json()`` returns (that
    string is a second document, parsed once itself). Both are the same content.
    """
    with no_cycle_collection():
        return _prepare_json_body(body, settings)


def _prepare_json_body(body: bytes, settings: Settings) -> AnalysisRequest:
    payload = parse_json_bytes(body, settings)
    if not isinstance(payload, dict):
        raise InvalidJSON(f"The body must be a JSON object. Received: {type(payload).__name__}")
    check_wrapped(payload, "an analysis")
    try:
        request = AnalysisCreate.model_validate(payload)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    return prepare_inline(request.architecture, request.input_shape, name=request.name,
                          measure_gradients=request.measure_gradients, settings=settings)


def prepare_inline(architecture: dict[str, Any] | str, input_shape: InputShapeIn | None, *,
                   name: str | None, settings: Settings, measure_gradients: bool = False) -> AnalysisRequest:
    """An architecture sent inline in a JSON body (an analysis's or a training run's): the
    object, or the string ``model.to_json()`` returns (a second document, parsed once itself)."""
    if isinstance(architecture, str):  # the string model.to_json() returns
        architecture = parse_json_bytes(architecture.encode("utf-8"), settings)
    prepared = prepare_config(architecture, settings)
    return AnalysisRequest(
        architecture=prepared, input_shape=parse_input_shape(input_shape, settings),
        name=name, measure_gradients=measure_gradients,
    )


def prepare_upload(path: Path, *, filename: str | None, sha256: str | None, input_shape: InputShapeIn | None,
                   name: str | None, settings: Settings, measure_gradients: bool = False) -> AnalysisRequest:
    """An uploaded model file (an analysis's or a training run's ``file`` part), kept as the
    architecture's blob once stored."""
    shape = parse_input_shape(input_shape, settings)
    prepared = prepare_file(path, filename=filename, settings=settings, sha256=sha256)
    return AnalysisRequest(architecture=prepared, input_shape=shape, name=name,
                           measure_gradients=measure_gradients)


def prepare_config(config: Any, settings: Settings) -> Prepared:
    """A parsed JSON model config: checked, gated (one walk), identified by the canonical form
    of what the gate kept."""
    ingested = ingest_config(config, settings)
    return Prepared(format="json", config=ingested.config, name=ingested.name, has_weights=False,
                    sha256=ingested.sha256, byte_size=ingested.byte_size)


def prepare_file(path: Path, *, filename: str | None, settings: Settings, sha256: str | None = None,
                 keep: bool = True) -> Prepared:
    """A model file (``.keras``, ``.h5`` or ``.json``): read and gated once by :mod:`app.ingest`.

    ``sha256`` may pass the hash computed while the file streamed in. With ``keep`` the file
    is the upload to store as the architecture's blob (workers load weights from it).
    """
    with no_cycle_collection():
        ingested = ingest_bytes(path, filename=filename, settings=settings, sha256=sha256)
    return Prepared(
        format=ingested.format, config=ingested.config, name=ingested.name, has_weights=ingested.has_weights,
        sha256=ingested.sha256, byte_size=ingested.byte_size, upload_path=path if keep else None,
    )


# -- gate ----------------------------------------------------------------------------------------


def gate(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The static safety gate, one walk: allowlist, unneeded keys dropped, static limits.

    Returns the sanitised config to store, hash and analyse (the jobs' second gate).
    """
    return gate_architecture(config, settings)


# -- analyse -------------------------------------------------------------------------------------


def analyse(config: dict[str, Any], input_shape: InputShapes | None, name: str | None,
            settings: Settings) -> dict[str, Any]:
    """The static analysis of a gated config, within the report-level limits (the report)."""
    report = analyze(config, input_shape=input_shape, name=name)
    check_report_limits(report, settings)
    return report


def encode(report: dict[str, Any]) -> EncodedDocument:
    """The report serialised once: the database stores these bytes and the response embeds
    them. Nothing may change the report afterwards."""
    return EncodedDocument.encode(report)


def analyse_file(path: Path, *, input_shape: InputShapes | None = None, name: str | None = None,
                 settings: Settings) -> dict[str, Any]:
    """``convlens analyze``: prepare, gate and analyse a file in this process (nothing stored)."""
    prepared = prepare_file(path, filename=path.name, settings=settings, keep=False)
    return analyse(prepared.config, input_shape, name or prepared.name, settings)


# -- store ---------------------------------------------------------------------------------------


def store(session: Session, settings: Settings, *, tenant_id: str, request: AnalysisRequest,
          report: EncodedDocument | None, static_seconds: float | None = None,
          analysis_id: str | None = None) -> tuple[Job, Architecture]:
    """The architecture (once per tenant and content) and the analysis row, flushed.

    With a ``report`` the analysis is stored finished; without one it is stored ``queued``
    (the caller enqueues it). The caller's scope commits.
    """
    architecture = request.architecture
    now = utcnow()
    # The analysis row's values and instance come before the first write (get_or_create's
    # INSERT): on SQLite the write lock is held from there to the commit. Its architecture_id
    # is set once the architecture row is known.
    values: dict[str, Any] = {
        "id": analysis_id or new_id(), "tenant_id": tenant_id, "kind": "analysis", "status": "queued",
        "name": request.name or architecture.name, "architecture_id": None, "parent_id": None,
        "parameters": {"input_shape": request.input_shape, "measure_gradients": request.measure_gradients},
        "progress": 0.0, "progress_detail": None, "attempts": 0, "max_attempts": settings.job_max_attempts,
        "worker_id": None, "heartbeat_at": None, "cancel_requested": False,
        "time_limit_s": settings.analysis_time_limit_s, "error": None, "result": None, "result_writes": 0,
        "attempt_history": None, "dispatched_at": None, "dispatches": 0, "created_at": now, "updated_at": now,
        "started_at": None, "finished_at": None,
    }
    if report is not None:
        values.update(status="succeeded", result=report, result_writes=1, progress=1.0, started_at=now,
                      finished_at=now, progress_detail={"static_seconds": round(static_seconds or 0.0, 6)})
    analysis = loaded_instance(session, Job, values)
    row = get_or_create(
        session, settings, tenant_id=tenant_id, sha256=architecture.sha256, fmt=architecture.format,
        name=architecture.name, byte_size=architecture.byte_size, config=architecture.config,
        has_weights=architecture.has_weights, upload_path=architecture.upload_path,
    )
    values["architecture_id"] = row.id
    set_committed_value(analysis, "architecture_id", row.id)  # as loaded: no UPDATE at the flush
    insert_row(session, Job, values)
    return analysis, row
