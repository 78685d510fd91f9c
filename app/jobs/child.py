"""``python -m app.jobs.child``: a TensorFlow process that runs exactly one job, then exits.

The worker starts it ahead of time (TensorFlow and every TensorFlow kind's modules imported
while idle, so a job starts within milliseconds), hands it one job as a JSON line on stdin
(``{"job", "architecture", "settings", "work_dir"}``) and reads its messages from the pipe
named by ``CONVLENS_MESSAGE_FD`` (see :mod:`app.jobs.tfprocess`). Exiting after one job
returns every byte of GPU memory. The process never opens the database, and dies with its
parent (``PR_SET_PDEATHSIG``), so killing a worker never leaves an orphan training.

An empty line or EOF before the job makes it exit without work; ``stop`` after the job asks
the job to stop at its next step.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


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


class ChildReporter:
    """The handler's progress, events and stop flag, over the message pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        self.send({"type": "progress", "fraction": fraction, "detail": detail})

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.send({"type": "event", "kind": kind, "payload": payload})

    def should_stop(self) -> bool:
        return self.stop.is_set()

    def listen(self) -> None:
        """Read ``stop`` lines from the worker (a cancel); EOF means the worker is gone."""

        def read() -> None:
            for line in sys.stdin:
                if line.strip() == "stop":
                    self.stop.set()
            os._exit(71)

        threading.Thread(target=read, name="worker-commands", daemon=True).start()


def problem_of(exc: BaseException) -> dict[str, Any]:
    """The job's error record for an exception raised by a handler."""
    from app.errors import DomainError

    if isinstance(exc, DomainError):
        return exc.to_problem()
    out_of_memory = isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError"
    if out_of_memory:
        return {
            "code": "resource_limit_exceeded",
            "title": "The job ran out of memory",
            "detail": "The job needed more memory than one TensorFlow job may use "
            f"(tf_memory_bytes). {type(exc).__name__}: {str(exc)[:400]}",
        }
    return {
        "code": "internal_error",
        "title": "The job failed",
        "detail": f"{type(exc).__name__}: {exc}"[:2000],
        "trace": traceback.format_exc()[-4000:],
    }


def main() -> int:
    import importlib
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    reporter = ChildReporter(int(os.environ["CONVLENS_MESSAGE_FD"]))
    # Everything a job needs, imported before the job arrives.
    from app.worker.runtime import init_tensorflow

    init_tensorflow()
    from app.jobs.kinds import ArchitectureSpec, JobContext, JobSpec, get_kind, tensorflow_preloads

    for module in tensorflow_preloads():
        importlib.import_module(module)
    from app.config import Settings

    reporter.send({"type": "ready"})
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    message = json.loads(line)
    settings = Settings(**message["settings"])
    from app.observability import bind_job_id, configure_logging

    configure_logging(settings)
    job = JobSpec.from_dict(message["job"])
    context = JobContext(
        job=job,
        architecture=ArchitectureSpec.from_dict(message["architecture"]),
        settings=settings,
        reporter=reporter,
        work_dir=Path(message["work_dir"]),
    )
    reporter.listen()
    with bind_job_id(job.id):
        try:
            result = get_kind(job.kind).run(context)
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the worker
            reporter.send({"type": "error", "error": problem_of(exc)})
        else:
            reporter.send({"type": "result", "result": result})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip TensorFlow's slow interpreter teardown: the outcome is sent
