"""The Celery executor: Celery 5 with a Redis broker (RabbitMQ works with an amqp:// URL).

Queues come from the job-kind registry (``analysis`` for static analyses, ``training`` for
measured gradients and training runs; route them to GPU nodes with ``convlens worker
--queues training``). A message carries only a job id; the task claims the row like a local
worker does, so a duplicate or redelivered message is harmless.

Reliability settings: ``task_acks_late`` (a message is acknowledged after the job ran),
``worker_prefetch_multiplier=1``, ``task_reject_on_worker_lost``, soft and hard time limits,
and a broker visibility timeout above the longest limit (a message is not redelivered while
its job may still run). A lost worker is noticed by its jobs' heartbeats (the reconciler,
within ``heartbeat_timeout_s``), not by the broker. Workers use the ``solo`` pool by
default: the worker process never forks after start, and never imports TensorFlow.

The API side never waits on a broker for long: every broker call it makes has connect, read
and publish timeouts (``broker_timeout_s``), a failed send leaves the job queued (the
reconciler sends it later) and, for a few seconds after a failure, requests do not try the
broker at all.

Run a worker::

    CONVLENS_EXECUTOR=celery convlens worker --queues analysis,training
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery, signals

from app.config import Settings
from app.jobs.kinds import all_kinds, get_kind, queues
from app.jobs.runner import HARD_LIMIT_GRACE_S, WorkerRuntime, new_worker_id, settings_from_env

log = logging.getLogger("convlens.jobs")

QUEUES = queues()
TASK_NAME = "convlens.run_job"
#: After a failed send, requests skip the broker this long (the reconciler keeps trying).
BROKER_BACKOFF_S = 5.0
#: Worker-side socket timeout: above the consumer's blocking pop (1 s), so idle is not an error.
WORKER_SOCKET_TIMEOUT_S = 30.0


def queue_for(kind: str) -> str:
    return get_kind(kind).queue


def longest_limit_s(settings: Settings) -> float:
    return max(kind.time_limit_s(settings) for kind in all_kinds()) + HARD_LIMIT_GRACE_S


def make_celery(settings: Settings, *, role: str = "worker") -> Celery:
    """A Celery app configured from ``settings`` (one per process).

    ``role="api"``: short broker timeouts and no publish retries (a request never hangs on
    the broker); ``"worker"``: the consumer's defaults with a longer socket timeout.
    """
    app = Celery("convlens", broker=settings.broker_url, backend=settings.result_backend or None)
    longest = longest_limit_s(settings)
    timeout = settings.broker_timeout_s if role == "api" else WORKER_SOCKET_TIMEOUT_S
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
        task_publish_retry=role != "api",
        broker_transport_options={
            "visibility_timeout": int(longest * 2 + 120),
            "socket_timeout": timeout,
            "socket_connect_timeout": min(timeout, settings.broker_timeout_s * 2),
            "socket_keepalive": True,
            "retry_on_timeout": False,
            "max_retries": 0 if role == "api" else 3,
        },
        broker_connection_timeout=min(timeout, settings.broker_timeout_s * 2),
        broker_connection_retry=role != "api",
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=0 if role == "api" else 100,
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
        _runtime = WorkerRuntime(settings_from_env(), new_worker_id("celery"), executor="celery")
    return _runtime


def run_job(task: Any, job_id: str) -> str | None:
    """The task: claim the row and run it (no-op when the job is done or held elsewhere)."""
    outcome = runtime().handle(job_id)
    log.info("job %s: %s", job_id, outcome or "not claimable (done or held elsewhere)")
    return outcome


@signals.worker_ready.connect
def _warm_up(sender: Any = None, **_: Any) -> None:
    worker_queues = None
    try:  # the queues this worker consumes (``--queues``), for its presence row
        worker_queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    except AttributeError:
        pass
    rt = runtime()
    if worker_queues:
        rt.presence.queues = worker_queues
    rt.start()


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


def broker_check(settings: Settings) -> str:
    """"ok", or why the broker cannot be used, within ``broker_timeout_s`` (a frozen broker
    accepts connections but never answers: only a round trip tells)."""
    timeout = settings.broker_timeout_s
    try:
        if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(
                settings.broker_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(settings.broker_url, connect_timeout=timeout) as connection:
                connection.ensure_connection(max_retries=0, timeout=timeout)
                connection.default_channel  # noqa: B018 - opens a channel: a round trip
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"unreachable: {type(exc).__name__}"


class CeleryExecutor:
    """API side: sends job ids to the broker, runs the reconciler in the API process."""

    name = "celery"

    def __init__(self, settings: Settings) -> None:
        from app.jobs.reconciler import Reconciler

        self.settings = settings
        self.app = make_celery(settings, role="api")
        self.reconciler = Reconciler(settings, self._send)
        self._lock = threading.Lock()
        self._skip_broker_until = 0.0
        self.sent = 0

    def start(self) -> None:
        self.reconciler.start()

    def stop(self) -> None:
        self.reconciler.stop()

    def _send(self, job_id: str, kind: str | None = None) -> bool:
        """Publish the job id to its kind's queue; False (logged) when the broker failed."""
        from app.db import session_scope
        from app.jobs import repository
        from app.jobs.reconciler import note_dispatch

        if kind is None:
            with session_scope(self.settings) as session:
                kind = repository.kind_of(session, job_id) or "analysis"
        try:
            self.app.send_task(TASK_NAME, args=[job_id], queue=queue_for(kind), retry=False)
        except Exception as exc:  # noqa: BLE001 - the job stays queued; the reconciler resends
            with self._lock:
                self._skip_broker_until = time.monotonic() + BROKER_BACKOFF_S
            log.warning("could not send job %s to the broker (%s); it stays queued", job_id, type(exc).__name__)
            return False
        with self._lock:
            self._skip_broker_until = 0.0
            self.sent += 1
        note_dispatch(self.settings, job_id)
        return True

    def dispatch(self, job_id: str, kind: str | None = None) -> bool:
        """Send ``job_id`` to its kind's queue (after the row is committed). Never raises and
        never waits longer than the broker timeouts: a job that could not be sent stays queued
        and the reconciler sends it. True when the broker took it."""
        with self._lock:
            if time.monotonic() < self._skip_broker_until:
                return False  # the broker just failed: the reconciler will send it
        try:
            return self._send(job_id, kind)
        except Exception:  # noqa: BLE001
            log.warning("dispatch of job %s failed; it stays queued", job_id, exc_info=True)
            return False

    def health(self) -> dict[str, Any]:
        broker = broker_check(self.settings)
        return {
            "status": "ok" if broker == "ok" else "degraded",
            "executor": "celery",
            "broker": broker,
            "queues": list(QUEUES),
        }
