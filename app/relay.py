"""The dispatch relay of ``convlens serve``: HTTP processes hand job ids to the one executor.

``convlens serve`` runs the job executor (local worker subprocesses and the reconciler) once,
in the serving process, and several HTTP processes beside it. An HTTP process sends the id of
each job it committed as one datagram on a Unix socket; the relay thread passes it to
``executor.dispatch``. Sending never blocks a request: when the socket is full or gone the
job simply stays queued in the database, where the reconciler and idle workers find it.

Example::

    relay = DispatchRelay(path, executor.dispatch).start()
    RelayClient(path).send(job_id)      # in an HTTP process, after the commit
    relay.stop()
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("convlens.relay")

_MAX_ID_BYTES = 200


class DispatchRelay:
    """Receives job ids on a Unix datagram socket and dispatches them, in a daemon thread."""

    def __init__(self, path: Path, dispatch: Callable[[str], None]) -> None:
        self.path = path
        self.dispatch = dispatch
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convlens-dispatch-relay", daemon=True)

    def start(self) -> DispatchRelay:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
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


class RelayClient:
    """Sends job ids to a :class:`DispatchRelay` without ever blocking."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def send(self, job_id: str) -> None:
        try:
            self.sock.sendto(job_id.encode("ascii"), self.path)
        except OSError:
            log.warning("dispatch relay unreachable: job %s stays queued for the reconciler", job_id)
