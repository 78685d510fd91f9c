"""The Celery executor: Celery 5 with a Redis broker (RabbitMQ works with an amqp:// URL).

Queues: ``analysis`` (CPU: static analyses) and ``training`` (TensorFlow: measured
gradients and training runs; route them to GPU nodes with ``convlens worker --queues
training``). A message carries only a job id; the task claims the row like a local
worker does, so a duplicate or redelivered message is harmless.

Reliability settings: ``task_acks_late`` (a message is acknowledged after the job ran),
``worker_prefetch_multiplier=1``, ``task_reject_on_worker_lost`` (a prefork child killed
mid-task puts the message back; the row's attempt cap ends a job that keeps killing
workers), soft and hard time limits, and a broker visibility timeout above the longest
limit (a message is not redelivered while its job may still be running). Workers use the
``solo`` pool by default: the worker process never forks after start, and never imports
TensorFlow (each TensorFlow job runs in a fresh child process).

Run a worker::

    CONVLENS_EXECUTOR=celery convlens worker --queues analysis,training
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from app.config import Settings
from app.jobs.runner import HARD_LIMIT_GRACE_S, WorkerRuntime, new_worker_id, settings_from_env

log = logging.getLogger("convlens.jobs")

QUEUES = ("analysis", "training")
TASK_NAME = "convlens.run_job"


def queue_for(kind: str) -> str:
    return "analysis" if kind == "analysis" else "training"


def longest_limit_s(settings: Settings) -> float:
    return (
        max(
            settings.analysis_time_limit_s,
            settings.gradient_time_limit_s,
            settings.training_time_limit_s,
        )
        + HARD_LIMIT_GRACE_S
    )


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured from ``settings`` (one per process)."""
    app = Celery("convlens", broker=settings.broker_url, backend=settings.result_backend or None)
    longest = longest_limit_s(settings)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue="analysis",
        task_queues=None,
        task_create_missing_queues=True,
        task_soft_time_limit=longest,
        task_time_limit=longest + 60,
        broker_transport_options={"visibility_timeout": int(longest * 2 + 120)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
    )
    app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)(run_job)
    return app


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = WorkerRuntime(settings_from_env(), new_worker_id("celery"))
    return _runtime


def run_job(task: Any, job_id: str) -> str | None:
    """The task: claim the row and run it (no-op when the job is done or held elsewhere)."""
    outcome = runtime().handle(job_id)
    log.info("job %s: %s", job_id, outcome or "not claimable (done or held elsewhere)")
    return outcome


@signals.worker_ready.connect
def _warm_up(**_: Any) -> None:
    runtime().prespawn()


@signals.worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    if _runtime is not None:
        _runtime.release_current()
        _runtime.shutdown()


#: The app a ``celery -A app.jobs.celery_app worker`` command loads (settings from the environment).
app = make_celery(settings_from_env())


def _observe() -> None:
    from app.observability.celery import install_celery_observability

    install_celery_observability(settings_from_env())


_observe()


class CeleryExecutor:
    """API side: sends job ids to the broker, runs the reconciler in the API process."""

    name = "celery"

    def __init__(self, settings: Settings) -> None:
        from app.jobs.local import Reconciler

        self.settings = settings
        self.app = make_celery(settings)
        self.reconciler = Reconciler(settings, self.dispatch)

    def start(self) -> None:
        self.reconciler.start()

    def stop(self) -> None:
        self.reconciler.stop()

    def dispatch(self, job_id: str) -> None:
        """Send ``job_id`` to its kind's queue (call after the row is committed)."""
        from app.db import session_scope
        from app.models import Job

        with session_scope(self.settings) as session:
            job = session.get(Job, job_id)
            kind = job.kind if job is not None else "analysis"
        self.app.send_task(TASK_NAME, args=[job_id], queue=queue_for(kind))

    def health(self) -> dict[str, Any]:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=1)
            broker = "ok"
        except Exception as exc:  # noqa: BLE001
            broker = f"unreachable: {type(exc).__name__}"
        return {
            "status": "ok" if broker == "ok" else "degraded",
            "executor": "celery",
            "broker": broker,
            "queues": list(QUEUES),
        }
