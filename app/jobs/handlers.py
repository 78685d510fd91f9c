"""Running a held job to its end: the progress writer, and one path for every kind.

``execute`` loads the job and its architecture, passes the architecture through the
worker's own gate, checks that the job fits the worker's memory (kinds that declare an
estimate), runs the kind's handler (in this process, or in a TensorFlow child for kinds
that need one) and writes the outcome, fenced. The job's :class:`ProgressWriter` thread,
in this process, is its only writer while it runs: heartbeat, progress, events.

Example (inside a worker, after a claim)::

    execute(settings, held)   # "succeeded" | "failed" | "cancelled" | "queued" (retry) | "lost"
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.config import Settings
from app.db import session_scope
from app.errors import NotFound
from app.jobs import lifecycle, repository
from app.jobs.kinds import ArchitectureSpec, JobContext, JobKind, JobSpec, get_kind
from app.jobs.repository import Claim
from app.jobs.steps import analyse, gate
from app.jobs.tfprocess import ChildCrashed, ChildFailed, JobLost, TFProcess, run_in_tensorflow

log = logging.getLogger("convlens.jobs")


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
        self._flush_lock = threading.Lock()
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
        with self._flush_lock:
            pending = []
            while True:
                try:
                    pending.append(self.events.get_nowait())
                except queue.Empty:
                    break
            try:
                with session_scope(self.settings) as session:
                    ours, cancel = repository.heartbeat(
                        session, self.held, progress=self._progress, progress_detail=self._detail
                    )
                    if ours and pending:
                        self._seq = repository.add_events(session, self.held.job_id, self._seq, pending)
            except BaseException:
                for item in pending:  # written with the next flush
                    self.events.put(item)
                raise
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
        for delay in (0.0, 0.5, 2.0):
            time.sleep(delay)
            try:
                self.flush()
                return
            except Exception:  # noqa: BLE001
                log.warning("last flush of job %s failed", self.held.job_id, exc_info=True)


def _problem(exc: BaseException) -> dict[str, Any]:
    from app.jobs.child import problem_of

    return problem_of(exc)


def _load(settings: Settings, held: Claim, kind: JobKind) -> tuple[JobSpec, ArchitectureSpec]:
    """The job and its architecture as plain data; the architecture through the worker's gate."""
    with session_scope(settings) as session:
        loaded = repository.load_for_run(session, held.job_id)
    if loaded is None:
        raise NotFound(f"The job '{held.job_id}' or its architecture no longer exists.")
    job, architecture = loaded
    config = gate(architecture.config, settings)  # the worker's own gate, before any Keras
    spec = JobSpec(
        id=job.id,
        kind=job.kind,
        attempt=held.attempt,
        name=job.name,
        parent_id=job.parent_id,
        parameters=dict(job.parameters or {}),
        time_limit_s=float(job.time_limit_s or kind.time_limit_s(settings)),
    )
    return spec, ArchitectureSpec(
        id=architecture.id,
        name=architecture.name,
        format=architecture.format,
        config=config,
        blob_path=architecture.blob_path,
        has_weights=bool(architecture.has_weights),
    )


class TensorFlowPool:
    """Where TensorFlow processes come from: by default a fresh one per job.

    :class:`app.jobs.runner.WorkerRuntime` keeps a warm one instead.
    """

    #: Run TensorFlow kinds in this very process (see :class:`InProcessTensorFlow`).
    in_process = False

    def take(self, settings: Settings) -> TFProcess:
        return TFProcess(settings)

    def running(self, process: TFProcess | None) -> None:
        """The process that runs the current job (None once it ended)."""

    def after_job(self) -> None:
        """A TensorFlow job ended (start the next warm process)."""


class InProcessTensorFlow(TensorFlowPool):
    """TensorFlow kinds run in the calling process, without a child: for tests that instrument
    Keras in their own process, and tools. A service never uses it (its workers keep
    TensorFlow out of their own process, under the child's limits)."""

    in_process = True


def _with_retries(write: Callable[[], Any], what: str) -> Any:
    """A final write survives a database blink (three tries over about three seconds)."""
    for delay in (0.5, 1.0, 2.0):
        try:
            return write()
        except Exception:  # noqa: BLE001
            log.warning("%s failed; trying again in %.1f s", what, delay, exc_info=True)
            time.sleep(delay)
    return write()


def execute(settings: Settings, held: Claim, *, pool: TensorFlowPool | None = None) -> str:
    """Run the held job to its end and write the outcome (fenced).

    Returns the job's status afterwards: ``succeeded``, ``failed``, ``cancelled``,
    ``queued`` (its process died and it will be retried) or ``lost`` (another worker took
    it over; nothing was written).
    """
    pool = pool or TensorFlowPool()
    writer = ProgressWriter(settings, held).start()
    writer.event("started", {"attempt": held.attempt, "worker_id": held.worker_id})
    status, result, error = "failed", None, None
    kind: JobKind | None = None
    try:
        kind = get_kind(held.kind)
        job, architecture = _load(settings, held, kind)
        if kind.memory_estimate is not None:
            from app.jobs.resources import check_job_resources

            report = analyse(architecture.config, job.parameters.get("input_shape"), job.name, settings)
            check_job_resources(kind.name, report, settings, job.parameters)
        context = JobContext(
            job=job,
            architecture=architecture,
            settings=settings,
            reporter=writer,
            work_dir=lifecycle.work_dir(settings, job.id),
        )
        if kind.in_tensorflow and not pool.in_process:
            try:
                result = run_in_tensorflow(
                    context, writer, take=lambda: pool.take(settings), on_start=pool.running
                )
            finally:
                pool.after_job()
        else:
            result = kind.run(context)
        status = "cancelled" if (result or {}).get("status") == "cancelled" else "succeeded"
    except ChildCrashed as crash:
        writer.stop()
        return _after_crash(settings, held, crash.reason)
    except JobLost:
        writer.stop()
        log.warning("job %s: attempt %s was taken over by another worker", held.job_id, held.attempt)
        return "lost"
    except ChildFailed as failed:
        error = failed.problem
    except BaseException as exc:  # noqa: BLE001 - every outcome is written to the row
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            writer.stop()
            raise
        error = _problem(exc)
    if error is not None:
        log.info("job %s (%s) failed: %s", held.job_id, held.kind, error.get("detail"))
    writer.event(
        "finished" if status != "failed" else "failed",
        {"status": status, "error": error.get("detail") if error else None, "attempt": held.attempt},
    )
    writer.stop()
    if writer.lost.is_set():
        return "lost"

    def write() -> tuple[bool, list[Path]]:
        with session_scope(settings) as session:
            written = repository.finish(
                session,
                held,
                status=status,
                result=result,
                error=error,
                attempts_in_result=bool(kind and kind.attempts_in_result),
            )
            paths: list[Path] = []
            row = repository.job_row(session, held.job_id) if written else None
            if row is not None:
                paths = lifecycle.ended(session, settings, row)
        return written, paths

    written, paths = _with_retries(write, f"writing the outcome of job {held.job_id}")
    lifecycle.delete_paths(paths)
    if not written:
        log.warning("job %s: attempt %s lost the job before writing its outcome", held.job_id, held.attempt)
        return "lost"
    return status


def _after_crash(settings: Settings, held: Claim, reason: str) -> str:
    """The attempt's process died: queue the job again (or fail it at the attempt cap)."""

    def write() -> tuple[str | None, list[Path]]:
        with session_scope(settings) as session:
            row = repository.release_after_crash(session, held, reason)
            if row is None:
                return None, []
            paths = lifecycle.ended(session, settings, row) if row.status != "queued" else []
            return row.status, paths

    status, paths = _with_retries(write, f"releasing job {held.job_id}")
    lifecycle.delete_paths(paths)
    log.warning("job %s attempt %s: %s -> %s", held.job_id, held.attempt, reason, status or "lost")
    return status or "lost"
