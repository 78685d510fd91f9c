"""``python -m app.jobs.local_worker``: one embedded worker process started by ``convlens serve``.

It waits for job ids on stdin (the service writes one per dispatch) and also polls the
database, so queued and interrupted jobs run after a restart even if no id arrives.
EOF on stdin means the service is gone: the worker exits. SIGTERM: the running job is
given back (queued again without spending an attempt) and the worker exits. Its worker id
comes from the service (``CONVLENS_WORKER_ID``), which releases this worker's job the
moment the process exits.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading

from app.db import session_scope
from app.jobs import repository
from app.jobs.runner import WorkerRuntime, new_worker_id, settings_from_env

log = logging.getLogger("convlens.jobs")

WORKER_ID_ENV = "CONVLENS_WORKER_ID"


def candidates(runtime: WorkerRuntime) -> list[str]:
    """Queued jobs, then running ones whose heartbeat is stale (interrupted elsewhere)."""
    settings = runtime.settings
    with session_scope(settings) as session:
        ids = repository.queued_ids(session, limit=10)
        stale = repository.stale_running(
            session, stale_before=repository.utc_cutoff(settings.heartbeat_timeout_s), limit=10
        )
        ids += [row.id for row in stale]
    return ids


def main() -> int:
    settings = settings_from_env()
    from app.observability import configure_logging

    configure_logging(settings)
    runtime = WorkerRuntime(settings, os.environ.get(WORKER_ID_ENV) or new_worker_id("local"))
    stopping = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stopping.set()
        runtime.release_current()
        runtime.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    runtime.start()
    stdin = sys.stdin
    log.info("local worker %s started", runtime.worker_id)
    while not stopping.is_set():
        wanted: list[str] = []
        readable, _, _ = select.select([stdin], [], [], settings.job_poll_interval_s)
        if readable:
            line = stdin.readline()
            if not line:  # the service is gone
                break
            wanted = [line.strip()] if line.strip() else []
        try:
            ran = False
            for job_id in wanted or candidates(runtime):
                if runtime.handle(job_id) is not None:
                    ran = True
                    break
            while ran:  # keep draining the queue before waiting again
                ran = any(runtime.handle(job_id) is not None for job_id in candidates(runtime)[:1])
        except Exception:  # noqa: BLE001 - a database blink must not end the worker
            log.exception("local worker loop error")
    runtime.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
