"""Creating, reading and cancelling training runs. Services flush; the request commits.

Example::

    body = TrainingRunCreate(architecture_id=a.id)
    with session_scope(settings, dispatch=executor.dispatch) as session:
        run = create(session, settings, tenant_id="default", request=body)
    # committed, then dispatched
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import pipeline
from app.analyses import repository as analyses
from app.api.uploads import MultipartForm, UploadedFile
from app.architectures import repository as architectures
from app.config import Settings
from app.db import discard_on_rollback, enqueue
from app.errors import InvalidJSON, NotFound, PayloadTooLarge, RateLimited, ValidationFailed
from app.idempotency.service import Answer
from app.ingest import parse_json_bytes
from app.ingest.npz import inspect_npz
from app.ingest.shapes import parse_input_shape
from app.jobs import repository as jobs
from app.models import Job
from app.models.base import new_id, utcnow
from app.pipeline import validation_failed
from app.storage.files import disk, storage_errors
from app.storage.usage import check_quota, datasets_dir
from app.training import repository
from app.training.schemas import TrainingProgress, TrainingRunCreate, TrainingRunOut


def _is_npz(upload: UploadedFile) -> bool:
    """A NumPy ``.npz`` archive (a zip of ``.npy`` members): a dataset, not a model."""
    if (upload.filename or "").lower().endswith(".npz"):
        return True
    try:
        with zipfile.ZipFile(upload.path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names) and all(name.endswith(".npy") for name in names)


def create_from(session: Session, received: bytes | MultipartForm, *, settings: Settings,
                tenant_id: str) -> tuple[str, bytes]:
    """``POST /v1/training-runs``: a JSON body, or form fields with an ``.npz`` part on disk.

    Returns the run's id and its response body; the run is enqueued (dispatched after the
    caller's scope commits).
    """
    dataset_file = None
    model_file: UploadedFile | None = None
    try:
        if isinstance(received, bytes | bytearray):
            payload = parse_json_bytes(bytes(received), settings)
            if not isinstance(payload, dict):
                raise InvalidJSON(f"The body must be a JSON object. Received: {type(payload).__name__}")
            pipeline.check_wrapped(payload, "a training run")
        else:
            payload = _form_values(received.fields)
            if "architecture" in payload:
                raise ValidationFailed(
                    "In a multipart body the model goes in the file part 'file' (curl: "
                    "-F file=@model.keras); send an inline architecture as a JSON body."
                )
            if "dataset_file" in received.files:
                dataset_file = received.files["dataset_file"].path
                payload.setdefault("dataset", "npz")
            model_file = received.files.get("file")
        try:
            body = TrainingRunCreate.model_validate(payload)
        except ValidationError as exc:
            raise validation_failed(exc) from None
        if model_file is not None and dataset_file is None and _is_npz(model_file):
            raise ValidationFailed(
                f"The file {(model_file.filename or 'data.npz')[:100]!r} sent as 'file' is an .npz "
                "dataset; send it as the part 'dataset_file' (curl: -F dataset_file=@data.npz). "
                "'file' is for the model itself (.keras, .h5 or .json).",
                code="wrong_file_field", extra={"expected_field": "dataset_file"},
            )
        if model_file is not None and body.has_source:
            raise ValidationFailed(
                "A model 'file' was uploaded and the body also names a model "
                "(analysis_id or architecture_id): send one of them."
            )
        if model_file is None and not body.has_source:
            raise ValidationFailed(
                "Say which model to train: analysis_id, architecture_id, architecture (the "
                "Keras model JSON) or, in a multipart body, the model file as the part 'file'."
            )
        model = None
        if body.architecture is not None:
            model = pipeline.prepare_inline(body.architecture, body.input_shape, name=body.name,
                                            settings=settings)
        elif model_file is not None:
            model = pipeline.prepare_upload(model_file.path, filename=model_file.filename,
                                            sha256=model_file.sha256, input_shape=body.input_shape,
                                            name=body.name, settings=settings)
        run = create(session, settings, tenant_id=tenant_id, request=body, dataset_file=dataset_file,
                     model=model)
    except BaseException:
        if not isinstance(received, bytes | bytearray):
            received.discard()
        raise
    return run.id, encode(run)


def answer_of(created: tuple[str, bytes]) -> Answer:
    """The HTTP answer to a queued run: 202 with its Location."""
    run_id, body = created
    return Answer(202, body, f"/v1/training-runs/{run_id}")


def _form_values(fields: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, text in fields.items():
        text = text.strip()
        values[key] = text if text != "" else None  # input_shape text: parse_input_shape reads it
    return {k: v for k, v in values.items() if v is not None}


def create(
    session: Session,
    settings: Settings,
    *,
    tenant_id: str,
    request: TrainingRunCreate,
    dataset_file: Path | None = None,
    model: pipeline.AnalysisRequest | None = None,
) -> Job:
    """Validate, store the dataset (if any) and add the queued job row (not committed).

    ``model``: an inline architecture or an uploaded file, prepared and gated by the
    pipeline; it is analysed and stored as an analysis (and its architecture) that the run
    trains, all flushed with the run.
    """
    if request.steps > settings.training_max_steps:
        raise ValidationFailed(
            f"steps must be at most {settings.training_max_steps}. Received: steps={request.steps}"
        )
    if request.batch_size > settings.training_max_batch_size:
        raise ValidationFailed(
            f"batch_size must be at most {settings.training_max_batch_size}. Received: "
            f"batch_size={request.batch_size}"
        )
    if request.dataset == "npz" and dataset_file is None:
        raise ValidationFailed(
            "dataset 'npz' needs the .npz file as the multipart part 'dataset_file'."
        )
    if request.dataset == "synthetic" and dataset_file is not None:
        raise ValidationFailed(
            "A dataset_file was uploaded but dataset is 'synthetic'. Send dataset=npz."
        )
    analysis_id = None
    architecture_id: str | None = None
    report: dict[str, Any] | None = None
    analysed_s = 0.0
    if model is not None:  # analysed here, stored once every check passed
        input_shape = model.input_shape
        analysis_id = new_id()
        started = time.perf_counter()
        report = pipeline.analyse(model.architecture.config, model.input_shape,
                                  model.name or model.architecture.name, settings)
        analysed_s = time.perf_counter() - started
    else:
        input_shape = parse_input_shape(request.input_shape, settings)
        if request.analysis_id is not None:
            analysis = analyses.get(session, tenant_id, request.analysis_id)
            if analysis is None:
                raise NotFound(f"No analysis with id '{request.analysis_id}'.")
            architecture_id = analysis.architecture_id
            analysis_id = analysis.id
            if input_shape is None:
                input_shape = (analysis.parameters or {}).get("input_shape")
        else:
            architecture_id = request.architecture_id
        if architecture_id is None or architectures.get(session, tenant_id, architecture_id) is None:
            raise NotFound(f"No architecture with id '{architecture_id}'.")
    active = repository.active_count(session, tenant_id)
    if active >= settings.max_concurrent_training_per_tenant:
        raise RateLimited(
            f"At most {settings.max_concurrent_training_per_tenant} training runs may be "
            "queued or running at once. "
            f"Received: a new run while {active} are active."
        )
    job_id = new_id()
    parameters: dict[str, Any] = request.model_dump(exclude={"analysis_id", "architecture_id", "architecture", "name"})
    parameters["input_shape"] = input_shape
    parameters["analysis_id"] = analysis_id
    if parameters["learning_rate"] is None:
        parameters.pop("learning_rate")
    # the run must fit a worker's memory (the worker checks again before it builds the model)
    if report is not None:
        from app.jobs.resources import check_job_resources

        check_job_resources("training", report, settings, parameters, session=session)
    else:
        assert architecture_id is not None
        check_training_resources(session, settings, tenant_id=tenant_id, architecture_id=architecture_id,
                                 analysis_id=analysis_id, parameters=parameters)
    if dataset_file is not None:
        size = dataset_file.stat().st_size
        if size > settings.max_npz_bytes:
            dataset_file.unlink(missing_ok=True)
            raise PayloadTooLarge(
                f"The dataset is larger than {settings.max_npz_bytes} bytes. Received: {size} bytes"
            )
        inspect_npz(dataset_file, settings)  # from its headers, before anything is stored
        check_quota(session, settings, tenant_id=tenant_id, adding=size)
        target = datasets_dir(settings) / f"{job_id}.npz"
        with storage_errors("the dataset", target.parent):
            disk.place(dataset_file, target)
        discard_on_rollback(session, target)
        parameters["npz_path"] = str(target.resolve())
    if model is not None and report is not None:
        # the analysis and its architecture, as POST /v1/analyses stores them: the run's
        # report page, and the blob a worker loads an uploaded file's weights from
        _, architecture = pipeline.store(session, settings, tenant_id=tenant_id, request=model,
                                         report=pipeline.encode(report), static_seconds=analysed_s,
                                         analysis_id=analysis_id)
        architecture_id = architecture.id
    job = Job(
        id=job_id,
        tenant_id=tenant_id,
        kind="training",
        name=request.name or request.analysis_id or architecture_id,
        architecture_id=architecture_id,
        parent_id=None,
        parameters=parameters,
        max_attempts=settings.job_max_attempts,
        time_limit_s=settings.training_time_limit_s,
        progress_detail={"steps_done": 0, "steps": request.steps, "phase": "queued"},
    )
    session.add(job)
    session.flush()
    enqueue(session, job.id)
    return job


def check_training_resources(session: Session, settings: Settings, *, tenant_id: str, architecture_id: str,
                             analysis_id: str | None, parameters: dict[str, Any]) -> None:
    """422 ``resource_limit_exceeded`` when the run would not fit a worker's memory: the
    analysis's report when it is at the run's input shape, else the architecture analysed
    at that shape (milliseconds; also refuses an input shape the model cannot take)."""
    from app.jobs.resources import check_job_resources
    from app.jobs.steps import analyse

    input_shape = parameters.get("input_shape")
    analysis = analyses.get(session, tenant_id, analysis_id) if analysis_id else None
    if analysis is not None and analysis.result is not None and (
        (analysis.parameters or {}).get("input_shape") == input_shape
    ):
        report = analysis.result
    else:
        architecture = architectures.get(session, tenant_id, architecture_id)
        assert architecture is not None
        report = analyse(architecture.config, input_shape, architecture.name, settings)
    check_job_resources("training", report, settings, parameters, session=session)


def get(session: Session, tenant_id: str, run_id: str) -> Job:
    run = repository.get(session, tenant_id, run_id)
    if run is None:
        raise NotFound(f"No training run with id '{run_id}'.")
    return run


def read(session: Session, tenant_id: str, run_id: str) -> bytes:
    """``GET /v1/training-runs/{id}`` as its response body."""
    return encode(get(session, tenant_id, run_id))


def cancel_and_read(session: Session, tenant_id: str, run_id: str) -> bytes:
    """``POST /v1/training-runs/{id}/cancel`` as its response body."""
    return encode(cancel(session, tenant_id, run_id))


def events_after(session: Session, run_id: str, after_seq: int) -> tuple[list[tuple[int, str, dict[str, Any]]], str]:
    """The run's events after ``after_seq`` and its status (the event stream's poll)."""
    rows = jobs.events_after(session, run_id, after_seq)
    return [(r.seq, r.kind, r.payload) for r in rows], repository.status_of(session, run_id)


def encode(run: Job) -> bytes:
    return to_out(run).model_dump_json().encode("utf-8")


def cancel(session: Session, tenant_id: str, run_id: str) -> Job:
    """Ask the run to stop at its next step (a queued run ends cancelled at once)."""
    run = get(session, tenant_id, run_id)
    if run.status in ("succeeded", "failed", "cancelled"):
        return run
    run.cancel_requested = True
    if run.status == "queued":
        run.status = "cancelled"
        run.finished_at = utcnow()
    run.updated_at = utcnow()
    session.flush()
    return run


def to_out(run: Job) -> TrainingRunOut:
    detail = run.progress_detail or {}
    params = dict(run.parameters or {})
    params.pop("npz_path", None)
    analysis_id = params.pop("analysis_id", None)
    steps = int(detail.get("steps") or params.get("steps") or 0)
    return TrainingRunOut(
        id=run.id,
        status=run.status,  # type: ignore[arg-type]
        architecture_id=run.architecture_id,
        analysis_id=analysis_id,
        parameters=params,
        progress=TrainingProgress(
            steps_done=int(detail.get("steps_done") or 0),
            steps=steps,
            fraction=run.progress or 0.0,
            eta_s=detail.get("eta_s"),
            loss=detail.get("loss"),
            phase=detail.get("phase"),
            message=detail.get("message"),
        ),
        attempts=run.attempts,
        time_limit_s=run.time_limit_s,
        cancel_requested=run.cancel_requested,
        result=run.result,
        error=run.error,
        events_url=f"/v1/training-runs/{run.id}/events",
        created_at=run.created_at,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )
