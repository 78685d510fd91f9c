"""Structured logs: one JSON object per line, carrying the request id (accepted from
X-Request-ID or generated, echoed in the response) and the job id bound by the jobs code."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.observability import JsonFormatter, bind_job_id, bind_request_id, configure_logging
from app.observability.metrics import MetricsMiddleware


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(Settings(log_json=True, log_level="DEBUG"), stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def small_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(MetricsMiddleware)

    @app.get("/work/{item}")
    def work(item: str) -> dict[str, str]:  # sync: runs in the thread pool
        logging.getLogger("convlens.test").info("working on %s", item, extra={"item": item})
        return {"item": item}

    return app


def test_a_request_id_is_accepted_echoed_and_logged_from_the_thread_pool(
    log_stream: io.StringIO,
) -> None:
    with TestClient(small_app()) as client:
        response = client.get("/work/seven", headers={"X-Request-ID": "trace-abc.1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-abc.1"
    records = lines(log_stream)
    work = [r for r in records if r["logger"] == "convlens.test"]
    assert work and work[0]["request_id"] == "trace-abc.1" and work[0]["item"] == "seven"
    assert work[0]["message"] == "working on seven" and work[0]["level"] == "info"
    access = [r for r in records if r["logger"] == "convlens.access"]
    assert access[0]["request_id"] == "trace-abc.1"
    assert access[0]["status"] == 200 and access[0]["route"] == "/work/{item}"
    assert access[0]["duration_ms"] >= 0
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", access[0]["ts"])


def test_a_missing_or_unsafe_request_id_is_replaced(log_stream: io.StringIO) -> None:
    with TestClient(small_app()) as client:
        generated = client.get("/work/a").headers["x-request-id"]
        replaced = client.get("/work/b", headers={"X-Request-ID": "no spaces\tor tabs"}).headers[
            "x-request-id"
        ]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert re.fullmatch(r"[0-9a-f]{32}", replaced) and replaced != generated
    logged = {r["request_id"] for r in lines(log_stream) if r["logger"] == "convlens.test"}
    assert logged == {generated, replaced}


def test_the_full_service_logs_its_requests_with_ids(log_stream: io.StringIO, client: Any) -> None:
    response = client.get("/v1/analyses/unknown-id", headers={"X-Request-ID": "svc-42"})
    assert response.status_code == 404 and response.headers["x-request-id"] == "svc-42"
    access = [
        r
        for r in lines(log_stream)
        if r.get("request_id") == "svc-42" and r["logger"] == "convlens.access"
    ]
    assert (
        access and access[0]["status"] == 404 and access[0]["route"] == "/v1/analyses/{analysis_id}"
    )


def test_job_ids_are_bound_by_the_jobs_code(log_stream: io.StringIO) -> None:
    log = logging.getLogger("convlens.jobs")
    with bind_job_id("job-123"):
        log.info("step", extra={"step": 3})
        with bind_request_id("req-9"):
            log.warning("nested")
    log.info("after")
    records = [r for r in lines(log_stream) if r["logger"] == "convlens.jobs"]
    assert records[0] == {**records[0], "job_id": "job-123", "step": 3}
    assert "request_id" not in records[0]
    assert records[1]["job_id"] == "job-123" and records[1]["request_id"] == "req-9"
    assert "job_id" not in records[2]


def test_exceptions_and_structlog_events_are_json_too(log_stream: io.StringIO) -> None:
    import structlog

    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("convlens.x").exception("failed")
    with bind_job_id("job-7"):
        structlog.get_logger("convlens.structured").info("probe done", layers=12)
    records = lines(log_stream)
    failed = next(r for r in records if r["message"] == "failed")
    assert failed["level"] == "error" and "ValueError: bad value" in failed["exception"]
    probe = next(r for r in records if r["message"] == "probe done")
    assert probe["layers"] == 12 and probe["job_id"] == "job-7"


def test_text_logs_when_json_is_off() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging(Settings(log_json=False), stream=stream)
        with bind_job_id("job-5"):
            logging.getLogger("convlens.plain").info("hello")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    line = stream.getvalue().strip()
    assert not line.startswith("{") and "[job_id=job-5] hello" in line


def test_celery_workers_log_json_with_the_job_id(log_stream: io.StringIO) -> None:
    from celery import signals

    from app.observability import current_job_id
    from app.observability.celery import install_celery_observability

    root = logging.getLogger()
    install_celery_observability(Settings(log_json=True))
    install_celery_observability(Settings(log_json=True))  # idempotent
    signals.setup_logging.send(
        sender=None, loglevel="INFO", logfile=None, format="", colorize=False
    )
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    root.handlers[0].setStream(log_stream)  # type: ignore[attr-defined]
    signals.task_prerun.send(sender=None, task_id="t-1", task=None, args=["job-77"], kwargs={})
    assert current_job_id() == "job-77"
    logging.getLogger("convlens.jobs").info("claimed")
    signals.task_postrun.send(sender=None, task_id="t-1", task=None, args=["job-77"], kwargs={})
    assert current_job_id() is None
    claimed = [r for r in lines(log_stream) if r["message"] == "claimed"]
    assert claimed and claimed[0]["job_id"] == "job-77"
