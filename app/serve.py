"""``convlens serve``: one command that serves on every core.

The serving process does, once, what must happen once: it migrates the database (embedded
mode), starts the job executor (local worker subprocesses and the reconciler, or the Celery
dispatcher) and creates the demo data. Then it serves HTTP: in process with one HTTP worker,
otherwise with ``http_workers`` uvicorn processes (default: one per core) that hand job ids
back to the executor through :mod:`app.relay`. SQLite runs in WAL mode, so the processes
share the file.

Example::

    serve(get_settings(), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from app import db
from app.config import Settings
from app.demo import seed_demo_data
from app.gcpause import freeze_long_lived
from app.main import DISPATCH_SOCKET_ENV, create_app
from app.observability import configure_logging


def http_worker_count(settings: Settings) -> int:
    """``settings.http_workers``, or the CPU cores this process may run on."""
    if settings.http_workers > 0:
        return settings.http_workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def serve(settings: Settings, *, host: str, port: int) -> None:
    import uvicorn

    from app.jobs import create_executor
    from app.relay import DispatchRelay

    configure_logging(settings)
    if settings.auto_migrate:
        db.upgrade(settings)
    else:
        db.ensure_default_tenant(settings)
    executor = create_executor(settings)
    executor.start()
    checkpointer = db.WalCheckpointer(settings).start()
    runtime = Path(tempfile.mkdtemp(prefix="convlens-serve-"))
    relay = None
    try:
        workers_run = settings.executor == "celery" or settings.local_workers > 0
        seed_demo_data(settings, executor.dispatch if workers_run else None)
        db.dispose_engines()  # the HTTP processes open their own connections
        options: dict[str, Any] = {"host": host, "port": port, "log_config": None, "proxy_headers": True,
                   "timeout_graceful_shutdown": 10}
        count = http_worker_count(settings)
        if count == 1:
            app = create_app(settings, standalone=False, executor=executor)
            freeze_long_lived()
            uvicorn.run(app, **options)
            return
        relay = DispatchRelay(runtime / "dispatch.sock", executor).start()
        _export(settings, {DISPATCH_SOCKET_ENV: str(relay.path)})
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # HTTP metrics summed across processes
            metrics_dir = runtime / "metrics"
            metrics_dir.mkdir()
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        uvicorn.run("app.main:create_worker_app", factory=True, workers=count, **options)
    finally:
        if relay is not None:
            relay.stop()
        executor.stop()
        checkpointer.stop()
        shutil.rmtree(runtime, ignore_errors=True)


def _export(settings: Settings, extra: dict[str, str]) -> None:
    """Hand the settings as given on the command line to the HTTP processes (they read the
    environment) and never let them migrate or seed again."""
    os.environ.update(extra)
    os.environ["CONVLENS_DATA_DIR"] = str(settings.data_dir)
    os.environ["CONVLENS_DATABASE_URL"] = settings.database_url
    os.environ["CONVLENS_LOCAL_WORKERS"] = str(settings.local_workers)
