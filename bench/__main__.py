"""``python -m bench``: every convlens benchmark in one run, then every ratio in one table.

Benchmarks (each can also run alone):

- ``engine``:   the engine against ``keras.models.model_from_json`` on the Keras Applications
  configs, and 1,000 vs 10,000 layers (``bench/bench_engine.py``).
- ``http``:     ``POST /v1/analyses`` throughput, p50 and p99 at 32 concurrent clients, on SQLite
  and PostgreSQL, and one ResNet50 JSON POST against the engine in process
  (``bench/bench_http.py``).
- ``wrk``:      ``POST /v1/analyses`` of Example 3 (a new architecture each request) under wrk at
  32 connections on ``convlens serve`` defaults, SQLite and PostgreSQL: req/s, p50, p99, non-2xx
  and the service's CPU per request (``bench/bench_wrk.py``; needs the ``wrk`` program).
- ``upload``:   a ~530 MB VGG16 ``.keras`` upload: server memory growth and time against the
  raw upload time (``bench/bench_upload.py``).
- ``training``: instrumented against plain ``model.fit`` training throughput, and submit-to-
  first-step delay (``bench/bench_training.py``).
- ``load``:     the load test (60 s at 32 clients mixing analyses and reads, SQLite and
  PostgreSQL; ``bench/loadtest.py``).
- ``fairness``: tenant B holds 100 event streams, 60 slow uploads and 10 queued gradient
  measurements while tenant A's reads and ``/healthz`` are timed, SQLite and PostgreSQL
  (``bench/bench_fairness.py``).
- ``parse``:    the strict JSON parser (orjson) against the same rules on the standard
  library, and the gate's time per document (``bench/bench_parse.py``).
- ``pages``:    the report page, comparison page and terminal report from Example 1 to
  NASNetLarge: size and median render time (``bench/bench_pages.py``).
- ``scaling``:  plain against residual chains of 1,000 to 10,000 blocks: the engine stays
  linear with a skip per block (``bench/bench_scaling.py``).
- ``gradients``: predicted against measured gradient flow on the seed examples and the 17
  Keras Applications models (``bench/bench_gradients.py``; the verdict's calibration,
  ``bench/calibrate_gradients.py``, trains 45 networks and runs alone).
- ``hops``:     a unit of work's hop from the event loop to a thread and back: the unit threads
  against ``anyio.to_thread`` with a capacity limiter, CPU per hop (``bench/bench_hops.py``).

Run::

    python -m bench                 # everything (about 10 minutes on 2 cores)
    python -m bench --quick         # shorter runs and fewer models (a few minutes)
    python -m bench --only http,upload

Results (with the machine described) are also written to ``artifacts/bench/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ARTIFACTS, ROOT, machine

ALL = ("engine", "http", "wrk", "upload", "training", "load", "parse", "pages", "fairness",
       "scaling", "gradients", "hops")
#: Lines of the script-style benchmarks that carry a figure worth repeating in the summary.
FIGURE_LINE = re.compile(r"ratio|goal|throughput|delay|chain of|%|\d+x\s*$", re.IGNORECASE)


def run_script(name: str, quick: bool) -> dict[str, Any]:
    """Run ``bench/<name>.py`` as a script (it imports TensorFlow: keep it out of this process),
    echo its output, keep the lines that carry figures."""
    path = ROOT / "bench" / f"{name}.py"
    if not path.exists():
        print(f"!! {path.relative_to(ROOT)} does not exist: this benchmark was NOT run")
        return {"status": "missing", "figures": []}
    argv = [sys.executable, str(path), *(["--quick"] if quick else [])]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        if _noise(line):
            continue
        print(line, end="", flush=True)
        lines.append(line.rstrip())
    code = process.wait()
    figures = [line for line in lines if FIGURE_LINE.search(line)]
    return {
        "status": "ok" if code == 0 else f"failed (exit {code})",
        "output": lines,
        "figures": figures,
    }


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }


def _noise(line: str) -> bool:
    """TensorFlow's start-up chatter on stderr (CUDA probing, oneDNN notices)."""
    return bool(re.match(r"^(WARNING: All log messages|[IWE]\d{4} |\S+\.cc:\d+\])", line))


def source_state() -> dict[str, Any]:
    """The commit measured, and whether tracked files differed from it (others' edits)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "modified": None}
    return {"commit": commit, "modified": [line[3:] for line in changed if line.strip()]}


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(benchmark, figure, goal / verdict) rows for the final table."""
    rows: list[tuple[str, str, str]] = []
    for entry in results.get("wrk", []):
        rows.append(
            (
                "wrk",
                f"Example 3 POST (new architecture each) on {entry['database']}, {entry['connections']} "
                f"connections: {entry['throughput_rps']:.1f} req/s, p50 {entry['p50_ms']:.1f} ms, "
                f"p99 {entry['p99_ms']:.1f} ms, non-2xx {entry['non_2xx']}; service CPU "
                f"{entry['service_cpu_ms_per_request']:.2f} ms/request",
                ("goal >= 750 req/s, p99 < 100 ms" if entry["database"] == "sqlite" else "goal >= 500 req/s")
                + ": " + ("met" if entry["goal_met"] else "NOT met"),
            )
        )
    for entry in results.get("http", []):
        ratio = entry.get("resnet50")
        if ratio:
            rows.append(
                (
                    "http",
                    f"ResNet50 JSON POST on {entry['database']}: {ratio['http_ms']:.2f} ms against the engine "
                    f"{ratio['engine_ms']:.2f} ms = {ratio['ratio']:.2f}x",
                    "goal <= 2x: " + ("met" if ratio["ratio"] <= 2 else "NOT met"),
                )
            )
        a = entry["analyses"]
        rows.append(
            (
                "http",
                f"POST /v1/analyses on {entry['database']}, {entry['clients']} clients: "
                f"{a['throughput_rps']:.1f} req/s, p50 {a['p50_ms']:.1f} ms, "
                f"p99 {a['p99_ms']:.1f} ms",
                f"5xx: {sum(v for k, v in a['statuses'].items() if int(k) >= 500)}",
            )
        )
        rows.append(
            (
                "http",
                f"analyses / GET /healthz throughput on {entry['database']}: "
                f"{entry['ratio_analyses_to_healthz_throughput']:.2f} "
                f"(healthz {entry['healthz']['throughput_rps']:.1f} req/s)",
                "reference",
            )
        )
    upload = results.get("upload")
    if upload:
        rows.append(
            (
                "upload",
                f"VGG16 .keras ({upload['file_mib']:.0f} MiB): server memory growth "
                f"{upload['max_growth_mib']:.1f} MiB",
                "goal < 64 MiB: " + ("met" if upload["goal_growth_met"] else "NOT met"),
            )
        )
        rows.append(
            (
                "upload",
                f"analysis {upload['analysis_median_s']:.2f} s / raw upload "
                f"{upload['raw_upload_median_s']:.2f} s = {upload['ratio_analysis_to_raw']:.2f}",
                "goal < 2: " + ("met" if upload["goal_ratio_met"] else "NOT met"),
            )
        )
    for entry in results.get("load", []):
        rows.append(
            (
                "load",
                f"{entry['database']}: {entry['throughput_rps']:.1f} req/s, p50 "
                f"{entry['p50_ms']:.1f} ms, p99 {entry['p99_ms']:.1f} ms, "
                f"5xx {entry['server_errors']}, "
                f"unreadable {entry['unreadable']} of {entry['analyses_created']}",
                "PASS" if entry["passed"] else "FAIL",
            )
        )
    for name in ("engine", "training", "parse", "pages", "fairness", "scaling", "gradients", "hops"):
        entry = results.get(name)
        if entry is None:
            continue
        if entry["status"] != "ok":
            rows.append((name, entry["status"], "NOT measured"))
        for line in entry.get("figures", []):
            rows.append((name, line.strip(), ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run every convlens benchmark."
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs, fewer models (a few minutes)"
    )
    parser.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}"
    )
    parser.add_argument("--output", type=Path, default=ARTIFACTS / "results.json")
    args = parser.parse_args(argv)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(selected) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    described = machine()
    described["source"] = source_state()
    print("machine:", json.dumps(described))
    results: dict[str, Any] = {
        "machine": described,
        "quick": args.quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    timings: dict[str, float] = {}
    for name in selected:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        if name == "engine":
            results["engine"] = run_script("bench_engine", args.quick)
        elif name == "training":
            results["training"] = run_script("bench_training", args.quick)
        elif name == "parse":
            results["parse"] = run_script("bench_parse", args.quick)
        elif name == "pages":
            results["pages"] = run_script("bench_pages", args.quick)
        elif name == "fairness":
            results["fairness"] = run_script("bench_fairness", args.quick)
        elif name in ("scaling", "gradients", "hops"):
            results[name] = run_script(f"bench_{name}", args.quick)
        elif name == "http":
            from bench import bench_http

            results["http"] = bench_http.main(["--postgres", *(["--quick"] if args.quick else [])])
        elif name == "wrk":
            from bench import bench_wrk

            results["wrk"] = bench_wrk.main(["--postgres", *(["--quick"] if args.quick else [])])
        elif name == "upload":
            from bench import bench_upload

            results["upload"] = bench_upload.main(["--quick"] if args.quick else [])
        elif name == "load":
            from bench import loadtest

            results["load"] = loadtest.main(["--duration", "10" if args.quick else "60"])
        timings[name] = time.perf_counter() - started
    results["seconds"] = timings
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]

    print("\n=== summary (all measured in this run) ===")
    for bench_name, figure, verdict in summary_rows(results):
        print(f"{bench_name:<9} {figure}" + (f"   [{verdict}]" if verdict else ""))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {args.output}")
    failed: list[str] = [
        name
        for name in ("engine", "training")
        if name in results and results[name]["status"] != "ok"
    ]
    failed += [f"load/{e['database']}" for e in results.get("load", []) if not e["passed"]]
    if failed:
        print("not passed / not run:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
