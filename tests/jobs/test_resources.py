"""What a TensorFlow job may use: job-size checks up front (422 before anything is stored)
and again in the worker, the TensorFlow process under RLIMIT_DATA (an allocation past it is
a clean resource_limit_exceeded, not a crash) and RLIMIT_CPU, one slot per host."""

from __future__ import annotations

import copy
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.db import session_scope
from app.errors import ResourceLimitExceeded
from app.jobs import repository
from app.jobs.handlers import ProgressWriter
from app.jobs.kinds import ArchitectureSpec, JobContext, JobSpec
from app.jobs.resources import (
    TensorFlowSlots,
    check_job_resources,
    limit_process,
    machine_memory_bytes,
    tensorflow_memory_budget,
)
from app.jobs.steps import analyse
from app.jobs.tfprocess import ChildFailed, TFProcess, run_in_tensorflow
from app.models import Job
from tests.api.helpers import assert_problem
from tests.jobs.helpers import add_architecture, add_job, tiny_config

GIB = 2**30


def huge_config() -> dict[str, Any]:
    """The tiny CNN at 15200x15200x3 with 64 filters: about 62 GB of activations per sample
    (the static analysis allocates nothing and answers)."""
    config = copy.deepcopy(tiny_config())
    config["config"]["layers"][0]["config"]["batch_shape"] = [None, 15200, 15200, 3]
    config["config"]["layers"][1]["config"]["filters"] = 64
    return config


def test_the_budget_is_derived_from_the_machine() -> None:
    physical = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            physical = int(line.split()[1]) * 1024
    assert 0 < machine_memory_bytes() <= physical
    assert tensorflow_memory_budget(Settings()) == int(machine_memory_bytes() * 0.8)
    assert tensorflow_memory_budget(Settings(tf_max_processes=2)) == int(machine_memory_bytes() * 0.4)
    assert tensorflow_memory_budget(Settings(tf_memory_bytes=3 * GIB)) == 3 * GIB


def test_a_62_gb_gradients_job_is_refused_on_a_24_gb_host() -> None:
    report = analyse(huge_config(), None, "huge", Settings())
    activations = report["summary"]["activation_bytes"]
    assert 61e9 < activations < 63e9
    host = Settings(tf_memory_bytes=int(24 * GIB * 0.8))  # what a 24 GB host derives
    with pytest.raises(ResourceLimitExceeded) as refused:
        check_job_resources("gradients", report, host)
    problem = refused.value.to_problem()
    assert problem["code"] == "resource_limit_exceeded" and problem["limit"] == "tf_memory_bytes"
    assert f"summary.activation_bytes={activations}" in problem["detail"]
    with pytest.raises(ResourceLimitExceeded):
        check_job_resources("training", report, host, {"batch_size": 1})
    small = analyse(tiny_config(), None, "tiny", Settings())
    assert 0 < check_job_resources("gradients", small, host) < 2 * GIB  # type: ignore[operator]
    assert check_job_resources("analysis", report, host) is None


def test_the_services_budget_is_what_live_workers_declared(settings: Settings) -> None:
    from app import db

    db.upgrade(settings)
    report = analyse(tiny_config(), None, "tiny", settings)
    with session_scope(settings) as session:
        repository.beat_worker(
            session, worker_id="w1", executor="celery", hostname="gpu-node", pid=1,
            queues=["training"], memory_bytes=1, current_job_id=None,
        )
    with session_scope(settings) as session, pytest.raises(ResourceLimitExceeded):
        check_job_resources("gradients", report, settings, session=session)
    with session_scope(settings) as session:
        assert check_job_resources("gradients", report, settings) is not None  # no session: this host


def test_the_api_refuses_jobs_that_would_not_fit_before_storing_anything(client: Any) -> None:
    body = {"architecture": huge_config(), "name": "huge"}
    assert_problem(client.post("/v1/analyses", json={**body, "measure_gradients": True}), 422,
                   "resource_limit_exceeded")
    assert client.get("/v1/analyses").json()["total"] == 0  # nothing stored
    created = client.post("/v1/analyses", json=body)
    assert created.status_code == 201, created.text  # the static analysis allocates nothing
    analysis_id = created.json()["id"]
    assert_problem(client.post(f"/v1/analyses/{analysis_id}/gradients"), 422, "resource_limit_exceeded")
    assert_problem(
        client.post("/v1/training-runs", json={"analysis_id": analysis_id, "steps": 5}),
        422,
        "resource_limit_exceeded",
    )
    # a training run's own input_shape is analysed too (the analysis was small)
    small = client.post("/v1/analyses", json={"architecture": tiny_config()}).json()
    assert_problem(
        client.post(
            "/v1/training-runs",
            json={"analysis_id": small["id"], "steps": 5, "input_shape": [15200, 15200, 3]},
        ),
        422,
        "resource_limit_exceeded",
    )
    assert client.post(
        "/v1/training-runs", json={"analysis_id": small["id"], "steps": 5}
    ).status_code == 202


def test_limit_process_sets_data_and_cpu_limits() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        limit_process(sleeper.pid, memory_bytes=3 * GIB, cpu_seconds=120)
        assert resource.prlimit(sleeper.pid, resource.RLIMIT_DATA) == (3 * GIB, 3 * GIB)
        assert resource.prlimit(sleeper.pid, resource.RLIMIT_CPU) == (120, 150)
        limit_process(sleeper.pid, memory_bytes=1)  # never below what TensorFlow needs to start
        assert resource.prlimit(sleeper.pid, resource.RLIMIT_DATA)[0] == GIB
    finally:
        sleeper.kill()
        sleeper.wait()


def test_at_most_tf_max_processes_slots(settings: Settings) -> None:
    slots = TensorFlowSlots(settings)
    first = slots.try_acquire()
    assert first is not None and slots.try_acquire() is None
    stops = iter([False, True])
    assert slots.acquire(should_stop=lambda: next(stops), poll_s=0.01) is None
    first.close()
    second = slots.try_acquire()
    assert second is not None
    second.close()


@pytest.mark.tensorflow
@pytest.mark.slow
def test_a_tensorflow_process_past_its_memory_limit_fails_cleanly(tmp_path: Path) -> None:
    """RLIMIT_DATA at 1.5 GiB; a training step that needs more than 2 GiB: the job fails with
    resource_limit_exceeded, not retried. (Measured here: TensorFlow died with SIGSEGV at
    1.30 of 1.50 GiB, in a native path that does not check its allocation; a crash near the
    limit counts as running out of memory. Elsewhere it raises ResourceExhaustedError.)"""
    from app import db
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, tf_memory_bytes=int(1.5 * GIB))
    db.upgrade(settings)
    config = copy.deepcopy(tiny_config())
    config["config"]["layers"][0]["config"]["batch_shape"] = [None, 512, 512, 3]
    config["config"]["layers"][1]["config"]["filters"] = 32
    arch = add_architecture(settings, config)
    job_id = add_job(settings, arch, "training", {"steps": 2, "batch_size": 64})
    with session_scope(settings) as session:
        held = repository.claim(session, job_id, "w", stale_before=repository.utc_cutoff(3))
    assert held is not None
    process = TFProcess(settings)
    assert resource.prlimit(process.pid, resource.RLIMIT_DATA)[0] == int(1.5 * GIB)
    writer = ProgressWriter(settings, held).start()
    context = JobContext(
        job=JobSpec(id=job_id, kind="training", attempt=1, name=None, parent_id=None,
                    parameters={"steps": 2, "batch_size": 64, "overfit_check": False}, time_limit_s=300),
        architecture=ArchitectureSpec(id=arch, name="big", format="json", config=config),
        settings=settings,
        reporter=writer,
        work_dir=tmp_path / "work",
    )
    started = time.monotonic()
    try:
        with pytest.raises(ChildFailed) as failed:
            run_in_tensorflow(context, writer, take=lambda: process, on_start=lambda p: None)
    finally:
        writer.stop()
        process.kill()
    assert failed.value.problem["code"] == "resource_limit_exceeded", failed.value.problem
    assert "tf_memory_bytes" in failed.value.problem["detail"]
    assert time.monotonic() - started < 300
    with session_scope(settings) as session:
        assert session.get(Job, job_id).status == "running"  # the caller writes the outcome
