"""`convlens serve` starts the service on its embedded defaults, and refuses a public bind without keys."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.serve import ReusePortListener
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


linux_only = pytest.mark.skipif(not ReusePortListener.supported(), reason="SO_REUSEPORT spreads connections on Linux")


@linux_only
def test_each_process_handed_the_port_listens_on_a_socket_of_its_own() -> None:
    with ReusePortListener.reserve("127.0.0.1", 0) as reserved:
        port = reserved.getsockname()[1]
        first, second = (pickle.loads(pickle.dumps(reserved)) for _ in range(2))  # as a spawned process gets it
        with first, second:
            for sock in (first, second):
                assert sock.getsockname() == ("127.0.0.1", port)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert reserved.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0  # it only keeps the port
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
    with socket.socket() as taken:  # a port in use is refused in the serving process
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            ReusePortListener.reserve("127.0.0.1", taken.getsockname()[1])


def _listening_and_connected(port: int) -> tuple[set[int], set[int]]:
    """Socket inodes on ``port``: listening ones, and the service's ends of connections."""
    listening, connected = set(), set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], int(fields[9])
        if local_port == port:
            (listening if state == "0A" else connected).add(inode)
    return listening, connected


def _socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode -> the pid holding it (of ``pids``)."""
    owners = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    return owners


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


@linux_only
def test_http_processes_share_the_connections(tmp_path: Path) -> None:
    """Each HTTP process of ``convlens serve`` listens on its own socket and the kernel spreads
    keep-alive connections over them (with one shared socket, the process that woke first took
    30 of wrk's 32)."""
    port = _free_port()
    env = {**os.environ, "CONVLENS_LOCAL_WORKERS": "0", "CONVLENS_HTTP_WORKERS": "2",
           "CONVLENS_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("CONVLENS_DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.3)
        http_processes = [pid for pid in _children(process.pid)
                          if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(http_processes) == 2
        clients = [httpx.Client(base_url=base, timeout=10) for _ in range(24)]
        try:
            for each in clients:  # 24 keep-alive connections, opened one after another
                assert each.get("/healthz").status_code == 200
            listening, connected = _listening_and_connected(port)
            owners = _socket_owners(http_processes)
            assert {owners.get(inode) for inode in listening} == set(http_processes)
            per_process = [sum(owners.get(inode) == pid for inode in connected) for pid in http_processes]
            assert sum(per_process) == 24 and min(per_process) > 0, per_process
        finally:
            for each in clients:
                each.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
