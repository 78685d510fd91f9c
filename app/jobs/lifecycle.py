"""What happens when a job ends, wherever it ends (its worker, the reconciler, a cancel).

Its kind settles whatever waits on it (an analysis gets its measurement), and the files the
job owned are deleted: its work folder (training checkpoints) and what its kind declares
(an uploaded dataset). A periodic sweep deletes the files of jobs that ended without passing
through here (cancelled while queued, deleted with their architecture).

Example::

    with session_scope(settings) as session:
        paths = ended(session, settings, row)      # in the transaction that ended it
    delete_paths(paths)                            # after the commit
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.errors import DomainError
from app.jobs import repository
from app.jobs.kinds import get_kind
from app.models import TERMINAL_STATUSES, Job
from app.storage.files import delete_paths
from app.storage.usage import datasets_dir

log = logging.getLogger("convlens.jobs")

#: Files of a job that does not exist (yet) are kept this long: a request may have stored a
#: dataset for a job it has not committed yet.
ORPHAN_GRACE_S = 600.0


def work_dir(settings: Settings, job_id: str) -> Path:
    """The job's own folder (checkpoints), kept across attempts, deleted when it ends."""
    return settings.data_dir / "jobs" / job_id


def owned_paths(settings: Settings, job_id: str, kind: str, parameters: Mapping[str, Any]) -> list[Path]:
    paths = [work_dir(settings, job_id)]
    try:
        job_kind = get_kind(kind)
    except DomainError:
        return paths
    if job_kind.owned_files is not None:
        data_root = settings.data_dir.resolve()
        for path in job_kind.owned_files(settings, parameters):
            resolved = Path(path).resolve()
            if resolved.is_relative_to(data_root):  # never anything outside the data folder
                paths.append(resolved)
    return paths


def ended(session: Session, settings: Settings, row: Job) -> list[Path]:
    """Settle what waits on ``row`` (now terminal); the paths to delete after the commit."""
    try:
        job_kind = get_kind(row.kind)
    except DomainError:
        return []
    if job_kind.settle is not None:
        job_kind.settle(session, row)
    return owned_paths(settings, row.id, row.kind, row.parameters or {})


def sweep(settings: Settings) -> list[Path]:
    """Delete the work folders and datasets of jobs that ended (or no longer exist)."""
    candidates: dict[str, list[Path]] = {}
    for folder, pattern in ((settings.data_dir / "jobs", "*"), (datasets_dir(settings), "*.npz")):
        if folder.is_dir():
            for path in folder.glob(pattern):
                candidates.setdefault(path.name.split(".")[0], []).append(path)
    if not candidates:
        return []
    with session_scope(settings) as session:
        known = repository.statuses(session, list(candidates))
    now = time.time()
    doomed: list[Path] = []
    for job_id, paths in candidates.items():
        status = known.get(job_id)
        if status is None:
            doomed += [p for p in paths if now - _mtime(p) > ORPHAN_GRACE_S]
        elif status[0] in TERMINAL_STATUSES:
            doomed += paths
    delete_paths(doomed)
    return doomed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
