"""Creating and reading analyses.

A static analysis is pure Python and normally finishes inside the request (201), in the one
thread that prepares, gates, analyses, stores and commits it. If the engine runs longer than
``sync_analysis_timeout_s`` the request stops waiting (:class:`SyncWindow`): the analysis is
stored ``queued`` and handed to the job executor (202). The thread that was computing it may
still finish first; whichever writer claims the row first wins (the write is fenced on the
row's status).

Nothing is written to the database until the input has been parsed, gated and (for the
synchronous path) analysed: a bad request leaves no rows behind. Services flush and enqueue
jobs; the request scope commits, then dispatches them.

Example::

    request = pipeline.prepare_json_body(body, settings)
    outcome = create(session, settings, tenant_id="default", request=request)
    outcome.finished, outcome.analysis.result["summary"]
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app import pipeline
from app.analyses import repository
from app.api.responses import dumps
from app.api.uploads import MultipartForm
from app.architectures import repository as architectures
from app.architectures import service as architectures_service
from app.config import Settings
from app.db import EncodedDocument, enqueue, session_scope
from app.errors import DomainError, NotFound, TenantLimitReached, ValidationFailed
from app.idempotency.service import Answer
from app.models import Architecture, Job

log = logging.getLogger("convlens.analyses")


@dataclass
class CreateOutcome:
    """A stored analysis and its response body (``AnalysisOut``, encoded in the service's thread)."""

    analysis: Job
    finished: bool
    body: bytes


#: How often a request whose window is shorter than this looks again while its body is still
#: being prepared (the window opens when the engine starts).
_PREPARING_TICK = 0.01


class SyncWindow:
    """How long a request waits for the engine, shared by the request and the analysing thread.

    The thread calls :meth:`opened` just before the engine runs and :meth:`close` right after;
    the request, when the window has expired, calls :meth:`give_up`. Exactly one of
    ``close`` and ``give_up`` wins: a thread that lost stores its report (or failure) on the
    queued row the request stored instead, once :meth:`handed_over` says that row is
    committed.

    >>> window = SyncWindow(timeout_s=5.0)
    >>> window.opened("prepared"); window.close(), window.give_up()
    (True, False)
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.request: Any = None
        self.opened_at: float | None = None
        self._lock = threading.Lock()
        self._state = "preparing"  # -> analysing -> storing | abandoned
        self._handed_over = threading.Event()
        self.queued_id: str | None = None

    def opened(self, request: Any) -> None:
        with self._lock:
            self.request, self.opened_at, self._state = request, time.monotonic(), "analysing"

    def remaining(self) -> float:
        """Seconds the request may still wait: what is left of the window once it has opened;
        before that all of it (at least :data:`_PREPARING_TICK`, when the request looks again)."""
        if self.opened_at is None:
            return max(self.timeout_s, _PREPARING_TICK)
        return max(0.0, self.opened_at + self.timeout_s - time.monotonic())

    def close(self) -> bool:
        """The engine is done: True if the request still waits for this thread's answer."""
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "storing"
            return True

    def give_up(self) -> bool:
        """The request stops waiting: True if the thread had not started storing."""
        with self._lock:
            if self._state != "analysing":
                return False
            self._state = "abandoned"
            return True

    def handed_over(self, failed: bool = False) -> None:
        """The queued row (``queued_id``) is committed; ``failed``: it is not, drop the late result."""
        if failed:
            self.queued_id = None
        self._handed_over.set()

    def wait_handed_over(self, timeout_s: float = 120.0) -> str | None:
        return self.queued_id if self._handed_over.wait(timeout_s) else None


def create(session: Session, received: bytes | MultipartForm | pipeline.AnalysisRequest, *,
           settings: Settings, tenant_id: str, window: SyncWindow | None = None,
           analysis_id: str | None = None) -> CreateOutcome | None:
    """Prepare, gate, analyse and store (the caller's scope commits and dispatches).

    ``received`` is a JSON body, a multipart form (its file already on disk) or a prepared
    request. Returns ``None`` when ``window`` expired first: the request then stores the
    analysis queued (:func:`queue_instead`) and this thread writes its late result there.
    """
    request = prepare(received, settings)
    if window is not None:
        window.opened(request)
    started = time.perf_counter()
    try:
        report = pipeline.encode(pipeline.analyse(request.architecture.config, request.input_shape,
                                                  request.name or request.architecture.name, settings))
    except DomainError as exc:
        if window is not None and not window.close():
            _write_late(settings, window, error=exc.to_problem())
            return None
        request.architecture.discard()
        raise
    except Exception as exc:
        if window is not None and not window.close():
            _write_late(settings, window, error={"code": "internal_error", "detail": repr(exc)})
            return None
        raise
    elapsed = time.perf_counter() - started
    if window is not None and not window.close():
        _write_late(settings, window, report=report)
        return None
    analysis, architecture = pipeline.store(session, settings, tenant_id=tenant_id, request=request,
                                            report=report, static_seconds=elapsed, analysis_id=analysis_id)
    return _finish(session, settings, analysis, architecture, request, finished=True)


def prepare(received: bytes | MultipartForm | pipeline.AnalysisRequest,
            settings: Settings) -> pipeline.AnalysisRequest:
    """The pipeline's prepare and gate steps for what the request received."""
    if isinstance(received, pipeline.AnalysisRequest):
        return received
    if isinstance(received, bytes | bytearray):
        return pipeline.prepare_json_body(bytes(received), settings)
    try:
        return _prepare_form(received, settings)
    except BaseException:
        received.discard()
        raise


def _prepare_form(form: MultipartForm, settings: Settings) -> pipeline.AnalysisRequest:
    """A multipart body: the ``file`` part (streamed to disk) with ``input_shape``, ``name``
    and ``measure_gradients`` fields."""
    if form.file is None:
        raise ValidationFailed("The multipart body needs a 'file' part with the model file.")
    name = form.fields.get("name") or None
    if name is not None and len(name) > 300:
        raise ValidationFailed("name must be at most 300 characters.")
    measure = form.fields.get("measure_gradients", "false").strip().lower() in {"1", "true", "yes"}
    upload = form.file
    return pipeline.prepare_upload(upload.path, filename=upload.filename, sha256=upload.sha256,
                                   input_shape=form.fields.get("input_shape"), name=name,
                                   measure_gradients=measure, settings=settings)


def queue_instead(session: Session, window: SyncWindow, *, settings: Settings, tenant_id: str,
                  analysis_id: str | None = None) -> CreateOutcome:
    """Store the analysis queued for a worker: the engine outran the request's window. The
    thread still analysing writes its late result to this row (``window.queued_id``)."""
    request: pipeline.AnalysisRequest = window.request
    analysis, architecture = pipeline.store(session, settings, tenant_id=tenant_id, request=request,
                                            report=None, analysis_id=analysis_id)
    window.queued_id = analysis.id
    enqueue(session, analysis.id)
    return _finish(session, settings, analysis, architecture, request, finished=False)


def answer_of(outcome: CreateOutcome) -> Answer:
    """The HTTP answer to a created analysis: 201 when finished, 202 while a job works."""
    return Answer(201 if outcome.finished else 202, outcome.body, f"/v1/analyses/{outcome.analysis.id}")


def _finish(session: Session, settings: Settings, analysis: Job, architecture: Architecture,
            request: pipeline.AnalysisRequest, *, finished: bool) -> CreateOutcome:
    gradient_job_id = None
    if request.measure_gradients:
        gradient_job_id = request_gradients(session, settings, analysis).id
    return CreateOutcome(analysis=analysis, finished=finished and not request.measure_gradients,
                         body=encode_analysis(analysis, architecture, gradient_job_id))


def _write_late(settings: Settings, window: SyncWindow, *, report: EncodedDocument | None = None,
                error: dict[str, Any] | None = None) -> None:
    """Store a result that finished after the request answered 202, unless a worker claimed it."""
    analysis_id = window.wait_handed_over()
    if analysis_id is None:
        return
    try:
        with session_scope(settings) as session:
            repository.write_late_result(session, analysis_id, report=report, error=error)
    except Exception:  # noqa: BLE001 - the queued job still runs in a worker
        log.exception("could not store the late result of analysis %s", analysis_id)


#: The TensorFlow measurements of an analysis (queued jobs that allocate): one per-tenant cap.
MEASUREMENT_KINDS = ("gradients", "effective_field")


def check_measurement_cap(session: Session, settings: Settings, tenant_id: str) -> None:
    """A tenant with ``max_queued_gradients_per_tenant`` measurements (gradients or effective
    field) queued or running is refused (429 ``tenant_limit``)."""
    active = sum(repository.active_count(session, tenant_id, kind) for kind in MEASUREMENT_KINDS)
    if active >= settings.max_queued_gradients_per_tenant:
        raise TenantLimitReached(
            f"At most {settings.max_queued_gradients_per_tenant} measurements (gradients, effective "
            f"field) per tenant may be queued or running at once. Received: one more while {active} "
            "are; retry when one ends.",
            limit="queued_gradients", maximum=settings.max_queued_gradients_per_tenant, retry_after=30,
        )


def request_gradients(session: Session, settings: Settings, analysis: Job) -> Job:
    """Queue a measured-gradients job for an analysis; the analysis shows it as running.

    A model whose measurement would not fit a worker's memory is refused (422
    ``resource_limit_exceeded``); the worker checks again before it builds the model. A tenant
    with ``max_queued_gradients_per_tenant`` measurements queued or running is refused (429
    ``tenant_limit``), so one tenant's backlog never delays another's by more than that."""
    from app.jobs.resources import check_job_resources

    check_measurement_cap(session, settings, analysis.tenant_id)
    if analysis.result is not None:
        check_job_resources("gradients", analysis.result, settings, session=session)
    child = Job(
        tenant_id=analysis.tenant_id, kind="gradients", name=analysis.name,
        architecture_id=analysis.architecture_id, parent_id=analysis.id,
        parameters={"input_shape": (analysis.parameters or {}).get("input_shape")},
        max_attempts=settings.job_max_attempts, time_limit_s=settings.gradient_time_limit_s,
    )
    session.add(child)
    if analysis.status == "succeeded":
        analysis.status = "running"
        analysis.finished_at = None
    params = dict(analysis.parameters or {})
    params["measure_gradients"] = True
    analysis.parameters = params
    session.flush()
    enqueue(session, child.id)
    return child


def get(session: Session, tenant_id: str, analysis_id: str) -> Job:
    analysis = repository.get(session, tenant_id, analysis_id)
    if analysis is None:
        raise NotFound(f"No analysis with id '{analysis_id}'.")
    return analysis


def read(session: Session, tenant_id: str, analysis_id: str) -> bytes:
    """``GET /v1/analyses/{id}``: the analysis as its response body."""
    analysis = get(session, tenant_id, analysis_id)
    return _document_of(session, analysis)


def measure_gradients(session: Session, settings: Settings, tenant_id: str, analysis_id: str) -> bytes:
    """Queue a gradients job for an existing analysis; the response body of the analysis."""
    analysis = get(session, tenant_id, analysis_id)
    request_gradients(session, settings, analysis)
    return _document_of(session, analysis)


def measure_effective_field(session: Session, settings: Settings, tenant_id: str, analysis_id: str,
                            body: bytes) -> bytes:
    """Queue an effective-field job for an existing analysis (``body``: JSON, may be empty);
    the response body of the analysis."""
    from app.analyses.effective_field import parse_body, request_effective_field
    from app.ingest import parse_json_bytes

    request = parse_body(parse_json_bytes(body, settings) if body.strip() else None)
    analysis = get(session, tenant_id, analysis_id)
    request_effective_field(session, settings, analysis, request)
    return _document_of(session, analysis)


def _document_of(session: Session, analysis: Job) -> bytes:
    child = repository.latest_child(session, analysis.id, "gradients")
    architecture = architectures.get(session, analysis.tenant_id, analysis.architecture_id or "")
    assert architecture is not None
    return encode_analysis(analysis, architecture, child.id if child else None,
                           progress=combined_progress(analysis, child))


MEASURING_SHARE = 0.5
"""The share of an analysis's progress that a pending gradient measurement stands for."""


def combined_progress(analysis: Job, child: Job | None) -> float:
    """The analysis's progress, with a pending measurement counted in: its report is half the
    work and the measuring job the other half (never 1.0 while it runs).

    >>> from types import SimpleNamespace as Row
    >>> combined_progress(Row(status="running", result={}, progress=1.0),
    ...                   Row(status="running", progress=0.3))
    0.65
    """
    own = float(analysis.progress or 0.0)
    if analysis.status != "running" or analysis.result is None:
        return own
    if child is None or child.status not in ("queued", "running"):
        return min(own, 1.0 - 1e-3) if analysis.status == "running" else own
    measured = max(0.0, min(1.0, float(child.progress or 0.0)))
    return round(1.0 - MEASURING_SHARE + MEASURING_SHARE * min(measured, 0.99), 4)


def page(session: Session, tenant_id: str, *, limit: int, offset: int, **filters: Any) -> bytes:
    """``GET /v1/analyses``: one page of the tenant's analyses as the response body."""
    rows, total = repository.page(session, tenant_id, limit=limit, offset=offset, **filters)
    items = [
        {"id": r.id, "status": r.status, "name": r.name, "architecture_id": r.architecture_id,
         "summary": (r.result or {}).get("summary"), "created_at": r.created_at, "updated_at": r.updated_at}
        for r in rows
    ]
    return dumps({"items": items, "total": total, "limit": limit, "offset": offset})


def delete(session: Session, tenant_id: str, analysis_id: str) -> None:
    repository.delete(session, get(session, tenant_id, analysis_id))


# -- response bodies -----------------------------------------------------------------------------


def analysis_document(row: Job, architecture: Architecture, gradient_job_id: str | None,
                      *, progress: float | None = None) -> dict[str, Any]:
    """``AnalysisOut`` as a dict, in the model's field order; a stored report is embedded as
    the bytes it was serialised to once. ``progress`` overrides the row's (a pending
    measurement counted in: :func:`combined_progress`)."""
    return {
        "id": row.id, "status": row.status, "name": row.name,
        "architecture": architectures_service.document(architecture),
        "input_shape": (row.parameters or {}).get("input_shape"),
        "report": row.result, "error": row.error,
        "progress": float(row.progress or 0.0) if progress is None else progress,
        "gradient_job_id": gradient_job_id,
        "created_at": _aware(row.created_at), "updated_at": _aware(row.updated_at),
    }


def encode_analysis(row: Job, architecture: Architecture, gradient_job_id: str | None,
                    *, progress: float | None = None) -> bytes:
    return dumps(analysis_document(row, architecture, gradient_job_id, progress=progress))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
