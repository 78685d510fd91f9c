"""Rows and waiting helpers for the job tests (real database, real worker processes)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.db import session_scope
from app.models import DEFAULT_TENANT, Architecture, Job, JobEvent
from tests.fixtures.load import FIXTURES_DIR, load_config


def tiny_config() -> dict[str, Any]:
    """A small CNN (Keras 3 JSON, written by hand): a fraction of a second per training step."""
    return {
        "module": "keras",
        "class_name": "Sequential",
        "registered_name": None,
        "config": {
            "name": "tiny",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "registered_name": None,
                    "config": {"batch_shape": [None, 8, 8, 3], "dtype": "float32", "name": "input"},
                },
                {
                    "module": "keras.layers",
                    "class_name": "Conv2D",
                    "registered_name": None,
                    "config": {
                        "name": "conv",
                        "filters": 4,
                        "kernel_size": [3, 3],
                        "activation": "relu",
                    },
                },
                {
                    "module": "keras.layers",
                    "class_name": "GlobalAveragePooling2D",
                    "registered_name": None,
                    "config": {"name": "gap"},
                },
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "registered_name": None,
                    "config": {"name": "head", "units": 3, "activation": "softmax"},
                },
            ],
        },
    }


def example3_config() -> dict[str, Any]:
    return load_config(FIXTURES_DIR / "seed" / "example3.json")


def add_architecture(
    settings: Settings, config: dict[str, Any], tenant_id: str = DEFAULT_TENANT
) -> str:
    raw = json.dumps(config, sort_keys=True).encode()
    with session_scope(settings) as session:
        row = Architecture(
            tenant_id=tenant_id,
            sha256=hashlib.sha256(raw).hexdigest(),
            format="json",
            name=config["config"].get("name"),
            byte_size=len(raw),
            config=config,
        )
        session.add(row)
        session.flush()
        return row.id


def add_job(
    settings: Settings,
    architecture_id: str,
    kind: str,
    parameters: dict[str, Any] | None = None,
    **values: Any,
) -> str:
    with session_scope(settings) as session:
        job = Job(
            tenant_id=values.pop("tenant_id", DEFAULT_TENANT),
            kind=kind,
            architecture_id=architecture_id,
            parameters=parameters or {},
            max_attempts=values.pop("max_attempts", settings.job_max_attempts),
            **values,
        )
        session.add(job)
        session.flush()
        return job.id


def add_training_job(settings: Settings, architecture_id: str, steps: int = 40, **parameters: Any) -> str:
    """A training run of the tiny model (checkpoints every 10 steps with the job settings)."""
    return add_job(
        settings,
        architecture_id,
        "training",
        {"steps": steps, "batch_size": 8, "overfit_check": False, **parameters},
        time_limit_s=600,
    )


# -- step holds: the job waits at a step the test chose ------------------------------------


def hold(
    settings: Settings, job_id: str, step: int | None = None, attempt: int | None = None, phase: str | None = None
) -> None:
    """Make the training run ``job_id`` wait after ``step`` (or when it enters ``phase``), in
    ``attempt`` or in every attempt, until :func:`release`."""
    assert settings.test_hooks_dir is not None
    wanted: dict[str, Any] = {"step": step} if phase is None else {"phase": phase}
    if attempt is not None:
        wanted["attempt"] = attempt
    (settings.test_hooks_dir / f"{job_id}.hold").write_text(json.dumps(wanted))


def reached(settings: Settings, job_id: str, attempt: int = 1, timeout: float = 300.0) -> dict[str, Any]:
    """Wait until attempt ``attempt`` waits at its hold: ``{"step", "phase", "attempt", "pid"}``
    (the pid is the TensorFlow process running it)."""
    assert settings.test_hooks_dir is not None
    path = settings.test_hooks_dir / f"{job_id}.reached"

    def read() -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return found if found["attempt"] == attempt else None

    return wait_for(read, timeout, f"attempt {attempt} of job {job_id} to reach its hold", interval=0.02)


def release(settings: Settings, job_id: str) -> None:
    assert settings.test_hooks_dir is not None
    (settings.test_hooks_dir / f"{job_id}.hold").unlink(missing_ok=True)


def stored_step(settings: Settings, job_id: str, step: int, timeout: float = 60.0) -> Job:
    """Wait until the job's row shows ``steps_done >= step`` (its progress reached the database)."""
    return wait_for(
        lambda: (
            int(((row := job(settings, job_id)).progress_detail or {}).get("steps_done") or 0) >= step and row
        ),
        timeout,
        f"step {step} of job {job_id} in the database",
        interval=0.02,
    )


def held_training_run(settings: Settings, architecture_id: str, executor: Any, step: int = 25) -> tuple[str, int, Job]:
    """A training run dispatched to ``executor`` that waits after ``step`` of its first attempt
    (until :func:`release`), that step's progress stored: its id, the pid of its TensorFlow
    process and its row."""
    job_id = add_training_job(settings, architecture_id)
    hold(settings, job_id, step=step, attempt=1)
    executor.dispatch(job_id)
    child: int = reached(settings, job_id)["pid"]
    return job_id, child, stored_step(settings, job_id, step)


def step_events(settings: Settings, job_id: str) -> list[tuple[int, int, float | None]]:
    """(attempt, step, loss) of every step event, in order."""
    return [
        (e.payload["attempt"], e.payload["step"], e.payload["loss"])
        for e in events(settings, job_id)
        if e.kind == "step"
    ]


def job(settings: Settings, job_id: str) -> Job:
    with session_scope(settings) as session:
        row = session.get(Job, job_id)
        assert row is not None
        session.expunge(row)
        return row


def events(settings: Settings, job_id: str) -> list[JobEvent]:
    from sqlalchemy import select

    with session_scope(settings) as session:
        rows = list(
            session.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
            )
        )
        session.expunge_all()
        return rows


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it is truthy (its value) or ``timeout`` passes: an event the
    test waits for, with a generous ceiling, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_terminal(settings: Settings, job_id: str, timeout: float = 180.0) -> Job:
    return wait_for(
        lambda: (
            (row := job(settings, job_id)).status in ("succeeded", "failed", "cancelled") and row
        ),
        timeout,
        f"job {job_id} to finish",
    )
