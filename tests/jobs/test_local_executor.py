"""The embedded executor with real worker subprocesses: jobs run, crashes are survived,
restarts resume queued and interrupted jobs, and every result is written exactly once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from app.config import Settings
from app.db import session_scope
from app.jobs.local import LocalExecutor
from app.models import Job
from app.models.base import utcnow
from tests.jobs.conftest import alive, children_of, job_settings, kill
from tests.jobs.helpers import (
    add_architecture,
    add_job,
    add_long_training_job,
    events,
    example3_config,
    job,
    tiny_config,
    wait_for,
    wait_terminal,
)

LONG_RUN = {"steps": 2000, "batch_size": 8, "overfit_steps": 0}


def _training_step(settings: Settings, job_id: str) -> int:
    return int((job(settings, job_id).progress_detail or {}).get("steps_done") or 0)


def _attempt_is_training(settings: Settings, job_id: str, attempt: int) -> bool:
    """Attempt ``attempt`` has announced itself and reported at least one step since."""
    kinds = [(e.kind, e.payload) for e in events(settings, job_id)]
    starts = [
        i
        for i, (kind, payload) in enumerate(kinds)
        if kind == "started" and payload["attempt"] == attempt
    ]
    return bool(starts) and any(kind == "step" for kind, _ in kinds[starts[-1] :])


def _tf_child(worker_pid: int, timeout: float = 60.0) -> int:
    """A TensorFlow child process of this worker (running a job, or the warm spare)."""
    return wait_for(lambda: children_of(worker_pid), timeout, "a TensorFlow child process")[0]


def test_jobs_of_every_kind_run_and_write_their_result_once(jsettings: Settings) -> None:
    arch = add_architecture(jsettings, example3_config())
    executor = LocalExecutor(jsettings)
    executor.start()
    try:
        training = add_job(
            jsettings,
            arch,
            "training",
            {"steps": 30, "batch_size": 8, "input_shape": [32, 32, 3]},
            time_limit_s=300,
        )
        gradients = add_job(
            jsettings, arch, "gradients", {"input_shape": [32, 32, 3]}, time_limit_s=300
        )
        analysis = add_job(jsettings, arch, "analysis", {"input_shape": None}, time_limit_s=60)
        for job_id in (training, gradients, analysis):
            executor.dispatch(job_id)
        rows = {
            job_id: wait_terminal(jsettings, job_id, 300)
            for job_id in (training, gradients, analysis)
        }
    finally:
        executor.stop()
    for row in rows.values():
        assert row.status == "succeeded", row.error
        assert row.result_writes == 1 and row.attempts == 1
    assert rows[training].result["verdict"]["loss_decreased"] is True
    assert rows[gradients].result["verdict"] == "healthy"
    assert rows[analysis].result["summary"]["total_params"] == 57034
    kinds = [e.kind for e in events(jsettings, training)]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("step") == 30
    assert [e.seq for e in events(jsettings, training)] == list(range(1, len(kinds) + 1))


def test_sigkill_of_the_tensorflow_process_mid_run_is_retried_to_completion(
    jsettings: Settings,
) -> None:
    arch = add_architecture(jsettings, tiny_config())
    executor = LocalExecutor(jsettings)
    executor.start()
    try:
        job_id = add_long_training_job(jsettings, arch)
        executor.dispatch(job_id)
        wait_for(lambda: _training_step(jsettings, job_id) >= 5, 120, "the run to make progress")
        worker = executor.pids[0]
        held = job(jsettings, job_id)
        busy = [pid for pid in children_of(worker) if alive(pid)]
        assert busy, "no TensorFlow process found"
        for pid in busy:  # the running child (and the warm spare, if already up)
            kill(pid)
        row = wait_terminal(jsettings, job_id, 300)
    finally:
        executor.stop()
    assert held.status == "running" and held.attempts == 1
    assert row.status == "succeeded", row.error
    assert row.attempts == 2 and row.result_writes == 1
    assert row.result["steps_completed"] == 300
    assert row.error is None


def test_sigkill_of_the_worker_process_is_recovered_by_the_reconciler(jsettings: Settings) -> None:
    arch = add_architecture(jsettings, tiny_config())
    executor = LocalExecutor(jsettings)
    executor.start()
    try:
        job_id = add_long_training_job(jsettings, arch)
        executor.dispatch(job_id)
        wait_for(lambda: _training_step(jsettings, job_id) >= 5, 120, "the run to make progress")
        worker = executor.pids[0]
        tf_children = children_of(worker)
        kill(worker)
        # the TensorFlow child dies with its worker (PR_SET_PDEATHSIG): no orphan keeps training
        wait_for(
            lambda: not any(alive(pid) for pid in tf_children), 10, "the TensorFlow child to die"
        )
        row = wait_terminal(jsettings, job_id, 300)
    finally:
        executor.stop()
    assert executor.restarts >= 1
    assert row.status == "succeeded", row.error
    assert row.attempts == 2 and row.result_writes == 1
    assert row.error is None  # the retry's success replaces the lost attempt's note


def test_a_job_that_keeps_killing_its_worker_ends_failed_with_the_reason(tmp_path: Path) -> None:
    settings = job_settings(tmp_path, job_max_attempts=2)
    arch = add_architecture(settings, tiny_config())
    executor = LocalExecutor(settings)
    executor.start()
    try:
        job_id = add_job(settings, arch, "training", LONG_RUN, time_limit_s=300)
        executor.dispatch(job_id)
        for attempt in (1, 2):
            wait_for(
                lambda a=attempt: _attempt_is_training(settings, job_id, a),
                120,
                f"attempt {attempt} to train",
            )
            for pid in children_of(executor.pids[0]):
                kill(pid)
        row = wait_terminal(settings, job_id, 120)
    finally:
        executor.stop()
    assert row.status == "failed"
    assert row.error["code"] == "worker_lost"
    assert "killed by signal 9" in row.error["detail"] and "2 attempts" in row.error["detail"]
    assert row.result is None and row.result_writes == 0


def test_queued_and_interrupted_jobs_run_after_the_service_restarts(jsettings: Settings) -> None:
    arch = add_architecture(jsettings, tiny_config())
    # jobs queued while no service runs, and one left "running" by a service that died
    queued = [
        add_job(
            jsettings,
            arch,
            "training",
            {"steps": 10, "batch_size": 4, "overfit_steps": 5},
            time_limit_s=300,
        )
        for _ in range(2)
    ]
    queued.append(add_job(jsettings, arch, "analysis", {}))
    interrupted = add_job(
        jsettings, arch, "training", {"steps": 10, "batch_size": 4}, time_limit_s=300
    )
    with session_scope(jsettings) as session:
        row = session.get(Job, interrupted)
        assert row is not None
        row.status, row.attempts, row.worker_id = "running", 1, "local:gone:1:dead"
        row.heartbeat_at = utcnow() - timedelta(seconds=120)
    executor = LocalExecutor(jsettings)
    executor.start()  # nothing is dispatched: the workers find the work themselves
    try:
        rows = [wait_terminal(jsettings, job_id, 300) for job_id in [*queued, interrupted]]
    finally:
        executor.stop()
    assert all(r.status == "succeeded" for r in rows), [r.error for r in rows]
    assert all(r.result_writes == 1 for r in rows)
    assert rows[-1].attempts == 2


def test_graceful_stop_gives_the_running_job_back_without_spending_an_attempt(
    jsettings: Settings,
) -> None:
    arch = add_architecture(jsettings, tiny_config())
    executor = LocalExecutor(jsettings)
    executor.start()
    job_id = add_job(jsettings, arch, "training", LONG_RUN, time_limit_s=300)
    executor.dispatch(job_id)
    try:
        wait_for(lambda: _training_step(jsettings, job_id) >= 3, 120, "the run to start")
    finally:
        executor.stop()
    row = job(jsettings, job_id)
    assert row.status == "queued" and row.attempts == 0
    # and the next service finishes it
    with session_scope(jsettings) as session:
        session.get(Job, job_id).parameters = {"steps": 20, "batch_size": 8}  # type: ignore[union-attr]
    executor = LocalExecutor(jsettings)
    executor.start()
    try:
        row = wait_terminal(jsettings, job_id, 300)
    finally:
        executor.stop()
    assert row.status == "succeeded" and row.result_writes == 1 and row.attempts == 1
