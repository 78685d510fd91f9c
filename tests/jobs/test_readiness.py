"""/readyz reports each dependency and is 503 problem+json while one is down: the broker and
live Celery workers (from their heartbeat rows), or the local executor's worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from tests.api.helpers import assert_problem
from tests.jobs.conftest import PrivateRedis, job_settings, kill
from tests.jobs.helpers import wait_for

pytestmark = pytest.mark.slow


def _client(settings: Settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.redis
def test_readiness_needs_a_live_celery_worker_for_every_queue(
    tmp_path: Path, private_redis: PrivateRedis, reap: list[int]
) -> None:
    from tests.jobs.test_celery_executor import start_worker

    settings = job_settings(tmp_path, executor="celery", broker_url=private_redis.url, local_workers=0)
    for client in _client(settings):
        body = assert_problem(client.get("/readyz"), 503, "not_ready")
        assert body["checks"]["failed"] == ["workers"]
        assert body["checks"]["workers"] == {"alive": 0, "queues": {"analysis": 0, "training": 0}}
        assert body["checks"]["broker"] == "ok" and body["checks"]["database"] == "ok"
        # a worker without a warm TensorFlow process starts in seconds
        worker = start_worker(settings.model_copy(update={"warm_tf_process": False}), reap)
        ready = wait_for(
            lambda: (r := client.get("/readyz")).status_code == 200 and r, 120, "the worker's heartbeat"
        )
        assert ready.json()["checks"]["workers"] == {"alive": 1, "queues": {"analysis": 1, "training": 1}}
        kill(worker.pid)  # its row stops beating: not ready within the heartbeat timeout
        worker.wait()
        body = wait_for(
            lambda: (r := client.get("/readyz")).status_code == 503 and r.json(), 30, "the worker to be missed"
        )
        assert body["checks"]["failed"] == ["workers"]


def test_readiness_with_local_workers(tmp_path: Path) -> None:
    settings = job_settings(tmp_path, local_workers=1, warm_tf_process=False)
    for client in _client(settings):
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["workers"] == {"alive": 1, "expected": 1}
        assert checks["executor"]["alive"] == 1
        executor = client.app.state.executor
        kill(executor.pids[0])  # restarted at once by the executor
        wait_for(lambda: executor.restarts == 1, 30, "the worker to be restarted")
        assert client.get("/readyz").status_code == 200
