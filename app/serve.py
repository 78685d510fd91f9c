"""``convlens serve``: one command that serves on every core.

The serving process does, once, what must happen once: it migrates the database (embedded
mode), starts the job executor (local worker subprocesses and the reconciler, or the Celery
dispatcher) and creates the demo data. Then it serves HTTP: in process with one HTTP worker,
otherwise with ``http_workers`` uvicorn processes (default: one per core) that hand job ids
back to the executor through :mod:`app.relay`. SQLite runs in WAL mode, so the processes
share the file. On Linux each HTTP process listens on a socket of its own
(:class:`ReusePortListener`), so that the kernel spreads connections over them.

Example::

    serve(get_settings(), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
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
        run_http_processes(settings, count, options)
    finally:
        if relay is not None:
            relay.stop()
        executor.stop()
        checkpointer.stop()
        shutil.rmtree(runtime, ignore_errors=True)


def run_http_processes(settings: Settings, count: int, options: dict[str, Any]) -> None:
    """``count`` uvicorn processes of :func:`app.main.create_worker_app` under uvicorn's
    supervisor (restarted when one dies, stopped on SIGTERM), each on a listening socket of its
    own where the platform spreads connections over such sockets."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    target = "app.main:create_worker_app"
    if not (settings.http_reuse_port and ReusePortListener.supported()):
        uvicorn.run(target, factory=True, workers=count, **options)
        return
    config = uvicorn.Config(target, factory=True, workers=count, **options)
    with ReusePortListener.reserve(config.host, config.port, backlog=config.backlog) as listener:
        Multiprocess(config, sockets=[listener]).run()


class ReusePortListener(socket.socket):
    """The service's port, held by the serving process, that becomes a listening socket of its
    own in each HTTP process it is handed to.

    With one listening socket shared by the HTTP processes (uvicorn's ``--workers``), every
    process waits on it and whichever wakes first accepts all the connections waiting: wrk's
    32 keep-alive connections landed 30 on one process and 2 on the other, and the 30 waited
    about fifteen times as long as the 2 (the totals were the same: both cores stayed busy).
    Sockets bound to the same address with ``SO_REUSEPORT`` each get their own queue, and
    Linux hands each new connection to one of them by a hash of its addresses (16/16, 15/17
    in the same runs).

    uvicorn's supervisor gives each process it starts (or restarts) the sockets it was given,
    pickled into the new process: this one unpickles as a new socket, bound to the same
    address with ``SO_REUSEPORT``, listening. The serving process's own socket is bound but
    never listens (no connection is queued on it): it keeps the port, and a port already in
    use fails here, before any HTTP process starts.
    """

    backlog: int  # what each HTTP process's own socket listens with

    @staticmethod
    def supported() -> bool:
        """Linux (3.9+) spreads connections over the sockets; elsewhere ``SO_REUSEPORT`` may
        give them all to one socket."""
        return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")

    @classmethod
    def reserve(cls, host: str, port: int, *, backlog: int = 2048) -> ReusePortListener:
        """Bind (not listen) ``host:port`` with ``SO_REUSEPORT`` in the serving process."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = cls(family, socket.SOCK_STREAM)
        try:
            _reuse_port(listener)
            listener.bind((host, port))
        except OSError:
            listener.close()
            raise
        listener.backlog = backlog
        return listener

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _listen, (self.family, self.getsockname()[:2], self.backlog)


def _reuse_port(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _listen(family: int, address: tuple[str, int], backlog: int) -> socket.socket:
    """In an HTTP process: its own listening socket on the service's address."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        _reuse_port(sock)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _export(settings: Settings, extra: dict[str, str]) -> None:
    """Hand the settings as given on the command line to the HTTP processes (they read the
    environment) and never let them migrate or seed again."""
    os.environ.update(extra)
    os.environ["CONVLENS_DATA_DIR"] = str(settings.data_dir)
    os.environ["CONVLENS_DATABASE_URL"] = settings.database_url
    os.environ["CONVLENS_LOCAL_WORKERS"] = str(settings.local_workers)
