"""Benchmark: ``POST /v1/analyses`` under wrk, a new architecture every request.

Starts ``convlens serve`` on its defaults (HTTP processes = cores, SQLite in a temporary data
directory unless ``--postgres``), with the rate limit off, and drives it with wrk
(``bench/wrk/analyses.lua``: the seed's Example 3 with a model name unique to the run and the
request, so every request stores a new architecture and runs the engine). Prints requests/s,
p50, p99 and the count of non-2xx answers, after the service has settled (its local worker
starts a warm TensorFlow process, seconds of one core's CPU, with the service) and a warm-up
run.

It also reads the CPU time the service's processes (the serving process and its HTTP
processes) used during the measured run, from /proc: CPU milliseconds per request, and the
throughput that CPU cost allows on the machine's cores. On a machine shared with other
work that figure is the stable one; requests/s depends on what else runs.

Then it runs the same unit of work in this process, without HTTP (:func:`unit_in_process`:
prepare, gate, analyse, store and commit Example 3 with a new name each time, on a fresh
database of the same kind, its storage deltas folded every second as the service's
reconciler does), and splits the service's CPU per request into that unit and the rest (the
HTTP side: server, middleware, the thread hop, logs, metrics; and what the same work costs
more in a busy service than alone), against the budget per request that the goal leaves on
this machine's cores.

With ``--floor`` it first measures the same driver against the framework alone
(``bench/floor_app.py``: the same uvicorn and FastAPI stack, one process per core, a route that
parses the body and answers 201 without analysing or storing anything): what this machine
serves with no application work, the ceiling for the goals below.

Goals: at least 750 req/s with p99 under 100 ms and zero non-2xx on SQLite; at least
500 req/s on PostgreSQL (32 connections).

Run::

    python -m bench.bench_wrk                  # SQLite, 20 s, 32 connections
    python -m bench.bench_wrk --postgres       # also on a fresh PostgreSQL database
    python -m bench.bench_wrk --quick          # 6 s
    python -m bench.bench_wrk --floor          # also the framework alone, first

Needs the ``wrk`` program (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import uuid
from contextlib import ExitStack
from typing import Any

from bench import ROOT, PostgresDatabase, Service, tree_cpu_seconds

LUA = ROOT / "bench" / "wrk" / "analyses.lua"
EXAMPLE3 = ROOT / "app" / "api" / "examples" / "seed_example3.json"
GOALS = {"sqlite": (750.0, 100.0), "postgres": (500.0, None)}


def run_wrk(url: str, *, connections: int, seconds: float, threads: int = 2) -> dict[str, Any]:
    """One wrk run; the Lua script's summary line parsed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(LUA), url, "--", str(EXAMPLE3), uuid.uuid4().hex[:8]]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    match = re.search(r"^CONVLENS (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    values = {key: int(value) for key, value in (item.split("=") for item in match.group(1).split())}
    seconds_run = values["duration_us"] / 1e6
    errors = sum(values[key] for key in values if key.startswith("errors_") and key != "errors_status")
    return {
        "requests": values["requests"],
        "seconds": round(seconds_run, 2),
        "throughput_rps": values["requests"] / seconds_run,
        "p50_ms": values["p50_us"] / 1e3,
        "p90_ms": values["p90_us"] / 1e3,
        "p99_ms": values["p99_us"] / 1e3,
        "max_ms": values["max_us"] / 1e3,
        "non_2xx": values["non_2xx"],
        "socket_errors": errors,
    }


def service_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds (Linux /proc), leaving out the
    job workers (``app.jobs...``: an idle worker's TensorFlow start-up is not HTTP work)."""
    return tree_cpu_seconds(pid, skip=b"app.jobs")


def unit_in_process(database_url: str = "", seconds: float = 3.0) -> dict[str, float]:
    """CPU milliseconds of one request's unit of work in this process, no HTTP: ``create``
    (prepare, gate, analyse, store) in a committed session, Example 3 with a new name each time,
    on a fresh database (SQLite in a temporary folder unless ``database_url``). Median of
    three blocks of ``seconds`` after a warm-up; the storage deltas are folded between
    requests once a second, as the service's reconciler does (each new architecture's quota
    check sums the deltas not yet folded)."""
    import json
    import statistics
    import tempfile
    import time
    from pathlib import Path

    from app import db
    from app.analyses import service
    from app.config import Settings
    from app.models import DEFAULT_TENANT
    from app.storage.repository import fold_deltas

    config = json.loads(EXAMPLE3.read_text())
    with tempfile.TemporaryDirectory(prefix="convlens-unit-") as folder:
        settings = Settings(data_dir=Path(folder), database_url=database_url)
        db.upgrade(settings)
        db.ensure_default_tenant(settings)
        run_id, index = uuid.uuid4().hex[:8], 0
        folded_at = time.monotonic()

        def block(length: float) -> float:
            nonlocal index, folded_at
            count, cpu, ends = 0, 0.0, time.monotonic() + length
            while time.monotonic() < ends:
                config["config"]["name"] = f"unit_{run_id}_{index}"
                index += 1
                body = json.dumps({"architecture": config}).encode()
                started = time.process_time()
                with db.session_scope(settings) as session:
                    service.create(session, body, settings=settings, tenant_id=DEFAULT_TENANT)
                cpu += time.process_time() - started
                count += 1
                if time.monotonic() - folded_at >= 1.0:
                    with db.session_scope(settings) as session:
                        fold_deltas(session)
                    folded_at = time.monotonic()
            return cpu * 1e3 / max(1, count)

        block(1.0)  # imports, caches, the first statements' compilation
        blocks = [block(seconds) for _ in range(3)]
        db.dispose_engines()
    return {"unit_cpu_ms": statistics.median(blocks), "unit_cpu_ms_blocks": blocks}


def run(*, database: str = "sqlite", connections: int = 32, seconds: float = 20.0,
        warmup: float = 5.0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure on one database (``sqlite`` or ``postgres``); prints and returns the figures."""
    with ExitStack() as stack:
        database_url = stack.enter_context(PostgresDatabase()) if database == "postgres" else ""
        # convlens serve's defaults (HTTP processes = cores, one local job worker), rate limit off.
        service_env = {"CONVLENS_LOCAL_WORKERS": "1", **(env or {})}
        service = stack.enter_context(Service(database_url=database_url, env=service_env))
        settled = service.settle()
        run_wrk(service.url, connections=connections, seconds=warmup)
        cpu_before = service_cpu_seconds(service.pid)
        result = run_wrk(service.url, connections=connections, seconds=seconds)
        cpu = service_cpu_seconds(service.pid) - cpu_before
    with ExitStack() as stack:  # the same unit in this process, on a fresh database of the kind
        result.update(unit_in_process(stack.enter_context(PostgresDatabase()) if database == "postgres" else ""))
    cores = len(os.sched_getaffinity(0))
    result["service_cpu_ms_per_request"] = cpu * 1e3 / max(1, result["requests"])
    result["cpu_bound_rps"] = cores * 1e3 / result["service_cpu_ms_per_request"]
    result["load_average_1m"] = os.getloadavg()[0]
    result["database"] = database
    result["connections"] = connections
    result["settled_s"] = round(settled, 1)
    goal_rps, goal_p99 = GOALS.get(database, (None, None))
    met = (goal_rps is None or result["throughput_rps"] >= goal_rps) and (
        goal_p99 is None or result["p99_ms"] < goal_p99) and result["non_2xx"] == 0
    result["goal_met"] = met
    goal = f"goal >= {goal_rps:.0f} req/s" + (f", p99 < {goal_p99:.0f} ms" if goal_p99 else "") + ", zero non-2xx"
    print(
        f"wrk POST /v1/analyses (Example 3, new architecture each) on {database}, {connections} connections, "
        f"{result['seconds']} s: {result['throughput_rps']:.1f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, non-2xx {result['non_2xx']}, socket errors {result['socket_errors']} "
        f"({goal}: {'met' if met else 'NOT met'})"
    )
    print(
        f"  service CPU {result['service_cpu_ms_per_request']:.2f} ms per request: at most "
        f"{result['cpu_bound_rps']:.0f} req/s on {cores} cores with nothing else running "
        f"(load average during the run {result['load_average_1m']:.2f})"
    )
    unit, total = result["unit_cpu_ms"], result["service_cpu_ms_per_request"]
    result["rest_cpu_ms"] = total - unit  # the HTTP side, and the unit's extra cost in the busy service
    if goal_rps is not None:
        result["budget_cpu_ms"] = cores * 1e3 / goal_rps
    print(
        f"  of which the unit of work (prepare, gate, analyse, store, commit; measured in this process "
        f"without HTTP, median of 3 blocks): {unit:.2f} ms; the rest {result['rest_cpu_ms']:.2f} ms (the HTTP "
        f"side: server, middleware, thread hop, logs; and what the unit costs more among the service's "
        f"threads and processes than alone)"
        + (f"; {goal_rps:.0f} req/s on {cores} cores leaves {result['budget_cpu_ms']:.2f} ms per request "
           f"for both" if goal_rps is not None else "")
    )
    return result


def floor(*, connections: int = 32, seconds: float = 20.0, warmup: float = 5.0) -> dict[str, Any]:
    """The same wrk run against ``bench/floor_app.py`` (no analysis, no database) on as many
    uvicorn processes as ``convlens serve`` starts; prints and returns the figures."""
    import sys
    import time

    import httpx

    from bench import free_port

    cores = len(os.sched_getaffinity(0))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port),
               "--workers", str(cores), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/docs", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the floor app did not start") from None
                time.sleep(0.2)
        run_wrk(url, connections=connections, seconds=warmup)
        cpu_before = service_cpu_seconds(process.pid)
        result = run_wrk(url, connections=connections, seconds=seconds)
        cpu = service_cpu_seconds(process.pid) - cpu_before
    finally:
        process.terminate()
        process.wait(timeout=30)
    result["service_cpu_ms_per_request"] = cpu * 1e3 / max(1, result["requests"])
    result["cpu_bound_rps"] = cores * 1e3 / result["service_cpu_ms_per_request"]
    result["load_average_1m"] = os.getloadavg()[0]
    result["database"] = "none (framework floor)"
    print(
        f"floor: the same wrk run against FastAPI alone ({cores} uvicorn processes, body parsed, "
        f"201 answered, no analysis or database): {result['throughput_rps']:.1f} req/s, p50 "
        f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, non-2xx {result['non_2xx']}; "
        f"{result['service_cpu_ms_per_request']:.2f} ms CPU per request (at most "
        f"{result['cpu_bound_rps']:.0f} req/s on {cores} cores; load average {result['load_average_1m']:.2f})"
    )
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="6 s")
    parser.add_argument("--postgres", action="store_true", help="also on a fresh PostgreSQL database")
    parser.add_argument("--only-postgres", action="store_true")
    parser.add_argument("--floor", action="store_true", help="first the framework alone (bench/floor_app.py)")
    args = parser.parse_args(argv)
    seconds = 6.0 if args.quick else args.duration
    results = []
    if args.floor:
        results.append(floor(connections=args.connections, seconds=seconds))
    if not args.only_postgres:
        results.append(run(connections=args.connections, seconds=seconds))
    if args.postgres or args.only_postgres:
        results.append(run(database="postgres", connections=args.connections, seconds=seconds))
    return results


if __name__ == "__main__":
    main()
