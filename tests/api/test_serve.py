"""`convlens serve` starts the service on its embedded defaults, and refuses a public bind without keys."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.helpers import seed_config

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_on_embedded_defaults(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "CONVLENS_LOCAL_WORKERS": "0"}
    env.pop("CONVLENS_DATABASE_URL", None)
    env.pop("CONVLENS_DATA_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError("service did not become ready")
        response = httpx.post(f"{base}/v1/analyses", json={"architecture": seed_config(3)}, timeout=30)
        assert response.status_code == 201
        assert (tmp_path / "convlens-data" / "convlens.db").exists()
        # Every HTTP process reports the one executor of the serving process.
        for _ in range(6):
            checks = httpx.get(f"{base}/readyz", headers={"Connection": "close"}, timeout=5).json()["checks"]
            assert checks["executor"]["executor"] == "local" and checks["executor"]["workers"] == 0
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_public_bind_without_keys_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "CONVLENS_AUTH_MODE": "none"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "without API keys" in (result.stdout + result.stderr)
