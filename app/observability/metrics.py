"""Prometheus metrics: an ASGI middleware for HTTP requests and the ``/metrics`` route.

What is exported:

- ``convlens_http_request_duration_seconds{method,route,status}``: a histogram per route
  *template* (``/v1/analyses/{analysis_id}``, never the raw path; unmatched paths are
  ``<unmatched>``), so its ``_count`` is also the request counter.
- ``convlens_http_requests_in_progress{method}``.
- ``convlens_jobs{kind,status}``: jobs in the database by kind and status, read at scrape time
  (the jobs table is the truth, so every API replica reports the same numbers).
- ``convlens_queue_depth{kind}``: jobs waiting (status ``queued``) per kind, from the database;
  with the Celery executor also ``convlens_broker_queue_messages{queue}`` (Redis list lengths).
- ``convlens_job_duration_seconds{kind,status}``: a histogram computed at scrape time from the
  ``started_at``/``finished_at`` of finished jobs still stored (one aggregate SQL query); deleting
  jobs lowers it, which Prometheus treats as a counter reset.
- ``convlens_job_queue_wait_seconds{kind}``: created -> started, same source.
- ``convlens_stored_bytes{kind}``: the architectures' bytes as the storage quota counts them
  (:mod:`app.storage.usage`), and the bytes of the data folder's blob, dataset and upload files.

With ``auth_mode=api_key`` the route answers only ``Authorization: Bearer <metrics_token>``.

Several uvicorn/gunicorn worker processes: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty,
writable directory before the processes start (wipe it on every deploy). The HTTP metrics are
then written to memory-mapped files there and summed at scrape time by
``MultiProcessCollector``; the database-derived metrics are computed once per scrape, so they
are never double counted. Process metrics (``process_*``) are only exported in
single-process mode, as prometheus_client documents.

Example::

    app.add_middleware(MetricsMiddleware)
    app.include_router(metrics_router)
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.config import Settings
from app.observability.context import accept_request_id, request_id_var

access_log = logging.getLogger("convlens.access")
log = logging.getLogger("convlens.metrics")

#: Latency buckets (seconds): static analyses take milliseconds, uploads seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Job duration buckets (seconds): analyses take well under a second, training up to the limit.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED_ROUTE = "<unmatched>"

HTTP_LATENCY = Histogram(
    "convlens_http_request_duration_seconds",
    "HTTP request latency by route template, method and status (its _count counts requests).",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge(
    "convlens_http_requests_in_progress",
    "HTTP requests being served.",
    ["method"],
    multiprocess_mode="livesum",
)


@functools.cache
def _in_progress(method: str) -> Any:
    """The in-progress gauge of ``method`` (one of :data:`KNOWN_METHODS` or ``other``),
    looked up once per process instead of by ``labels()`` on every request."""
    return HTTP_IN_PROGRESS.labels(method)


@functools.cache
def _latency(method: str, route: str, status: int) -> Any:
    """The latency histogram of a method, route template and status, looked up once each."""
    return HTTP_LATENCY.labels(method, route, str(status))


def route_template(scope: Scope) -> str:
    """The route template that handled the request, e.g. ``/v1/analyses/{analysis_id}``."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Pure ASGI middleware: request id, latency histogram, one access log line per request.

    Accepts a client's ``X-Request-ID`` (a short token of letters, digits, ``._:-``) or
    generates one, binds it for the request's logs and echoes it in the response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = accept_request_id(headers.get(b"x-request-id"))
        token = request_id_var.set(request_id)
        method = scope.get("method", "GET") if scope.get("method") in KNOWN_METHODS else "other"
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        in_progress = _in_progress(method)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            in_progress.dec()
            route = route_template(scope)
            _latency(method, route, status).observe(elapsed)
            level = logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO
            if access_log.isEnabledFor(level):
                client = scope.get("client")
                access_log.log(
                    level,
                    "%s %s %d",
                    method,
                    scope.get("path", ""),
                    status,
                    extra={
                        "http_method": method,
                        "route": route,
                        "path": scope.get("path", ""),
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": client[0] if client else None,
                    },
                )
            request_id_var.reset(token)


# -- metrics read from the database at scrape time --------------------------------------------


def _histogram(
    name: str,
    documentation: str,
    label_names: list[str],
    rows: list[tuple[Any, ...]],
    buckets: tuple[float, ...],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    width = len(label_names)
    for row in rows:
        labels = [str(value) for value in row[:width]]
        counts = [int(value or 0) for value in row[width : width + len(buckets)]]
        total, total_seconds = int(row[-2] or 0), float(row[-1] or 0.0)
        family.add_metric(
            labels,
            [(_bound(b), c) for b, c in zip(buckets, counts, strict=True)] + [("+Inf", total)],
            max(total_seconds, 0.0),
        )
    return family


def _bound(value: float) -> str:
    return repr(float(value))


class DatabaseCollector(Collector):
    """Jobs by kind and status, queue depth and job durations, from the jobs table."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        from app.db import get_sessionmaker
        from app.jobs import repository
        from app.jobs.kinds import kind_names
        from app.models import JOB_STATUSES
        from app.storage.usage import stored_bytes

        up = GaugeMetricFamily(
            "convlens_metrics_database_up", "1 when the jobs table could be read for this scrape."
        )
        try:
            with get_sessionmaker(self.settings)() as session:
                counts = repository.counts_by_kind_and_status(session)
                durations = repository.run_time_histogram(session, JOB_BUCKETS)
                stored = stored_bytes(session, self.settings)
                waits = repository.queue_wait_histogram(session, JOB_BUCKETS)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB is down
            log.warning("metrics: the jobs table could not be read: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily(
            "convlens_jobs",
            "Jobs stored in the database, by kind and status.",
            labels=["kind", "status"],
        )
        kinds = sorted(set(kind_names()) | {kind for kind, _ in counts})
        for kind in kinds:
            for status in JOB_STATUSES:
                jobs.add_metric([kind, status], counts.get((kind, status), 0))
        yield jobs

        depth = GaugeMetricFamily(
            "convlens_queue_depth",
            "Jobs waiting to run (status queued in the database), by kind.",
            labels=["kind"],
        )
        for kind in kinds:
            depth.add_metric([kind], counts.get((kind, "queued"), 0))
        yield depth

        yield _histogram(
            "convlens_job_duration_seconds",
            "Run time (started_at to finished_at) of finished jobs still stored.",
            ["kind", "status"],
            durations,
            JOB_BUCKETS,
        )
        yield _histogram(
            "convlens_job_queue_wait_seconds",
            "Time from submission to start (created_at to started_at) of started jobs.",
            ["kind"],
            waits,
            JOB_BUCKETS,
        )
        storage = GaugeMetricFamily(
            "convlens_stored_bytes",
            "Bytes stored: architectures (all tenants, as the quota counts them) and the files of the "
            "data folder (blob_files, dataset_files, upload_files).",
            labels=["kind"],
        )
        for kind, value in stored.items():
            storage.add_metric([kind], float(value))
        yield storage
        yield from self._broker()

    def _broker(self) -> Iterator[Metric]:
        """Message counts of the Celery queues in Redis (only with the Celery executor)."""
        if self.settings.executor != "celery" or not self.settings.broker_url.startswith("redis"):
            return
        broker = GaugeMetricFamily(
            "convlens_broker_queue_messages",
            "Messages waiting in the broker's queue (Redis list length).",
            labels=["queue"],
        )
        try:
            import redis

            client = redis.Redis.from_url(
                self.settings.broker_url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
            try:
                for queue in broker_queue_names():
                    broker.add_metric([queue], float(client.llen(queue)))
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: the broker could not be read: %s", type(exc).__name__)
            return
        yield broker


def broker_queue_names() -> list[str]:
    """The Celery queue names (from the jobs package when it declares them)."""
    try:
        from app.jobs import celery_app  # type: ignore[attr-defined]

        names = getattr(celery_app, "QUEUES", None)
        if names:
            return [str(name) for name in names]
    except Exception:  # noqa: BLE001, S110 - optional: fall back to the documented names
        pass
    return ["analysis", "training"]


class _Combined(Collector):
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def process_registry() -> Any:
    """The registry holding this process's metrics, or all processes' in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render(settings: Settings) -> bytes:
    """The Prometheus text exposition for this scrape."""
    info = GaugeMetricFamily("convlens_build_info", "convlens version.", labels=["version"])
    info.add_metric([__version__], 1)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Combined(process_registry(), DatabaseCollector(settings), _Static(info)))
    return generate_latest(scrape)


class _Static(Collector):
    def __init__(self, *metrics: Metric) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format. Aggregate counts only, no tenant data.

    With ``auth_mode=api_key`` only ``Authorization: Bearer <metrics_token>`` is answered
    (no token set: refused); tenants' API keys do not open it."""
    settings: Settings = request.app.state.settings
    if settings.auth_mode != "none":
        refused = _metrics_refusal(settings, request.headers.get("authorization", ""))
        if refused is not None:
            return refused
    return Response(render(settings), media_type=CONTENT_TYPE_LATEST)


def _metrics_refusal(settings: Settings, authorization: str) -> Response | None:
    import hmac

    from app.api.problems import problem_response

    if not settings.metrics_token:
        return problem_response(
            403, "metrics_disabled", "Metrics are not served",
            "With auth_mode=api_key, /metrics needs a token of its own: set CONVLENS_METRICS_TOKEN and "
            "scrape with 'Authorization: Bearer <token>'.", instance="/metrics")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode()):
        return None
    return problem_response(401, "unauthorized", "Authentication required",
                            "Send the metrics token as 'Authorization: Bearer <token>'.", instance="/metrics")


#: The names app/main.py registers.
metrics_router = router

__all__ = ["MetricsMiddleware", "metrics_router", "render", "route_template"]
