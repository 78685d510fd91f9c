"""Benchmark: uploading a large ``.keras`` file (VGG16 with its weights, about 530 MB).

Figures, each measured in this run:

- **memory growth**: the API server's peak RSS during the request minus its RSS just before
  (``/proc/<pid>/status``: VmRSS sampled every 5 ms, and VmHWM after resetting it through
  ``/proc/<pid>/clear_refs``; the larger of the two peaks is used). Goal: under 64 MB: the
  upload streams to disk and only ``config.json`` is read from the archive, never the weights.
- **analysis time**: wall time of ``POST /v1/analyses`` (multipart ``file``) until the 201 with
  the finished report arrives: streaming, hashing, storing, reading the config, the analysis,
  the database write.
- **raw upload time**: the same client POSTing the *same multipart body* to a minimal ASGI app
  on the same uvicorn (httptools) that reads every byte and discards it: the cost of moving
  the bytes through HTTP on this machine and nothing else. Goal: analysis < 2x raw upload.

The file is generated locally (``keras.applications.VGG16(weights=None)``, randomly initialised,
then ``model.save``) and cached in ``artifacts/bench/``.

Run::

    python -m bench.bench_upload            # 3 uploads of each kind
    python -m bench.bench_upload --quick    # 1 upload of each kind
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import ARTIFACTS, ROOT, RssSampler, Service, free_port, proc_status, reset_peak_rss

MODEL_PATH = ARTIFACTS / "vgg16.keras"
MiB = 1024 * 1024


def generate_model(path: Path = MODEL_PATH) -> Path:
    """VGG16 with random weights saved as .keras, in a child process (no TensorFlow here)."""
    if path.exists() and path.stat().st_size > 400 * MiB:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.keras")
    code = "import sys, keras; keras.applications.VGG16(weights=None).save(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", code, str(partial)],
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )
    partial.replace(path)
    return path


# -- the raw-upload sink -----------------------------------------------------------------------


async def sink_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, discards it, answers with the byte count."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    total = 0
    more = True
    while more:
        message = await receive()
        total += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(total).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bench_upload:sink_app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(url, content=b"x", timeout=2)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the sink did not start")


def post_file(url: str, path: Path, timeout: float = 600.0) -> tuple[float, httpx.Response]:
    """POST ``path`` as multipart ``file``; seconds until the whole response arrived."""
    with path.open("rb") as handle, httpx.Client(timeout=timeout) as client:
        started = time.perf_counter()
        response = client.post(url, files={"file": (path.name, handle, "application/octet-stream")})
        return time.perf_counter() - started, response


def measure_upload(service: Service, path: Path) -> dict[str, Any]:
    before = service.rss_bytes()
    hwm_reset = reset_peak_rss(service.pid)
    with RssSampler(service.pid) as sampler:
        seconds, response = post_file(service.url + "/v1/analyses", path)
    status = proc_status(service.pid)
    peak = max(sampler.peak, status["VmHWM"] if hwm_reset else 0)
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
    report = response.json()["report"]
    return {
        "seconds": seconds,
        "rss_before_mib": before / MiB,
        "rss_peak_mib": peak / MiB,
        "rss_after_mib": status["VmRSS"] / MiB,
        "growth_mib": (peak - before) / MiB,
        "peak_from_hwm": hwm_reset,
        "total_params": report["summary"]["total_params"],
    }


def run(*, repeats: int = 3) -> dict[str, Any]:
    path = generate_model()
    size = path.stat().st_size
    print(f"{path.name}: {size / MiB:.1f} MiB")
    sink, sink_url = start_sink()
    try:
        post_file(sink_url, path)  # warm the page cache
        raw = []
        for _ in range(repeats):
            seconds, response = post_file(sink_url, path)
            assert int(response.text) > size, response.text  # the whole multipart body arrived
            raw.append(seconds)
    finally:
        sink.terminate()
        sink.wait(timeout=30)
    with tempfile.TemporaryDirectory() as tmp, Service() as service:
        small = ROOT / "tests" / "fixtures" / "seed" / "example3.keras"
        if small.exists():  # warm the upload path (imports, first-use allocations)
            post_file(service.url + "/v1/analyses", small)
        runs = [measure_upload(service, path) for _ in range(repeats)]
        del tmp
    raw_median = statistics.median(raw)
    first = runs[0]
    analysis_median = statistics.median(r["seconds"] for r in runs)
    result = {
        "file_mib": size / MiB,
        "raw_upload_s": raw,
        "raw_upload_median_s": raw_median,
        "raw_throughput_mib_s": size / MiB / raw_median,
        "runs": runs,
        "analysis_median_s": analysis_median,
        "ratio_analysis_to_raw": analysis_median / raw_median,
        "max_growth_mib": max(r["growth_mib"] for r in runs),
        "first_upload_growth_mib": first["growth_mib"],
        "goal_growth_met": max(r["growth_mib"] for r in runs) < 64,
        "goal_ratio_met": analysis_median / raw_median < 2,
    }
    for index, r in enumerate(runs, 1):
        kind = "new content" if index == 1 else "same content again"
        print(
            f"upload {index} ({kind}): {r['seconds']:.2f} s, RSS {r['rss_before_mib']:.1f} -> peak "
            f"{r['rss_peak_mib']:.1f} MiB (+{r['growth_mib']:.1f} MiB), "
            f"total_params {r['total_params']:,}"
        )
    print(
        f"raw upload (same bytes to a discarding endpoint): median {raw_median:.2f} s "
        f"({result['raw_throughput_mib_s']:.0f} MiB/s), runs {[round(s, 2) for s in raw]}"
    )
    print(
        f"memory growth: max {result['max_growth_mib']:.1f} MiB (goal < 64 MiB: "
        f"{'met' if result['goal_growth_met'] else 'NOT met'})"
    )
    print(
        f"analysis / raw upload time: {result['ratio_analysis_to_raw']:.2f} (goal < 2: "
        f"{'met' if result['goal_ratio_met'] else 'NOT met'})"
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one upload of each kind")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    return run(repeats=1 if args.quick else args.repeats)


if __name__ == "__main__":
    main()
