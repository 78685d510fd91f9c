"""Job tests run real worker processes (TensorFlow in their children): tensorflow, slow."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from tests.conftest import make_settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/jobs" in str(item.fspath):
            item.add_marker(pytest.mark.tensorflow)
            item.add_marker(pytest.mark.slow)


def job_settings(tmp_path: Path, database_url: str = "", **overrides: object) -> Settings:
    """Short heartbeats and reconciles so that crash recovery takes seconds, not minutes."""
    values: dict[str, object] = {
        "heartbeat_interval_s": 0.5,
        "heartbeat_timeout_s": 4.0,
        "reconcile_interval_s": 0.5,
        "job_poll_interval_s": 0.3,
        "job_max_attempts": 3,
        "local_workers": 1,
    }
    values.update(overrides)
    from app import db

    settings = make_settings(tmp_path, database_url, **values)
    db.upgrade(settings)
    return settings


@pytest.fixture
def jsettings(tmp_path: Path) -> Settings:
    return job_settings(tmp_path)


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Pids a test started; killed (only those) at the end whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        kill(pid)
