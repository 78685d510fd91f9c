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


def add_long_training_job(settings: Settings, architecture_id: str) -> str:
    """A training run long enough (300 steps) to be killed in the middle."""
    return add_job(
        settings,
        architecture_id,
        "training",
        {"steps": 300, "batch_size": 8, "overfit_steps": 0},
        time_limit_s=300,
    )


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
