"""HTTP routes for analyses. Parsing and engine work run in threads, never on the event loop."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.analyses import repository, service
from app.analyses.schemas import (
    AnalysisCreate,
    AnalysisListItem,
    AnalysisOut,
    AnalysisPage,
    JobStatus,
)
from app.api.deps import SessionDep, SettingsDep, TenantDep
from app.api.docs import analysis_request_body, problem_responses
from app.architectures.endpoints import to_out as architecture_out
from app.config import Settings
from app.errors import InvalidJSON, UnsupportedFormat, ValidationFailed
from app.models import Job

router = APIRouter(prefix="/v1/analyses", tags=["analyses"])


def analysis_out(session: Any, row: Job) -> AnalysisOut:
    child = repository.latest_child(session, row.id, "gradients")
    from app.architectures import repository as arch_repo

    architecture = arch_repo.get(session, row.tenant_id, row.architecture_id or "")
    assert architecture is not None
    return AnalysisOut(
        id=row.id, status=row.status, name=row.name,  # type: ignore[arg-type]
        architecture=architecture_out(architecture),
        input_shape=(row.parameters or {}).get("input_shape"),
        report=row.result, error=row.error, progress=row.progress,
        gradient_job_id=child.id if child else None,
        created_at=row.created_at, updated_at=row.updated_at,
    )


def _validation_failed(exc: ValidationError) -> ValidationFailed:
    errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    first = errors[0]
    return ValidationFailed(f"{'.'.join(first['loc'])}: {first['msg']}", extra={"errors": errors[:50]})


def _parse_input_shape(text: str | None, settings: Settings) -> list[int | None] | None:
    if text is None or not text.strip():
        return None
    from app.ingest import parse_json_bytes

    value = parse_json_bytes(text.encode("utf-8"), settings)
    if not isinstance(value, list) or not 1 <= len(value) <= 4 or not all(
        v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in value
    ):
        raise ValidationFailed(
            f"input_shape must be a JSON list of 1 to 4 integers or nulls. Received: input_shape={text[:100]!r}"
        )
    return value


def _prepare_json(body: bytes, settings: Settings) -> tuple[service.ValidatedArchitecture, AnalysisCreate]:
    from app.ingest import ingest_bytes, parse_json_bytes

    payload = parse_json_bytes(body, settings)
    if not isinstance(payload, dict):
        raise InvalidJSON(f"The body must be a JSON object. Received: {type(payload).__name__}")
    try:
        request = AnalysisCreate.model_validate(payload)
    except ValidationError as exc:
        raise _validation_failed(exc) from None
    architecture = request.architecture
    if isinstance(architecture, str):  # the string model.to_json() returns
        architecture = parse_json_bytes(architecture.encode("utf-8"), settings)
    # Canonical JSON: the same model sent as an object or as a string is the same content.
    raw = json.dumps(architecture, sort_keys=True, separators=(",", ":")).encode("utf-8")
    ingested = ingest_bytes(raw, filename=None, settings=settings)
    return service.validate_ingested(ingested, settings, None), request


def _prepare_upload(form: Any, settings: Settings) -> service.ValidatedArchitecture:
    from app.ingest import ingest_bytes

    upload = form.file
    ingested = ingest_bytes(upload.path, filename=upload.filename, settings=settings, sha256=upload.sha256)
    return service.validate_ingested(ingested, settings, upload.path)


@router.post(
    "",
    status_code=201,
    response_model=AnalysisOut,
    summary="Analyse an architecture",
    description=(
        "Send a Keras model as JSON (`{\"architecture\": <model.to_json()>, \"input_shape\": [H, W, C], "
        "\"name\": ...}`) or upload a `.keras`, legacy `.h5` or `.json` file as multipart `file` (with optional "
        "`input_shape` as JSON text and `name`). Answers 201 with the finished static analysis, or 202 with "
        "status `queued`/`running` when work continues in a job (`measure_gradients`, or a slow analysis); "
        "`Location` points at the analysis either way."
    ),
    openapi_extra=analysis_request_body(),
    responses={202: {"model": AnalysisOut, "description": "Accepted: work continues in a job"},
               **problem_responses(400, 401, 413, 415, 422, 429)},
)
async def create_analysis(request: Request, response: Response, settings: SettingsDep,
                          session: SessionDep, tenant_id: TenantDep) -> AnalysisOut:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = None
    if content_type == "application/json" or content_type.endswith("+json"):
        body = await request.body()
        validated, parsed = await run_in_threadpool(_prepare_json, body, settings)
        input_shape, name, measure = parsed.input_shape, parsed.name, parsed.measure_gradients
    elif content_type == "multipart/form-data":
        from app.api.uploads import read_multipart

        form = await read_multipart(request, settings)
        try:
            if form.file is None:
                raise ValidationFailed("The multipart body needs a 'file' part with the model file.")
            input_shape = _parse_input_shape(form.fields.get("input_shape"), settings)
            name = form.fields.get("name") or None
            if name is not None and len(name) > 300:
                raise ValidationFailed("name must be at most 300 characters.")
            measure = form.fields.get("measure_gradients", "false").strip().lower() in {"1", "true", "yes"}
            validated = await run_in_threadpool(_prepare_upload, form, settings)
        except BaseException:
            form.discard()
            raise
    else:
        raise UnsupportedFormat(
            "Send application/json or multipart/form-data. "
            f"Received: Content-Type '{content_type or '(none)'}'"
        )

    pool = request.app.state.analysis_pool
    try:
        outcome = await run_in_threadpool(
            service.create, session, settings, pool, tenant_id=tenant_id, architecture=validated,
            input_shape=input_shape, name=name, measure_gradients=measure,
        )
    except BaseException:
        if form is not None:
            form.discard()
        raise
    await run_in_threadpool(session.commit)
    executor = getattr(request.app.state, "executor", None)
    for job_id in outcome.dispatch:
        if executor is not None:
            await run_in_threadpool(executor.dispatch, job_id)
    response.headers["Location"] = f"/v1/analyses/{outcome.analysis.id}"
    if not outcome.finished:
        response.status_code = 202
    return await run_in_threadpool(analysis_out, session, outcome.analysis)


@router.get("", response_model=AnalysisPage, summary="List analyses",
            responses=problem_responses(401, 422))
def list_analyses(
    session: SessionDep,
    tenant_id: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    status: JobStatus | None = None,
    name: Annotated[str | None, Query(max_length=300, description="Substring of the name")] = None,
    architecture_id: Annotated[str | None, Query(max_length=64)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> AnalysisPage:
    rows, total = repository.page(
        session, tenant_id, limit=limit, offset=offset, status=status, name=name,
        architecture_id=architecture_id, created_after=created_after, created_before=created_before,
    )
    items = [
        AnalysisListItem(
            id=r.id, status=r.status, name=r.name, architecture_id=r.architecture_id,  # type: ignore[arg-type]
            summary=(r.result or {}).get("summary"), created_at=r.created_at, updated_at=r.updated_at,
        )
        for r in rows
    ]
    return AnalysisPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{analysis_id}", response_model=AnalysisOut, summary="Get an analysis",
            responses=problem_responses(401, 404))
def get_analysis(analysis_id: str, session: SessionDep, tenant_id: TenantDep) -> AnalysisOut:
    return analysis_out(session, service.get(session, tenant_id, analysis_id))


@router.post("/{analysis_id}/gradients", status_code=202, response_model=AnalysisOut,
             summary="Measure gradient flow for an existing analysis (queued job)",
             responses=problem_responses(401, 404))
def measure_gradients(analysis_id: str, request: Request, response: Response, session: SessionDep,
                      tenant_id: TenantDep, settings: SettingsDep) -> AnalysisOut:
    analysis = service.get(session, tenant_id, analysis_id)
    child = service.request_gradients(session, settings, analysis)
    session.commit()
    executor = getattr(request.app.state, "executor", None)
    if executor is not None:
        executor.dispatch(child.id)
    response.headers["Location"] = f"/v1/analyses/{analysis.id}"
    return analysis_out(session, analysis)


@router.delete("/{analysis_id}", status_code=204, summary="Delete an analysis",
               responses=problem_responses(401, 404))
def delete_analysis(analysis_id: str, session: SessionDep, tenant_id: TenantDep) -> Response:
    service.delete(session, tenant_id, analysis_id)
    return Response(status_code=204)


# One body type per documented operation: uploads have their own operation (the route above
# accepts them too, for clients written before it existed).
router.add_api_route(
    "/upload",
    create_analysis,
    methods=["POST"],
    name="upload_analysis",
    status_code=201,
    response_model=AnalysisOut,
    summary="Analyse an uploaded model file",
    description=(
        "Upload a `.keras` archive, a legacy `.h5` file or a `.json` model config as the multipart part "
        "`file`, with optional form fields `input_shape` (JSON text, e.g. `[224, 224, 3]`), `name` and "
        "`measure_gradients`. Answers like `POST /v1/analyses`: 201 with the finished analysis, 202 while "
        "a job works; `Location` points at the analysis."
    ),
    responses={202: {"model": AnalysisOut, "description": "Accepted: work continues in a job"},
               **problem_responses(400, 401, 413, 415, 422, 429)},
)
