"""HTTP routes for training runs: create (JSON, or multipart with a model file and/or an .npz),
read, events, cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import RequestScope, ScopeDep, SettingsDep, TenantDep
from app.api.docs import problem_responses
from app.api.fairness import HeldStreamingResponse, stream_threads, tenant_slots
from app.api.responses import EncodedJSON
from app.api.uploads import read_body
from app.idempotency.http import IdempotencyKeyHeader, answer_response, body_parts, claim_for, run_once
from app.idempotency.service import Answer
from app.models import TERMINAL_STATUSES
from app.training import service
from app.training.schemas import TrainingRunOut

router = APIRouter(prefix="/v1/training-runs", tags=["training"])

#: How often the event stream looks for new events (while they come) ...
POLL_S = 0.25
#: ... and at most how long it waits while the run is quiet (queued, or a slow step).
POLL_MAX_S = 2.0


@router.post(
    "",
    status_code=202,
    response_model=TrainingRunOut,
    summary="Start a short training run",
    description=(
        "The model to train is an `analysis_id`, an `architecture_id` or, in the same request, "
        "the Keras model JSON as `architecture` (analysed and stored as an analysis, whose id the "
        "run carries). Multipart/form-data takes the same fields as form fields, the model file "
        "as a `file` part and the dataset as a `dataset_file` part (`.npz` with arrays `x` and "
        "`y`, loaded without pickle). The run is queued; follow it at `Location` or stream "
        "`events_url`."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/TrainingRunCreate"}}}}},
    responses=problem_responses(400, 401, 404, 413, 415, 422, 429),
)
async def create_run(request: Request, settings: SettingsDep, scope: ScopeDep, tenant_id: TenantDep,
                     idempotency_key: IdempotencyKeyHeader = None) -> Response:
    received = await read_body(request, settings, tenant_id, other_file_fields=("dataset_file",))
    claim = claim_for(request, idempotency_key, tenant_id, settings, body_parts(received))
    created = await run_once(scope, claim, service.create_from, received, settings=settings,
                             tenant_id=tenant_id, describe=service.answer_of)
    if isinstance(created, Answer):  # a retry: the first request's answer, nothing created
        if isinstance(received, service.MultipartForm):
            received.discard()
        return answer_response(created)
    return answer_response(service.answer_of(created))


@router.get(
    "/{run_id}",
    response_model=TrainingRunOut,
    summary="A training run: progress (steps, ETA) and result",
    responses=problem_responses(401, 404),
)
async def get_run(run_id: str, scope: ScopeDep, tenant_id: TenantDep) -> Response:
    return EncodedJSON(await scope.run(service.read, tenant_id, run_id))


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=TrainingRunOut,
    summary="Stop a training run at its next step",
    responses=problem_responses(401, 404),
)
async def cancel_run(run_id: str, scope: ScopeDep, tenant_id: TenantDep) -> Response:
    return EncodedJSON(await scope.run(service.cancel_and_read, tenant_id, run_id), status_code=202)


def _sse(seq: int, kind: str, payload: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


@router.get(
    "/{run_id}/events",
    summary="Progress as server-sent events",
    description=(
        "`text/event-stream` of the run's events (`started`, `step`, `probe`, `finished`, "
        "`failed`) from the first one (or after `Last-Event-ID`), then an `end` event with the "
        "final status. Each event's `id` is its sequence number."
    ),
    responses={200: {"content": {"text/event-stream": {}}}, **problem_responses(401, 404)},
)
async def run_events(
    run_id: str,
    request: Request,
    scope: ScopeDep,
    tenant_id: TenantDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    await scope.run(service.get, tenant_id, run_id)  # 404 for other tenants
    try:
        after = int(last_event_id) if last_event_id else 0
    except ValueError:
        after = 0
    polls = RequestScope(scope.settings, None, stream_threads(request))

    async def stream() -> AsyncIterator[str]:
        # Each poll is a unit of work of its own (no connection is held between events), in
        # the streams' own threads; a quiet run is polled less and less often, down to
        # every POLL_MAX_S, and at POLL_S again as soon as events come.
        seq = after
        pause = POLL_S
        while True:
            rows, status = await polls.run(service.events_after, run_id, seq)
            for number, kind, payload in rows:
                seq = number
                yield _sse(number, kind, payload)
            if not rows and status in TERMINAL_STATUSES:
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                return
            if await request.is_disconnected():
                return
            if rows:
                pause = POLL_S
            else:
                await asyncio.sleep(pause)
                pause = min(POLL_MAX_S, pause * 1.5)

    # 429 tenant_limit before the stream starts; the slot is given back when it ends, however
    return HeldStreamingResponse(
        tenant_slots(request), tenant_id, "open_streams",
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# One body type per documented operation: a run with an uploaded dataset has its own
# operation (the route above accepts multipart too, for clients written before it existed).
router.add_api_route(
    "/upload",
    create_run,
    methods=["POST"],
    name="upload_training_run",
    status_code=202,
    response_model=TrainingRunOut,
    summary="Start a short training run on an uploaded model file and/or dataset",
    description=(
        "The fields of `POST /v1/training-runs` as multipart form fields (`input_shape` as JSON text "
        "or `224,224,3`), the model as the part `file` (a `.keras`, `.h5` or `.json` file, analysed "
        "and stored as an analysis in the same request) instead of `analysis_id` or "
        "`architecture_id`, and the dataset as the part `dataset_file`: an `.npz` with arrays `x` and "
        "`y`, loaded without pickle (without it the run trains on synthetic data). The run is "
        "queued; follow it at `Location` or stream `events_url`."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "The model to train: .keras, legacy .h5 or .json."},
            "name": {"type": "string", "description": "Name of the analysis stored for the file."},
            "analysis_id": {"type": "string", "description": "Or train an analysed architecture."},
            "architecture_id": {"type": "string", "description": "Or a stored architecture."},
            "steps": {"type": "integer", "minimum": 1},
            "batch_size": {"type": "integer", "minimum": 1},
            "optimizer": {"type": "string", "enum": ["sgd", "adam", "rmsprop"]},
            "learning_rate": {"type": "number"},
            "input_shape": {"type": "string", "description": "JSON list, e.g. [32, 32, 3]"},
            "seed": {"type": "integer", "minimum": 0},
            "probe_every": {"type": "integer", "minimum": 1},
            "overfit_steps": {"type": "integer", "minimum": 0},
            "overfit_check": {"type": "boolean"},
            "dataset": {"type": "string", "enum": ["synthetic", "npz"],
                        "description": "npz when dataset_file is sent (the default then)."},
            "dataset_file": {"type": "string", "format": "binary",
                             "description": ".npz with arrays x and y"},
        },
    }}}}},
    responses=problem_responses(400, 401, 404, 413, 415, 422, 429),
)
