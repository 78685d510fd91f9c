"""Files a job owns go when it ends: its work folder and its dataset, on the path that ended it
or at the reconciler's sweep (a job cancelled while queued, or deleted with its architecture)."""

from __future__ import annotations

import os
import time

import pytest

from app.config import Settings
from app.db import session_scope
from app.jobs.lifecycle import ORPHAN_GRACE_S, datasets_dir, owned_paths, sweep, work_dir
from app.models import Architecture
from tests.jobs.helpers import add_architecture, add_job, tiny_config

pytestmark = pytest.mark.postgres


def _files(settings: Settings, job_id: str) -> list:
    folder = work_dir(settings, job_id)
    folder.mkdir(parents=True)
    (folder / "checkpoint.npz").write_bytes(b"x")
    dataset = datasets_dir(settings) / f"{job_id}.npz"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_bytes(b"x")
    return [folder, dataset]


def test_the_sweep_deletes_what_ended_jobs_and_deleted_ones_left(any_settings: Settings) -> None:
    from app import db

    db.upgrade(any_settings)
    arch = add_architecture(any_settings, tiny_config())
    other = tiny_config()
    other["config"]["name"] = "other"
    deleted_arch = add_architecture(any_settings, other)
    running = add_job(any_settings, arch, "training", status="running")
    cancelled = add_job(any_settings, arch, "training", status="cancelled")  # while queued: no worker saw it
    orphaned = add_job(any_settings, deleted_arch, "training", status="queued")
    files = {job_id: _files(any_settings, job_id) for job_id in (running, cancelled, orphaned)}
    young_orphan = _files(any_settings, "00000000-0000-0000-0000-000000000001")
    with session_scope(any_settings) as session:  # its jobs are deleted with it
        session.delete(session.get(Architecture, deleted_arch))
    for path in files[orphaned]:
        os.utime(path, (time.time() - ORPHAN_GRACE_S - 60,) * 2)
    assert set(sweep(any_settings)) == set(files[cancelled]) | set(files[orphaned])
    assert all(path.exists() for path in files[running])
    assert all(path.exists() for path in young_orphan)  # perhaps a request about to commit its job
    assert sweep(any_settings) == []


def test_a_training_run_owns_its_dataset_but_nothing_outside_the_data_folder(settings: Settings) -> None:
    inside = datasets_dir(settings) / "abc.npz"
    assert owned_paths(settings, "abc", "training", {"npz_path": str(inside)}) == [
        work_dir(settings, "abc"), inside.resolve()
    ]
    assert owned_paths(settings, "abc", "training", {"npz_path": "/etc/passwd"}) == [work_dir(settings, "abc")]
    assert owned_paths(settings, "abc", "gradients", {"npz_path": str(inside)}) == [work_dir(settings, "abc")]
