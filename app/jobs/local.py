"""The embedded executor: worker subprocesses beside the API, and the reconciler.

``convlens serve`` starts ``settings.local_workers`` fresh interpreters
(``python -m app.jobs.local_worker``); a dispatch writes the job id to one of them. The
executor owns those processes, so it sees one exit the moment it happens: the job that
worker held is re-queued (or failed at its attempt cap) at once, a new worker is started
and the job is handed to it. The reconciler thread (:mod:`app.jobs.reconciler`) covers
everything else. No extra server is needed.

Example::

    executor = LocalExecutor(settings); executor.start()
    executor.dispatch(job.id)          # after the row is committed; never raises
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from app.config import Settings
from app.db import session_scope
from app.jobs import lifecycle, repository
from app.jobs.local_worker import WORKER_ID_ENV
from app.jobs.reconciler import Reconciler, note_dispatch, reconcile_once
from app.jobs.tfprocess import crash_reason, settings_env

__all__ = ["LocalExecutor", "reconcile_once"]

log = logging.getLogger("convlens.jobs")


class LocalExecutor:
    """Worker subprocesses plus a reconciler, owned by the API process."""

    name = "local"

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        self.settings = settings
        self.count = settings.local_workers if workers is None else workers
        self.processes: list[subprocess.Popen[str]] = []
        self.worker_ids: list[str] = []
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._stopping = threading.Event()
        self.reconciler = Reconciler(settings, self._send)
        self.restarts = 0

    def _spawn(self, index: int) -> None:
        """Start worker ``index`` (under the lock) and a thread that waits for its exit."""
        worker_id = f"local:{socket.gethostname()}:{os.getpid()}:{index}:{uuid.uuid4().hex[:8]}"
        env = settings_env(self.settings)
        env[WORKER_ID_ENV] = worker_id
        process = subprocess.Popen(
            [sys.executable, "-m", "app.jobs.local_worker"], stdin=subprocess.PIPE, text=True, env=env
        )
        if index < len(self.processes):
            self.processes[index], self.worker_ids[index] = process, worker_id
        else:
            self.processes.append(process)
            self.worker_ids.append(worker_id)
        threading.Thread(
            target=self._watch, args=(index, process, worker_id), name=f"watch-worker-{index}", daemon=True
        ).start()

    def start(self) -> None:
        with self._lock:
            for index in range(self.count):
                self._spawn(index)
        self.reconciler.start()

    def _watch(self, index: int, process: subprocess.Popen[str], worker_id: str) -> None:
        code = process.wait()
        if self._stopping.is_set():
            return
        reason = f"worker lost: {crash_reason(code).replace('the TensorFlow process', 'its process')}"
        log.warning("local worker %s (%s) exited with %s: restarting it", process.pid, worker_id, code)
        requeued: list[tuple[str, str]] = []
        paths: list[Path] = []
        try:
            with session_scope(self.settings) as session:
                for row, status in repository.release_worker_jobs(session, worker_id, reason):
                    if status == "queued":
                        requeued.append((row.id, row.kind))
                    else:
                        paths += lifecycle.ended(session, self.settings, row)
        except Exception:  # noqa: BLE001 - the reconciler finds the job by its heartbeat instead
            log.exception("could not release the jobs of worker %s", worker_id)
        lifecycle.delete_paths(paths)
        with self._lock:
            if self._stopping.is_set() or self.processes[index] is not process:
                return
            self._spawn(index)
            self.restarts += 1
        for job_id, kind in requeued:
            self._send(job_id, kind)

    def _send(self, job_id: str, kind: str | None = None) -> bool:
        with self._lock:
            alive = [p for p in self.processes if p.poll() is None]
            if not alive:
                return False  # the workers poll the database when they come back
            process = alive[next(self._next) % len(alive)]
            try:
                assert process.stdin is not None
                process.stdin.write(job_id + "\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                log.warning("worker %s did not take job %s; it will poll for it", process.pid, job_id)
                return False
        note_dispatch(self.settings, job_id)
        return True

    def dispatch(self, job_id: str, kind: str | None = None) -> bool:
        """Tell one worker about ``job_id`` (after the row is committed). Never raises:
        a job that could not be handed over stays queued for the workers' polling and the
        reconciler. True when a worker got it."""
        try:
            return self._send(job_id, kind)
        except Exception:  # noqa: BLE001
            log.warning("dispatch of job %s failed; it stays queued", job_id, exc_info=True)
            return False

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.reconciler.stop()
        with self._lock:
            processes, self.processes = self.processes, []
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except OSError:
                    pass

    def health(self) -> dict[str, Any]:
        alive = sum(1 for p in self.processes if p.poll() is None)
        return {
            "status": "ok" if alive == self.count else "degraded",
            "executor": "local",
            "workers": self.count,
            "alive": alive,
            "restarts": self.restarts,
        }

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]
