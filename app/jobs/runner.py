"""The worker side of every executor: claim a job by id, run it, survive its crashes.

Used by the local worker processes and by the Celery task alike. A worker process never
imports TensorFlow: ``analysis`` jobs run here (pure Python), ``gradients`` and
``training`` jobs run in a fresh :mod:`app.jobs.child` process each, started one job
ahead so that it is already warm when a job arrives.

Example::

    runtime = WorkerRuntime(settings)
    runtime.handle(job_id)      # "succeeded" | "failed" | "queued" (retry) | None (not ours)
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from sqlalchemy import update

from app.config import Settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.handlers import TF_KINDS, execute
from app.jobs.repository import Claim
from app.models import Job
from app.models.base import utcnow

log = logging.getLogger("convlens.jobs")

#: Seconds a TensorFlow process gets beyond the job's own time limit before it is killed.
HARD_LIMIT_GRACE_S = 30.0


def new_worker_id(prefix: str = "worker") -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process that must see exactly these settings."""
    env = dict(os.environ)
    env["CONVLENS_SETTINGS_JSON"] = settings.model_dump_json()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def settings_from_env() -> Settings:
    from app.config import get_settings

    raw = os.environ.get("CONVLENS_SETTINGS_JSON")
    return Settings(**json.loads(raw)) if raw else get_settings()


class TFProcess:
    """One :mod:`app.jobs.child` process: started, warmed up, given one job, reaped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.jobs.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=settings_env(settings),
        )
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 120.0) -> bool:
        if self.ready:
            return True
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            readable, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if readable:
                line = self.process.stdout.readline()
                if line.strip() == "ready":
                    self.ready = True
                    return True
                if not line:
                    return False
        return False

    def send(self, held: Claim) -> None:
        assert self.process.stdin is not None
        message = {
            "job_id": held.job_id,
            "worker_id": held.worker_id,
            "attempt": held.attempt,
            "kind": held.kind,
            "settings": json.loads(self.settings.model_dump_json()),
        }
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("\n")
                self.process.stdin.flush()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.process.kill()
                self.process.wait()


class Heartbeat:
    """Writes a held job's heartbeat from the worker process while its TensorFlow child runs.

    The heartbeat means "the process running this job is alive"; it comes from here, not
    from the busy TensorFlow process, whose threads can stall while XLA compiles.
    """

    def __init__(self, settings: Settings, held: Claim) -> None:
        self.settings = settings
        self.held = held
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                with session_scope(self.settings) as session:
                    ours, _ = repository.heartbeat(session, self.held)
            except Exception:  # noqa: BLE001 - a database blink: try again next round
                log.warning("heartbeat for job %s failed", self.held.job_id, exc_info=True)
                continue
            if not ours:
                self.lost.set()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class WorkerRuntime:
    """Claims and runs jobs for one worker process (local worker or Celery worker)."""

    def __init__(self, settings: Settings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self._warm: TFProcess | None = None
        self._lock = threading.Lock()
        self.current: Claim | None = None
        self.current_child: TFProcess | None = None

    # -- warm TensorFlow process ---------------------------------------------------------

    def prespawn(self) -> None:
        """Start the next TensorFlow process now, so that it is warm when a job comes."""
        if not self.settings.warm_tf_process:
            return
        with self._lock:
            if self._warm is None or self._warm.process.poll() is not None:
                self._warm = TFProcess(self.settings)

    def _take_tf_process(self) -> TFProcess:
        with self._lock:
            process, self._warm = self._warm, None
        if process is None or process.process.poll() is not None:
            process = TFProcess(self.settings)
        return process

    def shutdown(self) -> None:
        with self._lock:
            warm, self._warm = self._warm, None
        if warm is not None:
            warm.close()

    # -- jobs ------------------------------------------------------------------------------

    def claim(self, job_id: str) -> Claim | None:
        stale_before = repository.utc_cutoff(self.settings.heartbeat_timeout_s)
        with session_scope(self.settings) as session:
            return repository.claim(session, job_id, self.worker_id, stale_before=stale_before)

    def handle(self, job_id: str) -> str | None:
        """Claim and run one job. None when the job was not claimable (done, or someone else's)."""
        held = self.claim(job_id)
        if held is None:
            return None
        self.current = held
        from app.observability import bind_job_id

        try:
            with bind_job_id(held.job_id):  # every log line of the job carries its id
                if held.kind in TF_KINDS:
                    return self._run_in_tf_process(held)
                return execute(self.settings, held)
        finally:
            self.current = None

    def _time_limit(self, held: Claim) -> float:
        with session_scope(self.settings) as session:
            limit = session.get(Job, held.job_id).time_limit_s  # type: ignore[union-attr]
        if limit:
            return float(limit)
        return (
            self.settings.training_time_limit_s
            if held.kind == "training"
            else self.settings.gradient_time_limit_s
        )

    def _run_in_tf_process(self, held: Claim) -> str:
        hard_limit = self._time_limit(held) + HARD_LIMIT_GRACE_S
        child = self._take_tf_process()
        self.current_child = child
        beat = Heartbeat(self.settings, held).start()
        try:
            if not child.wait_ready():
                # a spare that died while idle is not the job's fault: start a fresh one once
                child.process.kill()
                child.process.wait()
                child = TFProcess(self.settings)
                self.current_child = child
                if not child.wait_ready():
                    code = child.process.poll()
                    child.process.kill()
                    return self._after_crash(
                        held, f"the TensorFlow process did not start (exit {code})"
                    )
            child.send(held)
            code = self._supervise(held, child, hard_limit, beat)
            if code is None:
                return self._status(held.job_id)
        finally:
            beat.stop()
            self.current_child = None
            self.prespawn()
        if code == 0:
            return self._status(held.job_id)
        reason = (
            f"the TensorFlow process was killed by signal {-code}"
            if code < 0
            else f"the TensorFlow process exited with status {code}"
        )
        return self._after_crash(held, reason)

    def _supervise(
        self, held: Claim, child: TFProcess, hard_limit: float, beat: Heartbeat
    ) -> int | None:
        """Wait for the child; kill it past the hard limit or when the job is no longer ours.

        Returns the child's exit code, or None after a kill.
        """
        deadline = time.monotonic() + hard_limit
        while True:
            try:
                return child.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if beat.lost.is_set():  # another worker holds it now (we were presumed dead)
                child.process.kill()
                child.process.wait()
                return None
            if time.monotonic() >= deadline:
                child.process.kill()
                child.process.wait()
                with session_scope(self.settings) as session:
                    repository.finish(
                        session,
                        held,
                        status="failed",
                        error={
                            "code": "time_limit_exceeded",
                            "detail": "The job ran past its hard time limit of "
                            f"{hard_limit:.0f} s and was killed.",
                        },
                    )
                return None

    def _after_crash(self, held: Claim, reason: str) -> str:
        with session_scope(self.settings) as session:
            status = repository.release_after_crash(session, held, reason)
        log.warning("job %s attempt %s: %s -> %s", held.job_id, held.attempt, reason, status)
        return status or self._status(held.job_id)

    def _status(self, job_id: str) -> str:
        with session_scope(self.settings) as session:
            return str(session.get(Job, job_id).status)  # type: ignore[union-attr]

    def release_current(self) -> None:
        """On a graceful stop: give the running job back without spending an attempt."""
        held = self.current
        if held is None:
            return
        child = self.current_child
        if child is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGKILL)
        with session_scope(self.settings) as session:
            session.execute(
                update(Job)
                .where(
                    Job.id == held.job_id,
                    Job.worker_id == held.worker_id,
                    Job.attempts == held.attempt,
                    Job.status == "running",
                )
                .values(
                    status="queued", attempts=Job.attempts - 1, worker_id=None, updated_at=utcnow()
                )
            )


def describe(runtime: WorkerRuntime) -> dict[str, Any]:
    return {
        "worker_id": runtime.worker_id,
        "current": runtime.current.job_id if runtime.current else None,
    }
