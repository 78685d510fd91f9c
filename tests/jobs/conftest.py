"""Job tests. Those that start worker processes (TensorFlow in their children) are marked
``tensorflow`` and ``slow`` by their modules; the rest (claims, reconciler, readiness,
resources) need only the database.

Crash and retry tests never race the job they kill: the job waits at a step the test
chose (``test_hooks_dir`` holds, see ``app.jobs.kinds.training.StepHold``) until the test
has done what it came to do.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.config import Settings
from tests.conftest import make_settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def job_settings(tmp_path: Path, database_url: str = "", **overrides: object) -> Settings:
    """The production heartbeat, timeout and reconcile intervals (what the tests measure),
    a short idle poll, checkpoints every 10 steps and a folder for step holds."""
    values: dict[str, object] = {
        "job_poll_interval_s": 0.3,
        "job_max_attempts": 3,
        "local_workers": 1,
        "training_checkpoint_every_steps": 10,
        "test_hooks_dir": tmp_path / "hooks",
    }
    values.update(overrides)
    from app import db

    settings = make_settings(tmp_path, database_url, **values)
    db.upgrade(settings)
    assert settings.test_hooks_dir is not None
    settings.test_hooks_dir.mkdir(parents=True, exist_ok=True)
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, on a free port: stopping or freezing it harms nobody."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    frozen: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError("the private redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.frozen = False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
