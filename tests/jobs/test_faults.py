"""Faults a client can reason about, on a private redis-server and the local PostgreSQL.

- The broker stopped, then frozen (SIGSTOP), while jobs are requested: every POST that
  committed a job answers 202 within the broker timeout (never 5xx, never a hang), /readyz
  answers 503 problem+json naming the broker (within its timeout) and 200 again once the
  broker is back, and every job committed during the fault runs afterwards.
- The database past its timeouts (a row lock held elsewhere on PostgreSQL, a write lock on
  SQLite): 503 ``database_unavailable`` within the timeout, never a hang.
- ``dispatch`` never raises and never waits long on a dead broker.

The seconds each step took are printed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.jobs.celery_app import CeleryExecutor
from tests.api.helpers import assert_problem
from tests.conftest import _clean_postgres, make_settings
from tests.jobs.conftest import PrivateRedis, free_port, job_settings
from tests.jobs.helpers import add_architecture, add_job, job, tiny_config, wait_for


def _client(settings: Settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _all_sent(settings: Settings) -> bool:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Job

    with session_scope(settings) as session:
        return all(
            sent is not None
            for sent in session.scalars(select(Job.dispatched_at).where(Job.kind == "gradients"))
        )


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.tensorflow
@pytest.mark.slow
def test_broker_stopped_and_frozen_during_posts(
    tmp_path: Path,
    postgres_url: str,
    private_redis: PrivateRedis,
    reap: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.jobs.test_celery_executor import start_worker

    _clean_postgres(postgres_url)
    settings = job_settings(
        tmp_path, postgres_url, executor="celery", broker_url=private_redis.url,
        broker_timeout_s=1.0, local_workers=0,
        max_queued_gradients_per_tenant=10,  # seven measurements wait for the broker at once
    )
    bound = 4 * settings.broker_timeout_s  # connect + one round trip, with room for a busy machine
    start_worker(settings, reap)
    figures: list[str] = []
    posted: list[str] = []
    for client in _client(settings):
        wait_for(lambda: client.get("/readyz").status_code == 200, 180, "readiness with a live worker")
        response, seconds = _timed(
            lambda: client.post("/v1/analyses", json={"architecture": tiny_config(), "measure_gradients": True})
        )
        assert response.status_code == 202
        posted.append(response.json()["id"])
        figures.append(f"POST with the broker up (the first request): 202 in {seconds:.2f} s")
        for fault in ("stopped", "frozen"):
            if fault == "stopped":
                private_redis.stop()
            else:
                private_redis.freeze()
            ready, seconds = _timed(lambda: client.get("/readyz"))
            body = assert_problem(ready, 503, "not_ready")
            assert body["checks"]["failed"] == ["broker"], body
            assert seconds < bound, seconds
            figures.append(f"/readyz with the broker {fault}: 503 in {seconds:.2f} s")
            for index in range(3):
                response, seconds = _timed(
                    lambda i=index: client.post(
                        "/v1/analyses",
                        json={"architecture": tiny_config(), "name": f"{fault}-{i}", "measure_gradients": True},
                    )
                )
                assert response.status_code == 202, response.text  # committed: never a 5xx
                assert seconds < bound, seconds
                figures.append(f"POST with the broker {fault} ({index + 1}): 202 in {seconds:.2f} s")
                posted.append(response.json()["id"])
                child = client.get(f"/v1/analyses/{posted[-1]}").json()
                assert child["status"] == "running"  # its report is there, its measurement waits
            if fault == "stopped":
                private_redis.start()
            else:
                private_redis.thaw()
            _, seconds = _timed(
                lambda: wait_for(lambda: client.get("/readyz").status_code == 200, 120, "ready again",
                                 interval=0.1)
            )
            figures.append(f"/readyz green {seconds:.2f} s after the broker came back ({fault})")
            # the reconciler sends what was committed during the fault (before the next fault)
            _, seconds = _timed(lambda: wait_for(lambda: _all_sent(settings), 60, "the jobs to be sent",
                                                 interval=0.1))
            figures.append(f"jobs committed while the broker was {fault} sent {seconds:.2f} s after it came back")
        # nothing was lost: the reconciler sent every job committed during the faults
        for analysis_id in posted:
            done = wait_for(
                lambda a=analysis_id: (b := client.get(f"/v1/analyses/{a}").json())["status"] != "running" and b,
                300,
                f"analysis {analysis_id} to get its measurement",
            )
            assert done["status"] == "succeeded", done
            assert done["report"]["gradient_flow"]["measured"]["status"] == "measured"
    with capsys.disabled():
        print("\n" + "\n".join(f"[measured] {line}" for line in figures))


@pytest.mark.redis
def test_dispatch_never_raises_and_backs_off_from_a_dead_broker(tmp_path: Path) -> None:
    settings = job_settings(tmp_path, executor="celery", broker_url=f"redis://127.0.0.1:{free_port()}/0",
                            broker_timeout_s=1.0)
    job_id = add_job(settings, add_architecture(settings, tiny_config()), "gradients")
    executor = CeleryExecutor(settings)
    sent, seconds = _timed(lambda: executor.dispatch(job_id))
    assert sent is False and seconds < 4 * settings.broker_timeout_s
    again, seconds = _timed(lambda: executor.dispatch(job_id))
    assert again is False and seconds < 0.5  # requests skip the broker for a few seconds
    row = job(settings, job_id)
    assert row.status == "queued" and row.dispatched_at is None and row.dispatches == 0
    assert executor.health()["broker"].startswith("unreachable")


@pytest.mark.postgres
def test_a_row_lock_held_elsewhere_answers_503_within_the_database_timeout(
    tmp_path: Path, postgres_url: str
) -> None:
    _clean_postgres(postgres_url)
    settings = make_settings(tmp_path, postgres_url, database_timeout_s=1.0)
    for client in _client(settings):
        analysis_id = client.post("/v1/analyses", json={"architecture": tiny_config()}).json()["id"]
        blocker = create_engine(postgres_url)
        with blocker.connect() as connection:
            transaction = connection.begin()
            connection.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": analysis_id})
            response, seconds = _timed(lambda: client.delete(f"/v1/analyses/{analysis_id}"))
            assert_problem(response, 503, "database_unavailable")
            assert response.headers["retry-after"] == "5"
            assert seconds < 5 * settings.database_timeout_s, seconds
            transaction.rollback()
        blocker.dispose()
        assert client.delete(f"/v1/analyses/{analysis_id}").status_code == 204


def test_a_sqlite_write_lock_held_elsewhere_answers_503_within_the_busy_timeout(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_timeout_s=1.0)
    for client in _client(settings):
        assert client.post("/v1/analyses", json={"architecture": tiny_config()}).status_code == 201
        blocker = sqlite3.connect(settings.data_dir / "convlens.db", timeout=0.1, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
        config = tiny_config()
        config["config"]["name"] = "another"
        response, seconds = _timed(lambda: client.post("/v1/analyses", json={"architecture": config}))
        assert_problem(response, 503, "database_unavailable")
        assert seconds < 5 * settings.database_timeout_s, seconds
        blocker.execute("ROLLBACK")
        blocker.close()
        assert client.post("/v1/analyses", json={"architecture": config}).status_code == 201
        assert client.get("/v1/analyses").json()["total"] == 2  # the refused request left nothing
