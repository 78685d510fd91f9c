"""The embedded executor with real worker subprocesses: jobs run, crashes are noticed at once
and survived (a training run resumes from its checkpoint), restarts resume queued and
interrupted jobs, and every result is written exactly once.

The runs that get killed wait at a step the test chose (a hold) while the test kills them,
so no test races its job; re-queue times are measured from the kill and printed.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.config import Settings
from app.db import session_scope
from app.jobs.lifecycle import work_dir
from app.jobs.local import LocalExecutor
from app.models import Job
from app.models.base import utcnow
from tests.jobs.conftest import alive, children_of, job_settings, kill
from tests.jobs.helpers import (
    add_architecture,
    add_job,
    add_training_job,
    events,
    example3_config,
    held_training_run,
    hold,
    job,
    reached,
    release,
    step_events,
    tiny_config,
    wait_for,
    wait_terminal,
)

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

#: The local executor sees its processes exit: a job is queued again well within this.
REQUEUE_CEILING_S = 5.0


def _requeued_after(settings: Settings, job_id: str, attempt: int, killed_at: float) -> float:
    """Seconds from ``killed_at`` until attempt ``attempt`` is recorded as ended."""
    wait_for(
        lambda: any(
            h["attempt"] == attempt for h in (job(settings, job_id).attempt_history or [])
        ),
        60,
        f"attempt {attempt} of {job_id} to be ended",
        interval=0.02,
    )
    return time.monotonic() - killed_at


def _check_resumed_run(settings: Settings, job_id: str, row: Job, killed_at_step: int) -> None:
    """40 steps in the end, attempt 2 resumed from the checkpoint at step 20 with the same
    batches: the steps both attempts ran have the same losses."""
    assert row.status == "succeeded", row.error
    assert row.attempts == 2 and row.result_writes == 1 and row.error is None
    result = row.result
    assert result["steps_completed"] == 40 and len(result["history"]["loss"]) == 40
    assert result["resumed_from_step"] == 20
    steps = step_events(settings, job_id)
    first = [(s, loss) for a, s, loss in steps if a == 1]
    second = [(s, loss) for a, s, loss in steps if a == 2]
    assert [s for s, _ in first] == list(range(1, killed_at_step + 1))
    assert [s for s, _ in second] == list(range(21, 41))
    again = dict(second)
    for step, loss in first[20:]:  # the steps run twice saw the same weights and batches
        assert again[step] == pytest.approx(loss, rel=1e-3), step
    # the history has every step once: attempt 1's up to the checkpoint, then attempt 2's
    assert result["history"]["loss"][:20] == pytest.approx([loss for _, loss in first[:20]])
    assert result["history"]["loss"][20:] == pytest.approx([loss for _, loss in second])
    kinds = [e.kind for e in events(settings, job_id)]
    assert kinds.count("started") == 2 and kinds.count("retrying") == 1 and kinds.count("resumed") == 1
    # The checkpoints go with the run: deleted right after the commit that settles it, so the
    # test waits for that (the row can be read between the commit and the deletion).
    wait_for(lambda: not work_dir(settings, job_id).exists(), 30, "the run's checkpoints to be deleted")


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
            assert executor.dispatch(job_id) is True
        rows = {
            job_id: wait_terminal(jsettings, job_id, 300)
            for job_id in (training, gradients, analysis)
        }
    finally:
        executor.stop()
    for row in rows.values():
        assert row.status == "succeeded", row.error
        assert row.result_writes == 1 and row.attempts == 1
        assert [h["outcome"] for h in row.attempt_history] == ["succeeded"]
    result = rows[training].result
    assert result["verdict"]["loss_decreased"] is True
    assert result["overfit_one_batch"]["passed"] is True  # the check runs by default
    assert result["overfit_check_s"] == result["overfit_one_batch"]["duration_s"] > 0
    assert [h["attempt"] for h in result["attempt_history"]] == [1]
    assert rows[gradients].result["verdict"] == "healthy"
    assert rows[analysis].result["summary"]["total_params"] == 57034
    kinds = [e.kind for e in events(jsettings, training)]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("step") == 30
    assert {a for a, _, _ in step_events(jsettings, training)} == {1}
    assert [e.seq for e in events(jsettings, training)] == list(range(1, len(kinds) + 1))


def test_sigkill_of_the_tensorflow_process_is_noticed_at_once_and_the_run_resumes(
    jsettings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    arch = add_architecture(jsettings, tiny_config())
    executor = LocalExecutor(jsettings)
    executor.start()
    try:
        job_id, child, held = held_training_run(jsettings, arch, executor)
        assert held.status == "running" and held.attempts == 1
        assert child in children_of(executor.pids[0])
        killed_at = time.monotonic()
        kill(child)
        seconds = _requeued_after(jsettings, job_id, 1, killed_at)
        release(jsettings, job_id)
        row = wait_terminal(jsettings, job_id, 300)
    finally:
        executor.stop()
    with capsys.disabled():
        print(f"\n[measured] TensorFlow process SIGKILL -> job re-queued: {seconds:.2f} s")
    assert seconds < REQUEUE_CEILING_S
    _check_resumed_run(jsettings, job_id, row, killed_at_step=25)
    crashed, succeeded = row.attempt_history
    assert crashed["outcome"] == "crashed" and "killed by signal 9 (SIGKILL)" in crashed["reason"]
    assert succeeded["outcome"] == "succeeded"
    assert row.result["attempt_history"] == row.attempt_history  # kept after the retry succeeded
    retry = next(e for e in events(jsettings, job_id) if e.kind == "retrying").payload
    assert retry["message"] == "retrying (attempt 2 after TensorFlow process killed)"
    assert executor.restarts == 0  # only the TensorFlow process died, not the worker


def test_sigkill_of_the_worker_process_is_noticed_at_once_and_the_run_resumes(
    jsettings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    arch = add_architecture(jsettings, tiny_config())
    executor = LocalExecutor(jsettings)
    executor.start()
    try:
        job_id, child, _ = held_training_run(jsettings, arch, executor)
        worker = executor.pids[0]
        killed_at = time.monotonic()
        kill(worker)
        seconds = _requeued_after(jsettings, job_id, 1, killed_at)
        # the TensorFlow child dies with its worker (PR_SET_PDEATHSIG): no orphan keeps training
        wait_for(lambda: not alive(child), 10, "the TensorFlow child to die")
        release(jsettings, job_id)
        row = wait_terminal(jsettings, job_id, 300)
    finally:
        executor.stop()
    with capsys.disabled():
        print(f"\n[measured] local worker SIGKILL -> job re-queued: {seconds:.2f} s")
    assert seconds < REQUEUE_CEILING_S
    assert executor.restarts == 1
    _check_resumed_run(jsettings, job_id, row, killed_at_step=25)
    lost = row.attempt_history[0]
    assert lost["outcome"] == "lost"
    assert lost["reason"] == "worker lost: its process was killed by signal 9 (SIGKILL)"
    retry = next(e for e in events(jsettings, job_id) if e.kind == "retrying").payload
    assert retry == {
        "attempt": 2,
        "after_attempt": 1,
        "reason": lost["reason"],
        "message": "retrying (attempt 2 after worker lost)",
    }


def test_a_job_that_keeps_killing_its_worker_ends_failed_with_the_reason(tmp_path: Path) -> None:
    settings = job_settings(tmp_path, job_max_attempts=2)
    arch = add_architecture(settings, tiny_config())
    executor = LocalExecutor(settings)
    executor.start()
    try:
        job_id = add_training_job(settings, arch, steps=20)
        hold(settings, job_id, step=3)  # every attempt waits at step 3
        executor.dispatch(job_id)
        for attempt in (1, 2):
            kill(reached(settings, job_id, attempt)["pid"])
        row = wait_terminal(settings, job_id, 120)
    finally:
        executor.stop()
    assert row.status == "failed"
    assert row.error["code"] == "worker_lost"
    assert "killed by signal 9" in row.error["detail"] and "2 attempts" in row.error["detail"]
    assert row.result is None and row.result_writes == 0
    assert [h["outcome"] for h in row.attempt_history] == ["crashed", "crashed"]
    assert [e.kind for e in events(settings, job_id)][-1] == "failed"


def test_queued_and_interrupted_jobs_run_after_the_service_restarts(jsettings: Settings) -> None:
    arch = add_architecture(jsettings, tiny_config())
    # jobs queued while no service runs, and one left "running" by a service that died
    queued = [
        add_training_job(jsettings, arch, steps=10, overfit_check=True, overfit_steps=5),
        add_job(jsettings, arch, "analysis", {}),
    ]
    interrupted = add_training_job(jsettings, arch, steps=10)
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
    assert rows[-1].attempt_history[0]["reason"].startswith("worker lost: heartbeat")


def test_graceful_stop_gives_the_running_job_back_without_spending_an_attempt(
    jsettings: Settings,
) -> None:
    arch = add_architecture(jsettings, tiny_config())
    executor = LocalExecutor(jsettings)
    executor.start()
    job_id = add_training_job(jsettings, arch, steps=20)
    hold(jsettings, job_id, step=3)
    executor.dispatch(job_id)
    try:
        reached(jsettings, job_id)
    finally:
        executor.stop()
    row = job(jsettings, job_id)
    assert row.status == "queued" and row.attempts == 0
    # and the next service finishes it
    release(jsettings, job_id)
    executor = LocalExecutor(jsettings)
    executor.start()
    try:
        row = wait_terminal(jsettings, job_id, 300)
    finally:
        executor.stop()
    assert row.status == "succeeded" and row.result_writes == 1 and row.attempts == 1
    assert row.result["steps_completed"] == 20
