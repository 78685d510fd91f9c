"""The worker side of every executor: claim a job by id, run it, survive its crashes.

Used by the local worker processes and by the Celery task alike. A worker process never
imports TensorFlow: kinds that need it run in a fresh :mod:`app.jobs.child` process each,
started one job ahead so that it is already warm when a job arrives. When that process
dies, the attempt ends at once (the worker owns it) and the job runs again here, up to its
attempt cap.

Each worker also keeps its row in the ``workers`` table fresh (:class:`WorkerPresence`):
readiness and the job-size check read it.

Example::

    runtime = WorkerRuntime(settings)
    runtime.start()             # its presence row
    runtime.handle(job_id)      # "succeeded" | "failed" | "cancelled" | "queued" | None (not ours)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from typing import Any

from app.config import Settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.handlers import TensorFlowPool, execute
from app.jobs.kinds import queues
from app.jobs.repository import Claim
from app.jobs.resources import tensorflow_memory_budget
from app.jobs.tfprocess import HARD_LIMIT_GRACE_S, TFProcess, settings_env

__all__ = ["HARD_LIMIT_GRACE_S", "WorkerRuntime", "new_worker_id", "settings_env", "settings_from_env"]

log = logging.getLogger("convlens.jobs")

def new_worker_id(prefix: str = "worker") -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def settings_from_env() -> Settings:
    from app.config import get_settings

    raw = os.environ.get("CONVLENS_SETTINGS_JSON")
    return Settings(**json.loads(raw)) if raw else get_settings()


class WorkerPresence:
    """A thread that writes this worker's row every heartbeat interval (and removes it at stop)."""

    def __init__(self, runtime: WorkerRuntime, executor: str, worker_queues: list[str]) -> None:
        self.runtime = runtime
        self.executor = executor
        self.queues = worker_queues
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-presence", daemon=True)

    def beat(self) -> None:
        runtime = self.runtime
        with session_scope(runtime.settings) as session:
            repository.beat_worker(
                session,
                worker_id=runtime.worker_id,
                executor=self.executor,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues,
                memory_bytes=tensorflow_memory_budget(runtime.settings),
                current_job_id=runtime.current.job_id if runtime.current else None,
            )

    def start(self) -> None:
        try:
            self.beat()
        except Exception:  # noqa: BLE001 - the thread tries again
            log.warning("worker %s could not write its row", self.runtime.worker_id, exc_info=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.runtime.settings.heartbeat_interval_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a database blink: try again next round
                log.warning("worker %s heartbeat failed", self.runtime.worker_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with session_scope(self.runtime.settings) as session:
                repository.remove_worker(session, self.runtime.worker_id)
        except Exception:  # noqa: BLE001 - it ages out
            log.warning("worker %s could not remove its row", self.runtime.worker_id, exc_info=True)


class WorkerRuntime(TensorFlowPool):
    """Claims and runs jobs for one worker process (local worker or Celery worker)."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str | None = None,
        *,
        executor: str = "local",
        worker_queues: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self._warm: TFProcess | None = None
        self._lock = threading.Lock()
        self.current: Claim | None = None
        self.current_child: TFProcess | None = None
        self.presence = WorkerPresence(self, executor, worker_queues or list(queues()))

    def start(self) -> None:
        self.presence.start()
        self.prespawn()

    # -- TensorFlow processes (the pool the handlers take from) ------------------------------

    def prespawn(self) -> None:
        """Start the next TensorFlow process now, so that it is warm when a job comes."""
        if not self.settings.warm_tf_process:
            return
        with self._lock:
            if self._warm is None or not self._warm.alive():
                self._warm = TFProcess(self.settings)

    def take(self, settings: Settings) -> TFProcess:
        with self._lock:
            process, self._warm = self._warm, None
        if process is None or not process.alive():
            if process is not None:
                process.close()
            process = TFProcess(settings)
        return process

    def running(self, process: TFProcess | None) -> None:
        self.current_child = process

    def after_job(self) -> None:
        self.prespawn()

    def shutdown(self) -> None:
        with self._lock:
            warm, self._warm = self._warm, None
        if warm is not None:  # a spare holds no job: no need to wait for it
            warm.kill()
            warm.close()
        self.presence.stop()

    # -- jobs ------------------------------------------------------------------------------

    def claim(self, job_id: str) -> Claim | None:
        stale_before = repository.utc_cutoff(self.settings.heartbeat_timeout_s)
        with session_scope(self.settings) as session:
            return repository.claim(session, job_id, self.worker_id, stale_before=stale_before)

    def handle(self, job_id: str) -> str | None:
        """Claim and run one job. None when the job was not claimable (done, or someone else's).

        When the attempt's process dies, the job is queued again and, if attempts remain,
        claimed again here at once.
        """
        from app.observability import bind_job_id

        held = self.claim(job_id)
        if held is None:
            return None
        while True:
            self.current = held
            try:
                with bind_job_id(held.job_id):  # every log line of the job carries its id
                    status = execute(self.settings, held, pool=self)
            finally:
                self.current = None
            if status != "queued":
                return status
            retry = self.claim(job_id)
            if retry is None:
                return status
            held = retry

    def release_current(self) -> None:
        """On a graceful stop: give the running job back without spending an attempt."""
        held = self.current
        if held is None:
            return
        child = self.current_child
        if child is not None and child.alive():
            child.process.kill()
        with session_scope(self.settings) as session:
            repository.give_back(session, held)


def describe(runtime: WorkerRuntime) -> dict[str, Any]:
    return {
        "worker_id": runtime.worker_id,
        "current": runtime.current.job_id if runtime.current else None,
    }
