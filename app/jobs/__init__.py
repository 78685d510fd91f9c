"""Jobs: the database row is the truth, a queue only carries its id.

Two executors behind one interface (``start``, ``stop``, ``dispatch(job_id)``,
``health``), chosen by ``settings.executor``. ``dispatch`` never raises and never waits long:
a job it could not hand over stays queued, and the reconciler sends it later, so a request
that committed a job always answers (202). Job kinds are declared once, in
:mod:`app.jobs.kinds`.

- ``local`` (default): worker subprocesses started beside the API (:mod:`app.jobs.local`).
- ``celery``: Celery 5 with a Redis (or RabbitMQ) broker (:mod:`app.jobs.celery_app`).

Example::

    executor = create_executor(settings)
    executor.start()
    executor.dispatch(job_id)      # only after the job's row is committed; True when sent
"""

from __future__ import annotations

from typing import Any, Protocol

from app.config import Settings


class Executor(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def dispatch(self, job_id: str, kind: str | None = None) -> bool: ...
    def health(self) -> dict[str, Any]: ...


def create_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor`` names."""
    if settings.executor == "celery":
        from app.jobs.celery_app import CeleryExecutor

        return CeleryExecutor(settings)
    from app.jobs.local import LocalExecutor

    return LocalExecutor(settings)


__all__ = ["Executor", "create_executor"]
