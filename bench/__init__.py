"""convlens benchmarks. ``python -m bench`` runs them all and prints every ratio.

Shared helpers: start ``convlens serve`` in a subprocess, sample a process's memory, summarise
latencies, describe the machine.

Example::

    with Service(env={"CONVLENS_LOCAL_WORKERS": "0"}) as service:
        httpx.get(service.url + "/healthz")
        service.rss_bytes()
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "bench"
SEED_EXAMPLES = sorted((ROOT / "app" / "api" / "examples").glob("seed_example*.json"))
POSTGRES_ADMIN_URL = os.environ.get(
    "CONVLENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: ``percentile([1, 2, 3, 4], 0.5) == 2``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a Linux process from /proc/<pid>/status."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, same user). False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``peak`` is the maximum."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Service:
    """``convlens serve`` on a free port with a temporary data directory (SQLite unless
    ``database_url`` is given), no local job workers, no rate limit."""

    def __init__(
        self,
        database_url: str = "",
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="convlens-bench-")
        self.data_dir = Path(self._tmp.name) / "data"
        self.log_path = log_path or Path(self._tmp.name) / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVLENS_")}
        self.env.update(
            {
                "PYTHONPATH": str(ROOT),
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "CONVLENS_DATA_DIR": str(self.data_dir),
                "CONVLENS_LOCAL_WORKERS": "0",
                "CONVLENS_RATE_LIMIT_PER_MINUTE": "0",
                "CONVLENS_LOG_JSON": "true",
            }
        )
        if database_url:
            self.env["CONVLENS_DATABASE_URL"] = database_url
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90.0) -> Service:
        import httpx

        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
            cwd=self._tmp.name,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"convlens serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("convlens serve did not become ready")

    def settle(self, most_s: float = 90.0, calm_s: int = 3) -> float:
        """Wait until the service and its workers are idle (under 5 % of a core in each of
        ``calm_s`` seconds in a row): the local worker's warm TensorFlow process and the demo
        data's jobs start with the service and would otherwise share the cores with the first
        measurement. One calm second is not enough: a demo job takes the warm process and the
        worker then starts the next one, a few seconds of TensorFlow import later. Returns the
        seconds waited."""
        started = time.monotonic()
        before = tree_cpu_seconds(self.pid)
        calm = 0
        while time.monotonic() - started < most_s and calm < calm_s:
            time.sleep(1.0)
            now = tree_cpu_seconds(self.pid)
            calm = calm + 1 if now - before < 0.05 else 0
            before = now
        return time.monotonic() - started

    def rss_bytes(self) -> int:
        return proc_status(self.pid)["VmRSS"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._tmp.cleanup()


class PostgresDatabase:
    """A fresh PostgreSQL database for one benchmark, dropped afterwards."""

    def __init__(self, admin_url: str = POSTGRES_ADMIN_URL) -> None:
        import uuid

        self.admin_url = admin_url
        self.name = f"convlens_bench_{uuid.uuid4().hex[:10]}"
        base, _, _ = admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"

    def __enter__(self) -> str:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        engine.dispose()
        return self.url

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        engine.dispose()


def tree_cpu_seconds(pid: int, skip: bytes | None = None) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds (Linux /proc), leaving out the
    processes whose command line contains ``skip`` (and theirs)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            if skip is not None and skip in Path(f"/proc/{current}/cmdline").read_bytes():
                continue
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
        stack.extend(children.get(current, []))
    return total


def latency_summary(latencies: list[float], seconds: float) -> dict[str, float]:
    """Throughput (requests/s), p50/p99/mean latency (ms)."""
    return {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / seconds if seconds > 0 else float("nan"),
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "mean_ms": (statistics.fmean(latencies) * 1e3) if latencies else float("nan"),
    }


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python and the versions that matter here."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in (
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "psycopg",
        "httpx",
        "tensorflow",
        "keras",
        "celery",
        "prometheus-client",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "versions": versions,
        "postgresql": postgres_version(),
    }


def postgres_version() -> str | None:
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
        engine.dispose()
        return str(version)
    except Exception:  # noqa: BLE001 - reported as unknown
        return None
