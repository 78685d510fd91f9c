"""The Celery executor against a private redis-server with real ``celery worker`` subprocesses
(solo pool): jobs run, a killed TensorFlow process or worker is noticed within seconds (the
worker itself, or the jobs' heartbeats) and the run resumes from its checkpoint, and the
reconciler re-sends only what is overdue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.config import Settings
from app.db import session_scope
from app.jobs.celery_app import QUEUES, CeleryExecutor
from app.jobs.runner import settings_env
from app.models import Job
from app.models.base import utcnow
from tests.jobs.conftest import PrivateRedis, alive, children_of, job_settings, kill
from tests.jobs.helpers import (
    add_architecture,
    add_job,
    add_training_job,
    events,
    example3_config,
    held_training_run,
    job,
    release,
    step_events,
    tiny_config,
    wait_for,
    wait_terminal,
)

pytestmark = [pytest.mark.redis, pytest.mark.tensorflow, pytest.mark.slow]

#: A lost Celery worker is noticed by its job's heartbeat (timeout 3 s, reconciler every 1 s):
#: about 4 s. The ceiling leaves room for a loaded machine.
LOST_WORKER_CEILING_S = 10.0


@pytest.fixture
def csettings(tmp_path: Path, private_redis: PrivateRedis) -> Iterator[Settings]:
    yield job_settings(tmp_path, executor="celery", broker_url=private_redis.url)


def start_worker(settings: Settings, reap: list[int]) -> subprocess.Popen[bytes]:
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
        env=settings_env(settings),
        cwd=Path(__file__).resolve().parents[2],
    )
    reap.append(process.pid)
    return process


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
                {"steps": 20, "batch_size": 8, "input_shape": [32, 32, 3], "overfit_check": False},
                time_limit_s=300,
            ),
        ]
        for job_id in ids:
            assert executor.dispatch(job_id) is True
            assert executor.dispatch(job_id) is True  # a duplicate message is harmless
        rows = [wait_terminal(csettings, job_id, 300) for job_id in ids]
    finally:
        executor.stop()
    assert [r.status for r in rows] == ["succeeded"] * 3, [r.error for r in rows]
    assert all(r.result_writes == 1 and r.attempts == 1 for r in rows)
    assert all(r.worker_id.startswith("celery:") for r in rows)
    assert rows[1].result["verdict"] == "healthy"
    assert rows[2].result["steps_completed"] == 20


def test_killed_tensorflow_process_under_celery_is_retried_at_once_and_resumes(
    csettings: Settings, reap: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    arch = add_architecture(csettings, tiny_config())
    worker = start_worker(csettings, reap)
    executor = CeleryExecutor(csettings)
    executor.start()
    try:
        job_id, child, _ = held_training_run(csettings, arch, executor)
        assert child in children_of(worker.pid)
        killed_at = time.monotonic()
        kill(child)
        wait_for(lambda: job(csettings, job_id).attempt_history, 60, "attempt 1 to end", interval=0.02)
        seconds = time.monotonic() - killed_at
        release(csettings, job_id)
        row = wait_terminal(csettings, job_id, 300)
    finally:
        executor.stop()
    with capsys.disabled():
        print(f"\n[measured] Celery: TensorFlow process SIGKILL -> job re-queued: {seconds:.2f} s")
    assert seconds < 5.0  # the worker owns the process: no timer involved
    assert row.status == "succeeded", row.error
    assert row.attempts == 2 and row.result_writes == 1
    assert row.result["steps_completed"] == 40 and row.result["resumed_from_step"] == 20
    assert [s for a, s, _ in step_events(csettings, job_id) if a == 2] == list(range(21, 41))


def test_killed_celery_worker_is_noticed_by_its_heartbeat_and_the_run_resumes(
    csettings: Settings, reap: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    arch = add_architecture(csettings, tiny_config())
    worker = start_worker(csettings, reap)
    executor = CeleryExecutor(csettings)
    executor.start()
    try:
        job_id, child, _ = held_training_run(csettings, arch, executor)
        killed_at = time.monotonic()
        kill(worker.pid)
        worker.wait()
        row = wait_for(
            lambda: (r := job(csettings, job_id)).status == "queued" and r, 60, "the job to be re-queued",
            interval=0.05,
        )
        seconds = time.monotonic() - killed_at
        detail = row.progress_detail
        wait_for(lambda: not alive(child), 10, "the TensorFlow child to die")
        release(csettings, job_id)
        start_worker(csettings, reap)  # a replacement worker; the reconciler sent the job id again
        row = wait_terminal(csettings, job_id, 300)
    finally:
        executor.stop()
    with capsys.disabled():
        print(f"\n[measured] Celery worker SIGKILL -> job re-queued (heartbeat): {seconds:.2f} s")
    assert seconds < LOST_WORKER_CEILING_S
    assert detail["phase"] == "retrying"
    assert detail["message"] == "retrying (attempt 2 after worker lost)"
    assert row.status == "succeeded", row.error
    assert row.attempts == 2 and row.result_writes == 1
    assert row.result["steps_completed"] == 40 and row.result["resumed_from_step"] == 20
    assert row.attempt_history[0]["reason"].startswith("worker lost: heartbeat")
    assert [e.kind for e in events(csettings, job_id)].count("retrying") == 1


def test_the_reconciler_resends_only_overdue_jobs(
    csettings: Settings, private_redis: PrivateRedis
) -> None:
    """17 queued jobs and no worker: each message is sent once; a job whose send failed is
    sent by the next pass; one sent long ago is sent again, then not before its back-off."""
    import redis

    arch = add_architecture(csettings, tiny_config())
    client = redis.Redis.from_url(private_redis.url)
    executor = CeleryExecutor(csettings)
    ids = [add_training_job(csettings, arch, steps=5) for _ in range(17)]
    for job_id in ids:
        assert executor.dispatch(job_id, "training") is True
    never_sent = add_training_job(csettings, arch, steps=5)
    with session_scope(csettings) as session:  # as if its request's send had failed a while ago
        session.get(Job, never_sent).updated_at = utcnow() - timedelta(seconds=30)  # type: ignore[union-attr]
    from app.jobs.reconciler import reconcile_once

    passes = [reconcile_once(csettings, executor._send) for _ in range(5)]
    assert passes[0]["sent"] == [never_sent] and all(p["sent"] == [] for p in passes[1:])
    assert client.llen("training") == 18
    stale = ids[0]
    with session_scope(csettings) as session:  # its message was sent two minutes ago
        session.get(Job, stale).dispatched_at = utcnow() - timedelta(seconds=120)  # type: ignore[union-attr]
    passes = [reconcile_once(csettings, executor._send) for _ in range(3)]
    assert passes[0]["sent"] == [stale] and all(p["sent"] == [] for p in passes[1:])
    assert client.llen("training") == 19
    assert job(csettings, stale).dispatches == 2
    client.close()
