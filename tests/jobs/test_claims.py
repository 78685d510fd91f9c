"""Claims are atomic and results are fenced; lost attempts show that they are retried and
stay in the history; the reconciler settles and resends only what is due. On SQLite and
PostgreSQL, without worker processes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.reconciler import note_dispatch, reconcile_once
from app.models.base import utcnow
from tests.jobs.helpers import add_architecture, add_job, job, tiny_config

pytestmark = pytest.mark.postgres


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


def test_a_lost_attempt_shows_retrying_with_an_event_and_its_history_survives_success(
    any_settings: Settings,
) -> None:
    from app import db

    db.upgrade(any_settings)
    job_id = add_job(
        any_settings, add_architecture(any_settings, tiny_config()), "training", {"steps": 5}
    )
    first = _claim(any_settings, job_id, "w1")
    assert first is not None
    with session_scope(any_settings) as session:
        repository.heartbeat(
            session, first, progress=0.5, progress_detail={"phase": "training", "steps_done": 3,
                                                           "steps": 5, "eta_s": 1.0, "loss": 0.7}
        )
        changed = repository.release_worker_jobs(session, "w1", "worker lost: its process exited")
    assert [status for _, status in changed] == ["queued"]
    row = job(any_settings, job_id)
    assert row.progress_detail == {
        "phase": "retrying",
        "message": "retrying (attempt 2 after worker lost)",
        "attempt": 2,
        "reason": "worker lost: its process exited",
        "steps_done": 3,
        "steps": 5,
    }
    assert row.dispatched_at is None  # it needs sending again
    from tests.jobs.helpers import events

    assert [(e.kind, e.payload["message"]) for e in events(any_settings, job_id)] == [
        ("retrying", "retrying (attempt 2 after worker lost)")
    ]
    second = _claim(any_settings, job_id, "w2")
    assert second is not None and second.attempt == 2
    with session_scope(any_settings) as session:
        assert repository.finish(session, second, status="succeeded", result={"ok": 1},
                                 attempts_in_result=True)
    row = job(any_settings, job_id)
    assert row.error is None
    assert [(h["attempt"], h["outcome"]) for h in row.attempt_history] == [(1, "lost"), (2, "succeeded")]
    assert row.result["attempt_history"] == row.attempt_history


def test_a_fresh_heartbeat_wins_over_a_reconciler_that_read_it_stale(any_settings: Settings) -> None:
    from app import db

    db.upgrade(any_settings)
    job_id = add_job(any_settings, add_architecture(any_settings, tiny_config()), "analysis")
    held = _claim(any_settings, job_id, "w1")
    assert held is not None
    cutoff = utcnow() - timedelta(seconds=3)
    with session_scope(any_settings) as session:
        from app.models import Job

        session.get(Job, job_id).heartbeat_at = utcnow() - timedelta(seconds=60)  # type: ignore[union-attr]
    with session_scope(any_settings) as session:
        stale = repository.stale_running(session, stale_before=cutoff)
        assert [row.id for row in stale] == [job_id]
        ours, _ = repository.heartbeat(session, held)  # the worker beats in between
        assert ours
        assert repository._retry_or_fail(session, stale[0], "lost", stale_before=cutoff) is None
    assert job(any_settings, job_id).status == "running"


def test_a_gradients_job_failed_by_the_reconciler_settles_its_analysis(any_settings: Settings) -> None:
    from app import db
    from app.models import Job

    db.upgrade(any_settings)
    arch = add_architecture(any_settings, tiny_config())
    analysis = add_job(any_settings, arch, "analysis", status="running",
                       result={"summary": {}, "gradient_flow": {"predicted": {"verdict": "healthy"}}})
    child = add_job(any_settings, arch, "gradients", parent_id=analysis, max_attempts=1)
    held = _claim(any_settings, child, "w1")
    assert held is not None
    with session_scope(any_settings) as session:
        session.get(Job, child).heartbeat_at = utcnow() - timedelta(seconds=60)  # type: ignore[union-attr]
    outcome = reconcile_once(any_settings, lambda job_id, kind: True)
    assert outcome["failed"] == [child]
    row = job(any_settings, analysis)
    assert row.status == "succeeded"  # no longer waiting for a measurement that will never come
    measured = row.result["gradient_flow"]["measured"]
    assert measured["status"] == "failed" and "attempts" in measured["reason"]
    assert row.result["gradient_flow"]["predicted"] == {"verdict": "healthy"}


def test_progress_follows_the_measuring_job(any_settings: Settings) -> None:
    """While its measurement runs, an analysis reads ``running`` with progress between its
    report (half) and the measuring job's own progress, never 1.0; 1.0 once it is settled."""
    import json

    from app import db
    from app.analyses.service import _document_of
    from app.models import Job

    db.upgrade(any_settings)
    arch = add_architecture(any_settings, tiny_config())
    analysis = add_job(any_settings, arch, "analysis", status="succeeded",
                       result={"summary": {}, "gradient_flow": {"predicted": {"verdict": "healthy"}}})
    with session_scope(any_settings) as session:
        session.get(Job, analysis).progress = 1.0  # type: ignore[union-attr]
    child = add_job(any_settings, arch, "gradients", parent_id=analysis)
    with session_scope(any_settings) as session:
        repository.settle_measurement(session, analysis)
    with session_scope(any_settings) as session:
        row = session.get(Job, analysis)
        assert row is not None and row.status == "running"
        session.get(Job, child).progress = 0.4  # type: ignore[union-attr]
        session.flush()
        body = json.loads(_document_of(session, row))
        assert body["status"] == "running" and body["progress"] == pytest.approx(0.7)
        session.get(Job, child).status = "succeeded"  # type: ignore[union-attr]
        session.get(Job, child).result = {"status": "measured", "verdict": "healthy",  # type: ignore[union-attr]
                                          "per_layer": {}}
        session.flush()
        repository.settle_measurement(session, analysis)
        body = json.loads(_document_of(session, row))
        assert body["status"] == "succeeded" and body["progress"] == 1.0


def test_overdue_queued_jobs_only(any_settings: Settings) -> None:
    """What the reconciler resends: never sent and older than a pass; sent long ago, with a
    back-off that doubles per send."""
    from app import db
    from app.models import Job

    db.upgrade(any_settings)
    arch = add_architecture(any_settings, tiny_config())
    now = utcnow()
    fresh = add_job(any_settings, arch, "analysis")  # just committed: its request sends it
    unsent = add_job(any_settings, arch, "analysis", updated_at=now - timedelta(seconds=10))
    sent = add_job(any_settings, arch, "analysis", dispatched_at=now, dispatches=1)
    long_ago = add_job(any_settings, arch, "analysis", dispatched_at=now - timedelta(seconds=70), dispatches=1)
    backing_off = add_job(any_settings, arch, "analysis", dispatched_at=now - timedelta(seconds=100), dispatches=2)
    due_again = add_job(any_settings, arch, "analysis", dispatched_at=now - timedelta(seconds=130), dispatches=2)
    running = add_job(any_settings, arch, "analysis", status="running", updated_at=now - timedelta(seconds=10))
    with session_scope(any_settings) as session:
        overdue = repository.overdue_queued(
            session, never_sent_before=utcnow() - timedelta(seconds=1), redispatch_after_s=60
        )
        assert session.get(Job, fresh) is not None
    assert {job_id for job_id, _ in overdue} == {unsent, long_ago, due_again}
    assert sent not in dict(overdue) and backing_off not in dict(overdue) and running not in dict(overdue)


def test_a_dispatch_is_noted_once_per_send_and_a_failed_note_is_only_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from app import db

    db.upgrade(settings)
    arch = add_architecture(settings, tiny_config())
    queued = add_job(settings, arch, "analysis")
    running = add_job(settings, arch, "analysis", status="running")
    note_dispatch(settings, queued)
    note_dispatch(settings, queued)
    note_dispatch(settings, running)
    assert job(settings, queued).dispatches == 2 and job(settings, queued).dispatched_at is not None
    assert job(settings, running).dispatches == 0  # a claimed job is no longer the reconciler's

    with session_scope(settings) as session:
        session.execute(text("DROP TABLE jobs"))
    with caplog.at_level("WARNING", logger="convlens.jobs"):
        note_dispatch(settings, queued)  # does not raise
    assert f"could not note the dispatch of job {queued}" in caplog.text
