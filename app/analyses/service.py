"""Creating and reading analyses.

The static analysis is pure Python and normally finishes inside the request (201). If it
runs longer than ``sync_analysis_timeout_s`` the analysis is stored as ``queued`` and handed
to the job executor (202); the thread that was computing it may still finish first, and
whichever writer claims the row first wins (the write is fenced on the row's status).

Nothing is written to the database until the input has been parsed, validated and (for
the synchronous path) analysed: a bad request leaves no rows behind.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.analyses import repository
from app.architectures import service as architectures
from app.config import Settings
from app.db import session_scope
from app.errors import DomainError, NotFound
from app.ingest.shapes import parse_input_shape
from app.models import Job
from app.models.base import new_id, utcnow

log = logging.getLogger("convlens.analyses")


@dataclass(frozen=True)
class ValidatedArchitecture:
    """An architecture that passed ingestion, the safety gate and the static limits."""

    format: str
    config: dict[str, Any]
    name: str | None
    has_weights: bool
    sha256: str
    byte_size: int
    upload_path: Path | None = None


@dataclass
class CreateOutcome:
    analysis: Job
    finished: bool
    dispatch: list[str]


def validate_ingested(ingested: Any, settings: Settings, upload_path: Path | None) -> ValidatedArchitecture:
    # ingest_bytes / ingest_config have gated it: ingested.config is the sanitised config
    return ValidatedArchitecture(
        format=ingested.format, config=ingested.config, name=ingested.name,
        has_weights=ingested.has_weights, sha256=ingested.sha256, byte_size=ingested.byte_size,
        upload_path=upload_path,
    )


def run_engine(config: dict[str, Any], input_shape: Any, name: str | None,
               settings: Settings) -> dict[str, Any]:
    """The static analysis plus the report-level resource limits."""
    from app.analysis import analyze
    from app.security import check_report_limits

    report = analyze(config, input_shape=input_shape, name=name)
    check_report_limits(report, settings)
    return report


def create(
    session: Session,
    settings: Settings,
    pool: concurrent.futures.Executor,
    *,
    tenant_id: str,
    architecture: ValidatedArchitecture,
    input_shape: Any,
    name: str | None,
    measure_gradients: bool,
    analysis_id: str | None = None,
) -> CreateOutcome:
    """Analyse within the request when possible; otherwise queue. The caller commits, then
    dispatches ``outcome.dispatch`` (job ids) to the executor."""
    input_shape = parse_input_shape(input_shape, settings)
    display_name = name or architecture.name
    started = time.perf_counter()
    future = pool.submit(run_engine, architecture.config, input_shape, display_name, settings)
    report: dict[str, Any] | None = None
    try:
        report = future.result(timeout=settings.sync_analysis_timeout_s)
    except concurrent.futures.TimeoutError:
        report = None
    except DomainError:
        if architecture.upload_path is not None:
            architecture.upload_path.unlink(missing_ok=True)
        raise
    elapsed = time.perf_counter() - started

    row = architectures.get_or_create(
        session, settings, tenant_id=tenant_id, sha256=architecture.sha256, fmt=architecture.format,
        name=architecture.name, byte_size=architecture.byte_size, config=architecture.config,
        has_weights=architecture.has_weights, upload_path=architecture.upload_path,
    )
    now = utcnow()
    parameters = {"input_shape": input_shape, "measure_gradients": measure_gradients}
    analysis = Job(
        id=analysis_id or new_id(),
        tenant_id=tenant_id, kind="analysis", name=display_name, architecture_id=row.id,
        parameters=parameters, max_attempts=settings.job_max_attempts,
        time_limit_s=settings.analysis_time_limit_s,
    )
    dispatch: list[str] = []
    if report is not None:
        analysis.status = "succeeded"
        analysis.result = report
        analysis.result_writes = 1
        analysis.progress = 1.0
        analysis.started_at = now
        analysis.finished_at = now
        analysis.progress_detail = {"static_seconds": round(elapsed, 6)}
    else:
        analysis.status = "queued"
        dispatch.append(analysis.id)
    session.add(analysis)
    session.flush()
    if report is None:
        future.add_done_callback(_late_result_writer(settings, analysis.id))
    if measure_gradients:
        child = request_gradients(session, settings, analysis)
        dispatch.append(child.id)
    return CreateOutcome(analysis=analysis, finished=report is not None and not measure_gradients,
                         dispatch=dispatch)


def _late_result_writer(settings: Settings, analysis_id: str):  # type: ignore[no-untyped-def]
    """Store a report that finished after the request answered 202, unless a worker claimed it."""

    def write(future: concurrent.futures.Future[dict[str, Any]]) -> None:
        try:
            report = future.result()
            values: dict[str, Any] = {"status": "succeeded", "result": report, "progress": 1.0,
                                      "result_writes": Job.result_writes + 1}
        except DomainError as exc:
            values = {"status": "failed", "error": exc.to_problem()}
        except Exception as exc:  # noqa: BLE001 - recorded on the row, never lost
            values = {"status": "failed", "error": {"code": "internal_error", "detail": repr(exc)}}
        now = utcnow()
        values.update(finished_at=now, updated_at=now, started_at=now)
        try:
            with session_scope(settings) as session:
                session.execute(
                    update(Job).where(Job.id == analysis_id, Job.status == "queued").values(**values)
                )
        except Exception:  # noqa: BLE001
            log.exception("could not store the late result of analysis %s", analysis_id)

    return write


def request_gradients(session: Session, settings: Settings, analysis: Job) -> Job:
    """Queue a measured-gradients job for an analysis; the analysis shows it as running."""
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
    return child


def get(session: Session, tenant_id: str, analysis_id: str) -> Job:
    analysis = repository.get(session, tenant_id, analysis_id)
    if analysis is None:
        raise NotFound(f"No analysis with id '{analysis_id}'.")
    return analysis


def delete(session: Session, tenant_id: str, analysis_id: str) -> None:
    analysis = get(session, tenant_id, analysis_id)
    session.delete(analysis)
    session.flush()
