"""The Celery executor against the Redis on 127.0.0.1:6379 with a real ``celery worker``
subprocess (solo pool): jobs run, a killed TensorFlow process or worker is recovered."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.jobs.celery_app import QUEUES, CeleryExecutor
from app.jobs.runner import settings_env
from tests.conftest import REDIS_URL
from tests.jobs.conftest import alive, children_of, job_settings, kill
from tests.jobs.helpers import (
    add_architecture,
    add_job,
    add_long_training_job,
    events,
    example3_config,
    tiny_config,
    wait_for,
    wait_terminal,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def csettings(tmp_path: Path) -> Iterator[Settings]:
    import redis

    settings = job_settings(tmp_path, executor="celery", broker_url=REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*QUEUES)  # messages of earlier runs must not reach this test's worker
    client.close()
    yield settings


def start_worker(settings: Settings, reap: list[int]) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.jobs.celery_app",
            "worker",
            "--pool=solo",
            f"--queues={','.join(QUEUES)}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test{os.getpid()}-{len(reap)}@%h",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    reap.append(process.pid)
    return process


def _attempt_is_training(settings: Settings, job_id: str, attempt: int) -> bool:
    kinds = [(e.kind, e.payload) for e in events(settings, job_id)]
    starts = [
        i
        for i, (kind, payload) in enumerate(kinds)
        if kind == "started" and payload["attempt"] == attempt
    ]
    return bool(starts) and any(kind == "step" for kind, _ in kinds[starts[-1] :])


def test_celery_worker_runs_analysis_gradients_and_training(
    csettings: Settings, reap: list[int]
) -> None:
    arch = add_architecture(csettings, example3_config())
    start_worker(csettings, reap)
    executor = CeleryExecutor(csettings)
    executor.start()
    try:
        assert executor.health()["broker"] == "ok"
        ids = [
            add_job(csettings, arch, "analysis", {"input_shape": None}, time_limit_s=60),
            add_job(csettings, arch, "gradients", {"input_shape": [32, 32, 3]}, time_limit_s=300),
            add_job(
                csettings,
                arch,
                "training",
                {"steps": 20, "batch_size": 8, "input_shape": [32, 32, 3]},
                time_limit_s=300,
            ),
        ]
        for job_id in ids:
            executor.dispatch(job_id)
            executor.dispatch(job_id)  # a duplicate message is harmless: the claim decides
        rows = [wait_terminal(csettings, job_id, 300) for job_id in ids]
    finally:
        executor.stop()
    assert [r.status for r in rows] == ["succeeded"] * 3, [r.error for r in rows]
    assert all(r.result_writes == 1 and r.attempts == 1 for r in rows)
    assert all(r.worker_id.startswith("celery:") for r in rows)
    assert rows[1].result["verdict"] == "healthy"
    assert rows[2].result["steps_completed"] == 20


def test_killed_tensorflow_process_under_celery_is_retried(
    csettings: Settings, reap: list[int]
) -> None:
    arch = add_architecture(csettings, tiny_config())
    worker = start_worker(csettings, reap)
    executor = CeleryExecutor(csettings)
    executor.start()
    try:
        job_id = add_long_training_job(csettings, arch)
        executor.dispatch(job_id)
        wait_for(lambda: _attempt_is_training(csettings, job_id, 1), 120, "attempt 1 to train")
        for pid in children_of(worker.pid):
            kill(pid)
        row = wait_terminal(csettings, job_id, 300)
    finally:
        executor.stop()
    assert row.status == "succeeded", row.error
    assert row.attempts == 2 and row.result_writes == 1


def test_killed_celery_worker_is_recovered_by_the_reconciler(
    csettings: Settings, reap: list[int]
) -> None:
    arch = add_architecture(csettings, tiny_config())
    worker = start_worker(csettings, reap)
    executor = CeleryExecutor(csettings)
    executor.start()
    try:
        job_id = add_long_training_job(csettings, arch)
        executor.dispatch(job_id)
        wait_for(lambda: _attempt_is_training(csettings, job_id, 1), 120, "attempt 1 to train")
        tf_children = children_of(worker.pid)
        kill(worker.pid)
        worker.wait()
        wait_for(
            lambda: not any(alive(pid) for pid in tf_children), 10, "the TensorFlow child to die"
        )
        start_worker(csettings, reap)  # a replacement worker; the reconciler re-sends the job id
        row = wait_terminal(csettings, job_id, 300)
    finally:
        executor.stop()
    assert row.status == "succeeded", row.error
    assert row.attempts == 2 and row.result_writes == 1
