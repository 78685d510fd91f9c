"""HTTP routes for analyses: each route reads its input and makes one service call.

The service call is one thread hop (:meth:`app.api.deps.RequestScope.run`) that does the
work, commits, dispatches the jobs it enqueued and encodes the response body; the routes
only translate HTTP. The body is read before that hop, so no database connection waits on
a slow client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError

from app.analyses import service
from app.analyses.schemas import AnalysisOut, AnalysisPage, JobStatus
from app.api.deps import CallerDep, ScopeDep, SettingsDep, TenantDep
from app.api.docs import analysis_request_body, problem_responses
from app.api.responses import EncodedJSON
from app.api.uploads import MultipartForm, read_body
from app.idempotency.http import (
    IdempotencyKeyHeader,
    answer_response,
    body_parts,
    claim_for,
    run_once,
    twin_answer,
)
from app.idempotency.service import Answer, guarded

router = APIRouter(prefix="/v1/analyses", tags=["analyses"])


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
async def create_analysis(request: Request, caller: CallerDep,
                          idempotency_key: IdempotencyKeyHeader = None) -> Response:
    settings, scope, tenant_id = caller
    received = await read_body(request, settings, tenant_id)
    claim = claim_for(request, idempotency_key, tenant_id, settings, body_parts(received))
    window = service.SyncWindow(settings.sync_analysis_timeout_s)
    try:
        outcome = await scope.run_within(
            window, guarded(service.create, claim, service.answer_of), received, settings=settings,
            tenant_id=tenant_id, fallback=guarded(service.queue_instead, claim, service.answer_of),
            # an upload's reading waits on files and a child process, not on this process's CPU
            use_lane=not isinstance(received, MultipartForm))
    except IntegrityError as exc:
        outcome = await twin_answer(scope, claim, exc)
    if isinstance(outcome, Answer):  # a retry: the first request's answer, nothing created
        if isinstance(received, MultipartForm):
            received.discard()
        return answer_response(outcome)
    return answer_response(service.answer_of(outcome))


@router.get("", response_model=AnalysisPage, summary="List analyses",
            responses=problem_responses(401, 422))
async def list_analyses(
    scope: ScopeDep,
    tenant_id: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    status: JobStatus | None = None,
    name: Annotated[str | None, Query(max_length=300, description="Substring of the name")] = None,
    architecture_id: Annotated[str | None, Query(max_length=64)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> Response:
    return EncodedJSON(await scope.run(
        service.page, tenant_id, limit=limit, offset=offset, status=status, name=name,
        architecture_id=architecture_id, created_after=created_after, created_before=created_before,
    ))


@router.get("/{analysis_id}", response_model=AnalysisOut, summary="Get an analysis",
            responses=problem_responses(401, 404))
async def get_analysis(analysis_id: str, scope: ScopeDep, tenant_id: TenantDep) -> Response:
    return EncodedJSON(await scope.run(service.read, tenant_id, analysis_id))


@router.post("/{analysis_id}/gradients", status_code=202, response_model=AnalysisOut,
             summary="Measure gradient flow for an existing analysis (queued job)",
             responses=problem_responses(401, 404))
async def measure_gradients(analysis_id: str, request: Request, scope: ScopeDep, tenant_id: TenantDep,
                            settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None) -> Response:
    location = f"/v1/analyses/{analysis_id}"
    claim = claim_for(request, idempotency_key, tenant_id, settings, [])
    body = await run_once(scope, claim, service.measure_gradients, settings, tenant_id, analysis_id,
                          describe=lambda body: Answer(202, body, location))
    if isinstance(body, Answer):
        return answer_response(body)
    return EncodedJSON(body, status_code=202, headers={"Location": location})


@router.post(
    "/{analysis_id}/effective-field", status_code=202, response_model=AnalysisOut,
    summary="Measure the effective receptive field of chosen layers (queued job)",
    description=(
        "Optional JSON body `{\"layers\": [...], \"samples\": 16, \"batch_size\": 8, \"seed\": 0}`. "
        "Queues a TensorFlow job that measures how much each input pixel influences the centre unit of each "
        "layer (default: the last layer of each stage), with the uploaded weights when the file had them. "
        "The result appears as `report.effective_field` of the analysis at `Location`."
    ),
    openapi_extra={"requestBody": {"required": False, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/EffectiveFieldCreate"}}}}},
    responses=problem_responses(401, 404, 409, 422),
)
async def measure_effective_field(analysis_id: str, request: Request, scope: ScopeDep, tenant_id: TenantDep,
                                  settings: SettingsDep) -> Response:
    received = await request.body()
    body = await scope.run(service.measure_effective_field, settings, tenant_id, analysis_id, received)
    return EncodedJSON(body, status_code=202, headers={"Location": f"/v1/analyses/{analysis_id}"})


@router.delete("/{analysis_id}", status_code=204, summary="Delete an analysis",
               responses=problem_responses(401, 404))
async def delete_analysis(analysis_id: str, scope: ScopeDep, tenant_id: TenantDep) -> Response:
    await scope.run(service.delete, tenant_id, analysis_id)
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
