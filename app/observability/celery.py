"""Celery workers log like the API: JSON lines, each carrying the job id of the task it runs.

Call once where the Celery app is created (worker side)::

    from app.observability.celery import install_celery_observability
    install_celery_observability(settings)

- ``setup_logging``: connecting to this signal stops Celery from installing its own log format;
  ``configure_logging(settings)`` is used instead (JSON when ``settings.log_json``).
- ``task_prerun`` / ``task_postrun``: the task's first argument (the job id: a queue only ever
  carries job ids) is bound with the same context variable as ``bind_job_id``, so every log
  line written while the task runs has ``job_id``.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from app.config import Settings
from app.observability.context import job_id_var
from app.observability.logs import configure_logging

_tokens: dict[str, Token[str | None]] = {}
_installed: list[Any] = []


def job_id_of(args: Any, kwargs: Any) -> str | None:
    """The job id a convlens task was called with: ``args[0]`` or ``kwargs['job_id']``."""
    if args:
        return str(args[0])
    if isinstance(kwargs, dict) and kwargs.get("job_id"):
        return str(kwargs["job_id"])
    return None


def install_celery_observability(settings: Settings) -> None:
    """Connect the Celery signals (idempotent: connecting twice keeps one receiver each)."""
    if _installed:
        return
    from celery import signals

    def setup_logging(**_: Any) -> None:
        configure_logging(settings)

    def task_prerun(
        task_id: str | None = None, args: Any = None, kwargs: Any = None, **_: Any
    ) -> None:
        job_id = job_id_of(args, kwargs)
        if job_id is not None and task_id is not None:
            _tokens[task_id] = job_id_var.set(job_id)

    def task_postrun(task_id: str | None = None, **_: Any) -> None:
        token = _tokens.pop(task_id or "", None)
        if token is not None:
            try:
                job_id_var.reset(token)
            except ValueError:  # set in another context (thread pool): clear it there instead
                job_id_var.set(None)

    signals.setup_logging.connect(setup_logging, weak=False)
    signals.task_prerun.connect(task_prerun, weak=False)
    signals.task_postrun.connect(task_postrun, weak=False)
    _installed.extend([setup_logging, task_prerun, task_postrun])
