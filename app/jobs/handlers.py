"""What each job kind does once a worker holds it, and the progress writer it reports through.

``analysis`` runs in the worker process (pure Python, no TensorFlow). ``gradients`` and
``training`` run in a TensorFlow child process (``app.jobs.child``), one per job. Every
kind passes the static safety gate again before Keras sees the architecture.

Example (inside a worker, after a claim)::

    execute(settings, held)       # writes the result (fenced) or the error, never raises
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from app.config import Settings
from app.db import session_scope
from app.errors import DomainError, NotFound
from app.jobs import repository
from app.jobs.repository import Claim
from app.models import Architecture, Job

log = logging.getLogger("convlens.jobs")

TF_KINDS = frozenset({"gradients", "training"})


class ProgressWriter:
    """A thread that writes heartbeats, progress and events for one held job.

    The job's loop only puts events on a queue (never waits for the database); the
    thread flushes them every ``flush_s`` with the heartbeat, reads ``cancel_requested``
    and notices when the job is no longer held (``lost``).
    """

    def __init__(self, settings: Settings, held: Claim, *, flush_s: float = 0.25) -> None:
        self.settings = settings
        self.held = held
        self.flush_s = min(flush_s, settings.heartbeat_interval_s)
        self.events: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.cancel_requested = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._progress: float | None = None
        self._detail: dict[str, Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"progress-{held.job_id[:8]}", daemon=True
        )
        with session_scope(settings) as session:
            self._seq = repository.next_event_seq(session, held.job_id)

    def start(self) -> ProgressWriter:
        self._thread.start()
        return self

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.put((kind, payload))

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        self._progress, self._detail = fraction, detail

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set() or self.lost.is_set()

    def flush(self) -> None:
        pending = []
        while True:
            try:
                pending.append(self.events.get_nowait())
            except queue.Empty:
                break
        with session_scope(self.settings) as session:
            ours, cancel = repository.heartbeat(
                session, self.held, progress=self._progress, progress_detail=self._detail
            )
            if ours and pending:
                self._seq = repository.add_events(session, self.held.job_id, self._seq, pending)
        if cancel:
            self.cancel_requested.set()
        if not ours:
            self.lost.set()

    def _run(self) -> None:
        last_heartbeat = 0.0
        while not self._stop.wait(self.flush_s):
            now = time.monotonic()
            if self.events.empty() and now - last_heartbeat < self.settings.heartbeat_interval_s:
                continue
            try:
                self.flush()
                last_heartbeat = now
            except Exception:  # noqa: BLE001 - the database may blink; the next round retries
                log.warning("heartbeat of job %s failed", self.held.job_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            log.warning("last flush of job %s failed", self.held.job_id, exc_info=True)


def _problem(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, DomainError):
        return exc.to_problem()
    return {
        "code": "internal_error",
        "title": "The job failed",
        "detail": f"{type(exc).__name__}: {exc}"[:2000],
        "trace": traceback.format_exc()[-4000:],
    }


def _load(settings: Settings, job_id: str) -> tuple[Job, Architecture]:
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"No job with id '{job_id}'.")
        architecture = session.scalar(
            select(Architecture).where(
                Architecture.id == job.architecture_id, Architecture.tenant_id == job.tenant_id
            )
        )
        if architecture is None:
            raise NotFound(f"The job's architecture '{job.architecture_id}' no longer exists.")
        session.expunge_all()
        return job, architecture


def execute(settings: Settings, held: Claim) -> str:
    """Run the held job to its end and write the outcome (fenced). Returns the final status."""
    writer = ProgressWriter(settings, held).start()
    writer.event("started", {"attempt": held.attempt, "worker_id": held.worker_id})
    status, result, error = "failed", None, None
    parent_id: str | None = None
    try:
        job, architecture = _load(settings, held.job_id)
        parent_id = job.parent_id
        from app.security import gate_architecture

        architecture.config = gate_architecture(architecture.config, settings)  # second gate, before any Keras
        if held.kind == "analysis":
            result = _analysis(settings, job, architecture)
        elif held.kind == "gradients":
            result = _gradients(settings, job, architecture, writer)
        elif held.kind == "training":
            result = _training(settings, job, architecture, writer)
        else:
            raise DomainError(f"Unknown job kind. Received: {held.kind!r}")
        status = "succeeded"
        if held.kind == "training" and result.get("status") == "cancelled":
            status = "cancelled"
    except BaseException as exc:  # noqa: BLE001 - every outcome is written to the row
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            writer.stop()
            raise
        error = _problem(exc)
        log.info("job %s (%s) failed: %s", held.job_id, held.kind, error.get("detail"))
    writer.event(
        "finished" if status != "failed" else "failed",
        {"status": status, "error": error.get("detail") if error else None},
    )
    writer.stop()
    with session_scope(settings) as session:
        if status == "succeeded" and held.kind == "analysis" and result is not None:
            measured, pending = repository.measured_from_children(session, held.job_id)
            if measured is not None:
                result.setdefault("gradient_flow", {})["measured"] = measured
        written = repository.finish(session, held, status=status, result=result, error=error)
        if written and held.kind == "analysis" and status == "succeeded":
            _, pending = repository.measured_from_children(session, held.job_id)
            if pending:  # the report is there; the analysis waits for its measurement
                session.execute(
                    update(Job)
                    .where(Job.id == held.job_id)
                    .values(status="running", finished_at=None)
                )
        if written and held.kind == "gradients" and parent_id:
            measured = (
                result
                if status == "succeeded" and result is not None
                else repository.failed_measurement(error)
            )
            repository.merge_measured_gradients(session, parent_id, measured)
    if not written:
        log.warning(
            "job %s: attempt %s lost the job before writing its outcome", held.job_id, held.attempt
        )
        return "lost"
    return status


# -- the kinds ---------------------------------------------------------------------------------


def _analysis(settings: Settings, job: Job, architecture: Architecture) -> dict[str, Any]:
    from app.pipeline import analyse

    params = job.parameters or {}
    return analyse(
        architecture.config, params.get("input_shape"), job.name or architecture.name, settings
    )


def _model(architecture: Architecture, input_shape: Any) -> Any:
    from app.worker.loader import load_model

    blob = (
        Path(architecture.blob_path)
        if architecture.blob_path and architecture.has_weights
        else None
    )
    return load_model(architecture.config, blob, architecture.format, input_shape=input_shape)


def _gradients(
    settings: Settings, job: Job, architecture: Architecture, writer: ProgressWriter
) -> dict[str, Any]:
    from app.worker.gradients import measure

    params = job.parameters or {}
    writer.progress(0.1, {"phase": "loading model"})
    model = _model(architecture, params.get("input_shape"))
    writer.progress(0.3, {"phase": "measuring"})
    measured = measure(
        model,
        batches=int(params.get("batches", 4)),
        batch_size=int(params.get("batch_size", 8)),
        seed=int(params.get("seed", 0)),
    )
    writer.progress(1.0, {"phase": "done"})
    return measured


def _training(
    settings: Settings, job: Job, architecture: Architecture, writer: ProgressWriter
) -> dict[str, Any]:
    from app.worker.training import TrainingParams, run_training

    raw = dict(job.parameters or {})
    input_shape = raw.pop("input_shape", None)
    raw.pop("time_limit_s", None)
    raw.pop("analysis_id", None)
    params = TrainingParams.from_dict(
        raw, max_steps=settings.training_max_steps, max_batch_size=settings.training_max_batch_size
    )
    started = time.monotonic()
    writer.progress(0.0, {"phase": "loading model", "steps_done": 0, "steps": params.steps})
    model = _model(architecture, input_shape)
    time_limit = float(job.time_limit_s or settings.training_time_limit_s)

    def on_step(event: dict[str, Any]) -> None:
        probe = event.pop("probe", None)
        writer.event("step", event)
        if probe is not None:
            writer.event("probe", probe)
        writer.progress(
            event["step"] / event["steps"],
            {
                "phase": "training",
                "steps_done": event["step"],
                "steps": event["steps"],
                "eta_s": event["eta_s"],
                "loss": event["loss"],
                "elapsed_s": event["elapsed_s"],
            },
        )

    result = run_training(
        model,
        params,
        on_step=on_step,
        should_stop=writer.should_stop,
        time_limit_s=max(0.0, time_limit - (time.monotonic() - started)),
        max_npz_bytes=settings.max_npz_bytes,
    )
    if writer.lost.is_set():
        raise DomainError(
            "The job was taken over by another worker (heartbeat lost).", code="job_lost"
        )
    writer.progress(
        1.0,
        {
            "phase": "done",
            "steps_done": result["steps_completed"],
            "steps": params.steps,
            "eta_s": 0,
            "stopped": result["status"],
        },
    )
    return result
