"""Claims are atomic and results are fenced: on SQLite and PostgreSQL, without worker processes."""

from __future__ import annotations

import threading
from datetime import timedelta

from app.config import Settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.reconciler import reconcile_once
from app.models.base import utcnow
from tests.jobs.helpers import add_architecture, add_job, job, tiny_config


def _claim(settings: Settings, job_id: str, worker: str) -> repository.Claim | None:
    with session_scope(settings) as session:
        return repository.claim(
            session, job_id, worker, stale_before=utcnow() - timedelta(seconds=30)
        )


def test_only_one_of_many_racing_workers_claims_a_job(any_settings: Settings) -> None:
    from app import db

    db.upgrade(any_settings)
    job_id = add_job(any_settings, add_architecture(any_settings, tiny_config()), "analysis")
    wins: list[repository.Claim] = []
    barrier = threading.Barrier(8)

    def race(index: int) -> None:
        barrier.wait()
        held = _claim(any_settings, job_id, f"w{index}")
        if held is not None:
            wins.append(held)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    row = job(any_settings, job_id)
    assert row.status == "running" and row.attempts == 1 and row.worker_id == wins[0].worker_id


def test_a_result_is_written_once_and_a_superseded_attempt_cannot_write(
    any_settings: Settings,
) -> None:
    from app import db

    db.upgrade(any_settings)
    job_id = add_job(any_settings, add_architecture(any_settings, tiny_config()), "analysis")
    first = _claim(any_settings, job_id, "old")
    assert first is not None
    # the first worker goes silent (heartbeat older than the timeout): a second one takes over
    with session_scope(any_settings) as session:
        from app.models import Job

        session.get(Job, job_id).heartbeat_at = utcnow() - timedelta(seconds=60)  # type: ignore[union-attr]
    second = _claim(any_settings, job_id, "new")
    assert second is not None and second.attempt == 2
    with session_scope(any_settings) as session:
        assert repository.finish(session, first, status="succeeded", result={"by": "old"}) is False
        ours, _ = repository.heartbeat(session, first)
        assert ours is False
    with session_scope(any_settings) as session:
        assert repository.finish(session, second, status="succeeded", result={"by": "new"}) is True
    with session_scope(any_settings) as session:
        assert (
            repository.finish(session, second, status="succeeded", result={"by": "again"}) is False
        )
    row = job(any_settings, job_id)
    assert row.result == {"by": "new"} and row.result_writes == 1 and row.status == "succeeded"
    assert _claim(any_settings, job_id, "late") is None  # finished jobs are never claimed again


def test_reconciler_requeues_stale_jobs_and_fails_them_at_the_attempt_cap(
    any_settings: Settings,
) -> None:
    from app import db
    from app.models import Job

    db.upgrade(any_settings)
    arch = add_architecture(any_settings, tiny_config())
    job_id = add_job(any_settings, arch, "training", {"steps": 5}, max_attempts=2)
    dispatched: list[str] = []
    for attempt in (1, 2):
        held = _claim(any_settings, job_id, f"w{attempt}")
        assert held is not None and held.attempt == attempt
        with session_scope(any_settings) as session:
            session.get(Job, job_id).heartbeat_at = utcnow() - timedelta(seconds=600)  # type: ignore[union-attr]
        outcome = reconcile_once(any_settings, lambda job_id, kind: dispatched.append(job_id) or True)
        if attempt == 1:
            assert outcome["requeued"] == [job_id] and dispatched == [job_id]
            assert job(any_settings, job_id).status == "queued"
        else:
            assert outcome["failed"] == [job_id]
    row = job(any_settings, job_id)
    assert row.status == "failed" and row.error["code"] == "worker_lost"
    assert "worker lost: heartbeat" in row.error["detail"] and len(row.error["attempts"]) == 2
    assert row.finished_at is not None


def test_cancelling_a_queued_job_ends_it_without_running(any_settings: Settings) -> None:
    from app import db
    from app.models import Job

    db.upgrade(any_settings)
    job_id = add_job(
        any_settings, add_architecture(any_settings, tiny_config()), "training", {"steps": 5}
    )
    with session_scope(any_settings) as session:
        session.get(Job, job_id).cancel_requested = True  # type: ignore[union-attr]
    assert _claim(any_settings, job_id, "w") is None
    reconcile_once(any_settings, lambda job_id, kind: True)
    assert job(any_settings, job_id).status == "cancelled"
