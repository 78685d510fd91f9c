"""Reports built by the real engine from the stored fixtures (Keras truth alongside)."""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.load import load_config, load_expected

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SEED = FIXTURES / "seed"
APPLICATIONS = FIXTURES / "applications"


def seed_config(number: int) -> dict[str, Any]:
    return load_config(SEED / f"example{number}.json")


def seed_expected(number: int) -> dict[str, Any]:
    return load_expected(SEED / f"example{number}.expected.json")


def engine_report(config: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    from app.analysis import analyze

    return analyze(config, **kwargs)


@pytest.fixture(scope="session")
def seed_reports() -> dict[int, dict[str, Any]]:
    """The engine's reports of the seed's three examples (Keras 3 JSON)."""
    return {number: engine_report(seed_config(number)) for number in (1, 2, 3)}


@pytest.fixture(scope="session")
def resnet50_report() -> dict[str, Any]:
    return engine_report(load_config(APPLICATIONS / "resnet50.json.gz"))


def rename_layer(config: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A copy of a Keras 3 functional config with one layer renamed everywhere it is referenced."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return new if value == old else value

    return walk(copy.deepcopy(config))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(
    data_dir: Path, *, workers: int = 0, env: dict[str, str] | None = None, ready_s: float = 90
) -> Iterator[str]:
    """``convlens serve`` in a subprocess on a free port (SQLite under ``data_dir``); its base URL.

    With ``workers`` > 0 the local executor runs that many job worker processes
    (TensorFlow jobs included), and readiness waits until they are alive.
    """
    port = _free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CONVLENS_DATA_DIR": str(data_dir / "data"),
        "CONVLENS_LOCAL_WORKERS": str(workers),
        "CONVLENS_LOG_JSON": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    environment.pop("CONVLENS_DATABASE_URL", None)
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=data_dir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_s
            while True:
                if process.poll() is not None:
                    raise AssertionError("convlens serve exited: " + log_path.read_text()[-2000:])
                try:
                    ready = httpx.get(f"{base}/readyz", timeout=2)
                    executor = ready.json().get("checks", {}).get("executor", {})
                    if ready.status_code == 200 and executor.get("alive", 0) >= workers:
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"convlens serve did not become ready in {ready_s:.0f} s")
                time.sleep(0.3)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``convlens serve`` in a subprocess (SQLite in a temp dir, no job workers); its base URL."""
    with serve(tmp_path_factory.mktemp("service")) as base:
        yield base


@pytest.fixture(scope="session")
def live_service_with_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``convlens serve`` with one local job worker (runs TensorFlow jobs), no demo data."""
    with serve(
        tmp_path_factory.mktemp("service-worker"),
        workers=1,
        env={"CONVLENS_DEMO_DATA": "false"},
        ready_s=180,
    ) as base:
        yield base
