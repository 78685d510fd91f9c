"""The bench command and the load script run, and their pass criteria can fail."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from bench import percentile
from bench.loadtest import run_mix
from tests.platform.containers import ROOT, base_env


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile([3.0], 0.99) == 3.0


def test_the_bench_command_lists_every_benchmark() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name in ("engine", "http", "upload", "training", "load", "--quick"):
        assert name in result.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nonsense"],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "unknown benchmark" in refused.stderr


@pytest.mark.slow
def test_the_load_script_passes_against_the_real_service() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadtest",
            "--duration",
            "4",
            "--clients",
            "8",
            "--databases",
            "sqlite",
        ],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "5xx 0" in result.stdout


def test_the_load_script_fails_when_the_server_errs() -> None:
    """A server that answers 500 must make the run fail (the criterion is not vacuous)."""
    import threading

    import uvicorn

    async def broken(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"boom"})

    from tests.platform.containers import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(broken, port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        import time

        deadline = time.monotonic() + 60  # uvicorn sets started once it listens
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.05)
        outcome = asyncio.run(run_mix(f"http://127.0.0.1:{port}", clients=2, duration=0.5))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert outcome["server_errors"] > 0 and outcome["passed"] is False
