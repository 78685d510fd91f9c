"""``/metrics`` after real traffic: request histograms by route template, jobs by status, queue
depth and job durations read from the jobs table (SQLite and PostgreSQL), and the multiprocess
mode that sums several uvicorn workers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.db import session_scope
from app.models import DEFAULT_TENANT, Job
from app.models.base import utcnow
from tests.platform.containers import ROOT, base_env, free_port, stop, wait_for

EXAMPLES = sorted((ROOT / "app" / "api" / "examples").glob("seed_example*.json"))


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def request_count(samples: dict[Any, float], method: str, route: str, status: int) -> float:
    return value(
        samples,
        "convlens_http_request_duration_seconds_count",
        method=method,
        route=route,
        status=str(status),
    )


def buckets(samples: dict[Any, float], name: str, **labels: str) -> list[tuple[float, float]]:
    found = []
    for (sample_name, sample_labels), sample_value in samples.items():
        found_labels = dict(sample_labels)
        if sample_name == f"{name}_bucket" and all(
            found_labels.get(k) == v for k, v in labels.items()
        ):
            found.append((float(found_labels["le"]), sample_value))
    return sorted(found)


def test_metrics_show_the_traffic_and_the_jobs(any_client: Any, any_settings: Any) -> None:
    assert len(EXAMPLES) == 3
    before = scrape(any_client)
    ids = []
    for example in EXAMPLES:
        response = any_client.post(
            "/v1/analyses", json={"architecture": json.loads(example.read_text())}
        )
        assert response.status_code == 201, response.text[:500]
        ids.append(response.json()["id"])
    for analysis_id in ids:
        assert any_client.get(f"/v1/analyses/{analysis_id}").status_code == 200
    assert any_client.get("/v1/analyses/00000000-0000-0000-0000-000000000000").status_code == 404
    assert any_client.get("/no/such/route").status_code == 404
    after = scrape(any_client)

    def delta(method: str, route: str, status: int) -> float:
        return request_count(after, method, route, status) - request_count(
            before, method, route, status
        )

    assert delta("POST", "/v1/analyses", 201) == 3
    assert delta("GET", "/v1/analyses/{analysis_id}", 200) == 3
    assert delta("GET", "/v1/analyses/{analysis_id}", 404) == 1
    assert delta("GET", "<unmatched>", 404) == 1
    assert not any(dict(labels).get("route", "").startswith("/no/") for _, labels in after), (
        "raw paths must not become labels"
    )

    post_buckets = buckets(
        after,
        "convlens_http_request_duration_seconds",
        method="POST",
        route="/v1/analyses",
        status="201",
    )
    counts = [count for _, count in post_buckets]
    assert counts == sorted(counts), "cumulative buckets never decrease"
    assert post_buckets[-1] == (float("inf"), request_count(after, "POST", "/v1/analyses", 201))
    assert (
        value(
            after,
            "convlens_http_request_duration_seconds_sum",
            method="POST",
            route="/v1/analyses",
            status="201",
        )
        > 0
    )

    with session_scope(any_settings) as session:
        stored = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.kind == "analysis", Job.status == "succeeded")
        )
    assert stored == 3
    assert value(after, "convlens_jobs", kind="analysis", status="succeeded") == stored
    assert value(after, "convlens_jobs", kind="training", status="running") == 0
    assert value(after, "convlens_metrics_database_up") == 1


def test_job_durations_and_queue_depth_come_from_the_rows(
    any_client: Any, any_settings: Any
) -> None:
    """Known timestamps land in the right buckets, on SQLite (text timestamps) and PostgreSQL."""
    now = utcnow()
    runs = [("succeeded", 0.3), ("succeeded", 7.0), ("succeeded", 45.0), ("failed", 2.0)]
    with session_scope(any_settings) as session:
        for status, seconds in runs:
            started = now - timedelta(seconds=100)
            session.add(
                Job(
                    tenant_id=DEFAULT_TENANT,
                    kind="training",
                    status=status,
                    created_at=started - timedelta(seconds=4),
                    started_at=started,
                    finished_at=started + timedelta(seconds=seconds),
                )
            )
        session.add(Job(tenant_id=DEFAULT_TENANT, kind="training", status="queued", created_at=now))
        session.add(
            Job(tenant_id=DEFAULT_TENANT, kind="gradients", status="queued", created_at=now)
        )
    samples = scrape(any_client)
    assert value(samples, "convlens_jobs", kind="training", status="succeeded") == 3
    assert value(samples, "convlens_jobs", kind="training", status="failed") == 1
    assert value(samples, "convlens_queue_depth", kind="training") == 1
    assert value(samples, "convlens_queue_depth", kind="gradients") == 1

    succeeded = dict(
        buckets(samples, "convlens_job_duration_seconds", kind="training", status="succeeded")
    )
    assert succeeded[0.25] == 0 and succeeded[0.5] == 1 and succeeded[5.0] == 1
    assert succeeded[10.0] == 2 and succeeded[30.0] == 2 and succeeded[60.0] == 3
    assert succeeded[float("inf")] == 3
    assert (
        value(samples, "convlens_job_duration_seconds_count", kind="training", status="succeeded")
        == 3
    )
    total = value(samples, "convlens_job_duration_seconds_sum", kind="training", status="succeeded")
    assert total == pytest.approx(52.3, abs=0.01)
    failed = dict(
        buckets(samples, "convlens_job_duration_seconds", kind="training", status="failed")
    )
    assert failed[1.0] == 0 and failed[2.5] == 1
    waits = dict(buckets(samples, "convlens_job_queue_wait_seconds", kind="training"))
    assert waits[2.5] == 0 and waits[5.0] == 4, "each started run waited 4 s"


def test_a_database_outage_does_not_break_the_scrape(tmp_path: Path) -> None:
    from app.config import Settings
    from app.observability.metrics import render

    broken = Settings(
        data_dir=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    text = render(broken).decode()
    assert "convlens_metrics_database_up 0.0" in text
    assert "convlens_http_request_duration_seconds" in text


@pytest.mark.slow
def test_multiprocess_mode_sums_every_uvicorn_worker(tmp_path: Path) -> None:
    """Two uvicorn workers with PROMETHEUS_MULTIPROC_DIR: every scrape, whichever worker answers,
    counts the requests of both."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = free_port()
    env = base_env(
        CONVLENS_DATA_DIR=str(tmp_path / "data"),
        CONVLENS_LOCAL_WORKERS="0",
        CONVLENS_AUTO_MIGRATE="false",
        CONVLENS_LOG_JSON="false",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", process=process, timeout=90)
        sent = 1  # the readiness probe above
        pids: set[str] = set()
        while sent < 400:
            for _ in range(20):  # a fresh connection each time, so both workers take requests
                assert (
                    httpx.get(f"{base}/healthz", headers={"Connection": "close"}).status_code == 200
                )
                sent += 1
            pids = {p.name.split("_")[-1] for p in multiproc.glob("histogram_*.db")}
            if len(pids) >= 2:
                break
        assert len(pids) >= 2, "both workers should have served requests"
        for _ in range(6):
            with httpx.Client(base_url=base, headers={"Connection": "close"}) as client:
                samples = scrape(client)
            assert request_count(samples, "GET", "/healthz", 200) == sent
    finally:
        stop(process)


@pytest.mark.redis
def test_broker_queue_lengths_are_exported_with_the_celery_executor(tmp_path: Path) -> None:
    """Messages waiting in Redis (a database of its own, so no worker consumes them)."""
    import redis

    from app.config import Settings
    from app.db import upgrade
    from app.jobs.celery_app import QUEUES
    from app.observability.metrics import render

    url = "redis://127.0.0.1:6379/12"
    client = redis.Redis.from_url(url)
    client.delete(*QUEUES)
    try:
        client.rpush("analysis", "a", "b", "c")
        settings = Settings(data_dir=tmp_path, executor="celery", broker_url=url)
        upgrade(settings)
        families = {f.name: f for f in text_string_to_metric_families(render(settings).decode())}
        lengths = {
            s.labels["queue"]: s.value for s in families["convlens_broker_queue_messages"].samples
        }
        assert lengths == {"analysis": 3.0, "training": 0.0}
    finally:
        client.delete(*QUEUES)
        client.close()
