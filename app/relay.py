"""The dispatch relay of ``convlens serve``: HTTP processes hand job ids to the one executor.

``convlens serve`` runs the job executor (local worker subprocesses and the reconciler) once,
in the serving process, and several HTTP processes beside it. An HTTP process sends the id of
each job it committed as one datagram on a Unix socket; the relay thread passes it to
``executor.dispatch``. Sending never blocks a request: when the socket is full or gone the
job simply stays queued in the database, where the reconciler and idle workers find it. The
relay also writes ``executor.health()`` next to the socket every half second, which the HTTP
processes' ``/readyz`` reports.

Example::

    relay = DispatchRelay(path, executor).start()
    RelayClient(path).dispatch(job_id)      # in an HTTP process, after the commit
    relay.stop()
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("convlens.relay")

_MAX_ID_BYTES = 200


#: A health snapshot older than this is reported as stale.
HEALTH_STALE_S = 5.0


class _Executor(Protocol):
    def dispatch(self, job_id: str) -> None: ...
    def health(self) -> dict[str, Any]: ...


def health_path(socket_path: str | Path) -> Path:
    return Path(f"{socket_path}.health.json")


class DispatchRelay:
    """Receives job ids on a Unix datagram socket and dispatches them, in a daemon thread."""

    def __init__(self, path: Path, executor: _Executor) -> None:
        self.path = path
        self.executor = executor
        self.dispatch = executor.dispatch
        self._health_written = 0.0
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convlens-dispatch-relay", daemon=True)

    def start(self) -> DispatchRelay:
        self._write_health()
        self._thread.start()
        return self

    def _write_health(self) -> None:
        try:
            snapshot = {"at": time.time(), "health": self.executor.health()}
            target = health_path(self.path)
            temporary = target.with_suffix(".tmp")
            temporary.write_text(json.dumps(snapshot))
            os.replace(temporary, target)
        except Exception:  # noqa: BLE001 - /readyz then reports a stale snapshot
            log.warning("could not write the executor's health", exc_info=True)
        self._health_written = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() - self._health_written >= 0.5:
                self._write_health()
            try:
                data = self.sock.recv(_MAX_ID_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            job_id = data.decode("ascii", "replace").strip()
            if not job_id:
                continue
            try:
                self.dispatch(job_id)
            except Exception:  # noqa: BLE001 - the job stays queued for the reconciler
                log.warning("could not dispatch job %s; it stays queued", job_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        self.path.unlink(missing_ok=True)
        health_path(self.path).unlink(missing_ok=True)


class RelayClient:
    """The executor as an HTTP process of ``convlens serve`` sees it: ``dispatch`` sends job ids
    to a :class:`DispatchRelay` without ever blocking; ``health`` is the serving process's."""

    name = "relay"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def health(self) -> dict[str, Any]:
        try:
            snapshot = json.loads(health_path(self.path).read_text())
        except (OSError, ValueError):
            return {"status": "unknown", "detail": "the serving process has not reported its executor"}
        health: dict[str, Any] = snapshot.get("health") or {}
        age = time.time() - float(snapshot.get("at") or 0)
        if age > HEALTH_STALE_S:
            return {**health, "status": "stale", "age_s": round(age, 1)}
        return health

    def start(self) -> None:
        """Nothing to start: the serving process runs the executor."""

    def stop(self) -> None:
        self.sock.close()

    def dispatch(self, job_id: str) -> None:
        try:
            self.sock.sendto(job_id.encode("ascii"), self.path)
        except OSError:
            log.warning("dispatch relay unreachable: job %s stays queued for the reconciler", job_id)
