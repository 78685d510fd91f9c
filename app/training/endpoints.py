"""HTTP routes for training runs: create (JSON or multipart with an .npz), read, events, cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionDep, SettingsDep, TenantDep
from app.api.docs import problem_responses
from app.db import session_scope
from app.errors import InvalidJSON, UnsupportedFormat, ValidationFailed
from app.jobs import repository as jobs
from app.models import TERMINAL_STATUSES, Job
from app.training import service
from app.training.schemas import TrainingRunCreate, TrainingRunOut

router = APIRouter(prefix="/v1/training-runs", tags=["training"])

#: How often the event stream looks for new events.
POLL_S = 0.25


def _invalid(exc: ValidationError) -> ValidationFailed:
    errors = [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    first = errors[0]
    where = ".".join(first["loc"]) or "body"
    return ValidationFailed(f"{where}: {first['msg']}", extra={"errors": errors[:50]})


def _form_values(fields: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, text in fields.items():
        text = text.strip()
        if key in ("input_shape",):
            try:
                values[key] = json.loads(text) if text else None
            except json.JSONDecodeError as exc:
                raise ValidationFailed(
                    f"input_shape must be a JSON list. Received: {text[:100]!r}"
                ) from exc
        else:
            values[key] = text if text != "" else None
    return {k: v for k, v in values.items() if v is not None}


@router.post(
    "",
    status_code=202,
    response_model=TrainingRunOut,
    summary="Start a short training run",
    description=(
        "JSON body, or multipart/form-data with the same fields as form fields and the dataset "
        "as a "
        "`dataset_file` part (`.npz` with arrays `x` and `y`, loaded without pickle). The run is "
        "queued; follow it at `Location` or stream `events_url`."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/TrainingRunCreate"}}}}},
    responses=problem_responses(400, 401, 404, 413, 415, 422, 429),
)
async def create_run(
    request: Request,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    tenant_id: TenantDep,
) -> TrainingRunOut:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    dataset_file = None
    form = None
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidJSON(f"The body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise InvalidJSON(f"The body must be a JSON object. Received: {type(payload).__name__}")
    elif content_type == "multipart/form-data":
        from app.api.uploads import read_multipart

        form = await read_multipart(request, settings, file_field="dataset_file")
        payload = _form_values(form.fields)
        if form.file is not None:
            dataset_file = form.file.path
            payload.setdefault("dataset", "npz")
    else:
        raise UnsupportedFormat(
            "Send application/json or multipart/form-data. Received: Content-Type "
            f"'{content_type or '(none)'}'"
        )
    try:
        try:
            body = TrainingRunCreate.model_validate(payload)
        except ValidationError as exc:
            raise _invalid(exc) from None
        run = await run_in_threadpool(
            service.create,
            session,
            settings,
            tenant_id=tenant_id,
            request=body,
            dataset_file=dataset_file,
        )
    except BaseException:
        if form is not None:
            form.discard()
        raise
    await run_in_threadpool(session.commit)  # enqueue only after commit
    executor = getattr(request.app.state, "executor", None)
    if executor is not None:
        await run_in_threadpool(executor.dispatch, run.id)
    response.headers["Location"] = f"/v1/training-runs/{run.id}"
    return service.to_out(run)


@router.get(
    "/{run_id}",
    response_model=TrainingRunOut,
    summary="A training run: progress (steps, ETA) and result",
    responses=problem_responses(401, 404),
)
def get_run(run_id: str, session: SessionDep, tenant_id: TenantDep) -> TrainingRunOut:
    return service.to_out(service.get(session, tenant_id, run_id))


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=TrainingRunOut,
    summary="Stop a training run at its next step",
    responses=problem_responses(401, 404),
)
def cancel_run(run_id: str, session: SessionDep, tenant_id: TenantDep) -> TrainingRunOut:
    run = service.cancel(session, tenant_id, run_id)
    session.commit()
    return service.to_out(run)


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
    settings: SettingsDep,
    session: SessionDep,
    tenant_id: TenantDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    await run_in_threadpool(service.get, session, tenant_id, run_id)  # 404 for other tenants
    try:
        after = int(last_event_id) if last_event_id else 0
    except ValueError:
        after = 0

    def read(after_seq: int) -> tuple[list[tuple[int, str, dict[str, Any]]], str]:
        with session_scope(settings) as db:
            rows = jobs.events_after(db, run_id, after_seq)
            status = db.get(Job, run_id).status  # type: ignore[union-attr]
            return [(r.seq, r.kind, r.payload) for r in rows], status

    async def stream() -> AsyncIterator[str]:
        seq = after
        while True:
            rows, status = await run_in_threadpool(read, seq)
            for number, kind, payload in rows:
                seq = number
                yield _sse(number, kind, payload)
            if not rows and status in TERMINAL_STATUSES:
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                return
            if await request.is_disconnected():
                return
            if not rows:
                await asyncio.sleep(POLL_S)

    return StreamingResponse(
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
    summary="Start a short training run on an uploaded dataset",
    description=(
        "The fields of `POST /v1/training-runs` as multipart form fields (`input_shape` as JSON text) "
        "and the dataset as the part `dataset_file`: an `.npz` with arrays `x` and `y`, loaded without "
        "pickle. The run is queued; follow it at `Location` or stream `events_url`."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["dataset_file"],
        "properties": {
            "analysis_id": {"type": "string", "description": "Train the analysed architecture."},
            "architecture_id": {"type": "string", "description": "Or a stored architecture."},
            "steps": {"type": "integer", "minimum": 1},
            "batch_size": {"type": "integer", "minimum": 1},
            "optimizer": {"type": "string", "enum": ["sgd", "adam", "rmsprop"]},
            "learning_rate": {"type": "number"},
            "input_shape": {"type": "string", "description": "JSON list, e.g. [32, 32, 3]"},
            "seed": {"type": "integer", "minimum": 0},
            "probe_every": {"type": "integer", "minimum": 1},
            "overfit_steps": {"type": "integer", "minimum": 0},
            "dataset_file": {"type": "string", "format": "binary",
                             "description": ".npz with arrays x and y"},
        },
    }}}}},
    responses=problem_responses(400, 401, 404, 413, 415, 422, 429),
)
