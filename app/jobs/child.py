"""``python -m app.jobs.child``: a TensorFlow process that runs exactly one job, then exits.

The worker starts it ahead of time (TensorFlow imported and initialised while idle, so a
job starts within milliseconds), hands it one claimed job as a JSON line on stdin, and
waits. Exiting after one job returns every byte of GPU memory. The process dies with
its parent (``PR_SET_PDEATHSIG``), so killing a worker never leaves an orphan training.

Protocol: the child prints ``ready`` on stdout once TensorFlow is up, reads one line
``{"job_id", "worker_id", "attempt", "kind", "settings"}``, runs it and exits 0 (the
outcome is in the database); an empty line or EOF makes it exit without work.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies; poll as a fallback elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the watchdog thread below covers it
        pass
    parent = os.getppid()

    def watchdog() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def main() -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Everything a job needs, imported before the job arrives.
    from app.worker.runtime import init_tensorflow

    init_tensorflow()
    import app.worker.gradients  # noqa: F401
    import app.worker.loader  # noqa: F401
    import app.worker.training  # noqa: F401
    from app.config import Settings
    from app.jobs import handlers
    from app.jobs.repository import Claim

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    message = json.loads(line)
    settings = Settings(**message["settings"])
    from app.observability import bind_job_id, configure_logging

    configure_logging(settings)
    held = Claim(message["job_id"], message["worker_id"], int(message["attempt"]), message["kind"])
    with bind_job_id(held.job_id):
        handlers.execute(settings, held)
    return 0


if __name__ == "__main__":
    sys.exit(main())
