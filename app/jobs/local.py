"""The embedded executor: worker subprocesses beside the API, and the reconciler.

``convlens serve`` starts ``settings.local_workers`` fresh interpreters
(``python -m app.jobs.local_worker``); a dispatch writes the job id to one of them. The
reconciler thread requeues running jobs whose heartbeat went stale (or fails them after
``max_attempts``), ends cancelled queued jobs, restarts dead workers, and re-sends
queued ids. No extra server is needed.

Example::

    executor = LocalExecutor(settings); executor.start()
    executor.dispatch(job.id)          # after the row is committed
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.runner import settings_env

log = logging.getLogger("convlens.jobs")


def reconcile_once(settings: Settings, dispatch: Callable[[str], None]) -> dict[str, list[str]]:
    """One pass of the reconciler (shared by both executors)."""
    with session_scope(settings) as session:
        changed = repository.recover_stale(
            session, stale_before=repository.utc_cutoff(settings.heartbeat_timeout_s)
        )
        exhausted = repository.fail_exhausted_queued(session)
        cancelled = repository.cancel_queued(session)
    requeued = [job_id for job_id, status in changed if status == "queued"]
    with session_scope(settings) as session:
        waiting = repository.queued_ids(
            session, limit=50, older_than=repository.utc_cutoff(settings.reconcile_interval_s)
        )
    for job_id in dict.fromkeys(requeued + waiting):
        try:
            dispatch(job_id)
        except Exception:  # noqa: BLE001
            log.warning("reconciler could not dispatch %s", job_id, exc_info=True)
    failed = [job_id for job_id, status in changed if status == "failed"] + exhausted
    if changed or exhausted or cancelled:
        log.info("reconciler: requeued %s, failed %s, cancelled %s", requeued, failed, cancelled)
    return {"requeued": requeued, "failed": failed, "cancelled": cancelled, "redispatched": waiting}


class Reconciler:
    """A daemon thread calling :func:`reconcile_once` every ``reconcile_interval_s``."""

    def __init__(
        self,
        settings: Settings,
        dispatch: Callable[[str], None],
        extra: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.extra = extra
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convlens-reconciler", daemon=True)
        self.last_run: float | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.reconcile_interval_s):
            try:
                if self.extra is not None:
                    self.extra()
                reconcile_once(self.settings, self.dispatch)
                self.last_run = time.time()
            except Exception:  # noqa: BLE001 - keep reconciling
                log.exception("reconciler pass failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LocalExecutor:
    """Worker subprocesses plus a reconciler, owned by the API process."""

    name = "local"

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        self.settings = settings
        self.count = settings.local_workers if workers is None else workers
        self.processes: list[subprocess.Popen[str]] = []
        self._lock = threading.Lock()
        self._next = itertools.count()
        self.reconciler = Reconciler(settings, self.dispatch, extra=self._restart_dead)
        self.restarts = 0

    def _spawn(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "app.jobs.local_worker"],
            stdin=subprocess.PIPE,
            text=True,
            env=settings_env(self.settings),
        )

    def start(self) -> None:
        with self._lock:
            self.processes = [self._spawn() for _ in range(self.count)]
        self.reconciler.start()

    def _restart_dead(self) -> None:
        with self._lock:
            for index, process in enumerate(self.processes):
                if process.poll() is not None:
                    log.warning(
                        "local worker %s exited with %s: restarting it",
                        process.pid,
                        process.returncode,
                    )
                    self.processes[index] = self._spawn()
                    self.restarts += 1

    def dispatch(self, job_id: str) -> None:
        """Tell one worker about ``job_id`` (call after the row is committed)."""
        with self._lock:
            alive = [p for p in self.processes if p.poll() is None]
            if not alive:
                return  # the workers poll the database when they come back
            process = alive[next(self._next) % len(alive)]
            try:
                assert process.stdin is not None
                process.stdin.write(job_id + "\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                log.warning(
                    "worker %s did not take job %s; it will poll for it", process.pid, job_id
                )

    def stop(self, timeout: float = 10.0) -> None:
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
