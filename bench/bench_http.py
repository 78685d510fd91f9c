"""Benchmark: HTTP throughput and latency of ``POST /v1/analyses`` at 32 concurrent clients.

Starts the real service (``convlens serve``, SQLite in a temporary directory unless
``--database-url``/``--postgres``) and drives it with 32 httpx async clients on keep-alive
connections, each POSTing the seed's three example models (JSON) in turn for ``--duration``
seconds. For reference it measures ``GET /healthz`` the same way (the framework's ceiling
on this machine); the ratio analyses/healthz says how much of the ceiling an analysis costs.

It also measures one ResNet50 analysis over HTTP against the engine in process
(``--resnet50``, on by default): the median of sequential ``POST /v1/analyses`` of the
ResNet50 JSON (a new name each time, so each is parsed, gated, analysed and stored) against
the median of ``app.analysis.analyze`` on the same config in this process, interleaved so
both see the same machine load. Goal: the HTTP request at most 2x the engine.

Run::

    python -m bench.bench_http                 # 20 s at 32 clients on SQLite
    python -m bench.bench_http --postgres      # the same on a fresh PostgreSQL database
    python -m bench.bench_http --quick         # 6 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from typing import Any

import httpx

from bench import SEED_EXAMPLES, PostgresDatabase, Service, latency_summary


async def drive(
    url: str,
    requests: list[tuple[str, str, bytes | None]],
    *,
    clients: int,
    duration: float,
    warmup: float = 1.0,
) -> dict[str, Any]:
    """``clients`` coroutines send ``requests`` round-robin for ``duration`` s after ``warmup`` s.

    Returns latency summary, status counts and the ids of analyses answered 201.
    """
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    created: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def worker(offset: int) -> None:
            index = offset
            while True:
                method, path, body = requests[index % len(requests)]
                index += 1
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                try:
                    response = await client.request(
                        method,
                        path,
                        content=body,
                        headers={"content-type": "application/json"} if body is not None else None,
                    )
                except httpx.HTTPError as exc:
                    if sent >= measure_from:
                        errors[type(exc).__name__] += 1
                    continue
                done = time.perf_counter()
                if sent >= measure_from:
                    latencies.append(done - sent)
                    statuses[response.status_code] += 1
                    if response.status_code == 201 and method == "POST":
                        created.append(response.json()["id"])

        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - measure_from
    return {
        **latency_summary(latencies, elapsed),
        "seconds": round(elapsed, 2),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "created": created,
    }


def server_latency(url: str, method: str, route: str, status: str) -> dict[str, Any]:
    """Latency as the service saw it, from ``/metrics`` (the histogram of the route template):
    shares over 1 s and 2.5 s, and the bucket bounds holding the median and the 99th percentile.
    Separates time spent inside the service from queueing in the load generator."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=30).text
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        if family.name != "convlens_http_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_bucket")
                and labels.get("method") == method
                and labels.get("route") == route
                and labels.get("status") == status
            ):
                buckets.append((float(labels["le"]), sample.value))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0

    def share_over(bound: float) -> float:
        at_or_below = next((count for le, count in buckets if le == bound), total)
        return (total - at_or_below) / total if total else float("nan")

    def bound_of(fraction: float) -> float:
        return next((le for le, count in buckets if count >= fraction * total), float("inf"))

    return {
        "requests": total,
        "over_1s": share_over(1.0),
        "over_2_5s": share_over(2.5),
        "p50_le_s": bound_of(0.5),
        "p99_le_s": bound_of(0.99),
    }


def resnet50_ratio(url: str, repeats: int = 21, pid: int | None = None) -> dict[str, Any]:
    """Median ResNet50 JSON POST over HTTP (persistence included) against the median engine
    time in process, interleaved; one keep-alive client.

    With the service's ``pid`` it also reads the CPU the service spent on the measured POSTs
    (from /proc, 10 ms ticks, so summed over them) against the CPU of the engine runs: a
    ratio that does not depend on what else runs on the machine.
    """
    import gzip
    import statistics

    from app.analysis import analyze
    from bench import ROOT
    from bench.bench_wrk import service_cpu_seconds

    config = json.loads(gzip.open(ROOT / "tests" / "fixtures" / "applications" / "resnet50.json.gz").read())
    http_times: list[float] = []
    engine_times: list[float] = []
    service_cpu = engine_cpu = 0.0
    with httpx.Client(base_url=url, timeout=60) as client:
        for index in range(repeats + 2):
            # unique, and without a run of 19 digits (a string like time_ns() sends the parser
            # to its exact check for over-long integers, which clients rarely pay)
            config["config"]["name"] = f"resnet50_{index}_{uuid.uuid4().hex[:12]}"
            body = json.dumps({"architecture": config}).encode()
            cpu_before = service_cpu_seconds(pid) if pid is not None else 0.0
            started = time.perf_counter()
            response = client.post("/v1/analyses", content=body, headers={"content-type": "application/json"})
            elapsed = time.perf_counter() - started
            cpu_after = service_cpu_seconds(pid) if pid is not None else 0.0
            response.raise_for_status()
            started, cpu_started = time.perf_counter(), time.process_time()
            analyze(config)
            engine = time.perf_counter() - started
            engine_cpu_run = time.process_time() - cpu_started
            if index >= 2:  # the first two warm imports and caches
                http_times.append(elapsed)
                engine_times.append(engine)
                service_cpu += cpu_after - cpu_before
                engine_cpu += engine_cpu_run
    http_ms = statistics.median(http_times) * 1e3
    engine_ms = statistics.median(engine_times) * 1e3
    result: dict[str, Any] = {"http_ms": http_ms, "engine_ms": engine_ms, "ratio": http_ms / engine_ms,
                              "repeats": repeats}
    print(
        f"ResNet50 JSON POST over HTTP (persistence included): median {http_ms:.2f} ms against the engine "
        f"in process {engine_ms:.2f} ms: {result['ratio']:.2f}x (goal <= 2x: "
        f"{'met' if result['ratio'] <= 2 else 'NOT met'})"
    )
    if pid is not None and engine_cpu > 0:
        result.update(service_cpu_ms=service_cpu * 1e3 / repeats, engine_cpu_ms=engine_cpu * 1e3 / repeats,
                      cpu_ratio=service_cpu / engine_cpu)
        print(
            f"  in CPU: the service spent {result['service_cpu_ms']:.2f} ms per POST against "
            f"{result['engine_cpu_ms']:.2f} ms for the engine in process (means of {repeats}): "
            f"{result['cpu_ratio']:.2f}x"
        )
    return result


def analysis_requests() -> list[tuple[str, str, bytes | None]]:
    bodies = [
        json.dumps({"architecture": json.loads(p.read_text())}).encode() for p in SEED_EXAMPLES
    ]
    return [("POST", "/v1/analyses", body) for body in bodies]


def run(
    *, clients: int = 32, duration: float = 20.0, database: str = "sqlite", database_url: str = "",
    resnet50: bool = True,
) -> dict[str, Any]:
    """Measure on one database; returns the figures (and prints them)."""
    with ExitStack() as stack:
        if database == "postgres" and not database_url:
            database_url = stack.enter_context(PostgresDatabase())
        service = stack.enter_context(Service(database_url=database_url))
        # One request of each kind first, so imports and caches are warm.
        for method, path, body in analysis_requests():
            httpx.request(
                method,
                service.url + path,
                content=body,
                headers={"content-type": "application/json"},
                timeout=60,
            ).raise_for_status()
        ratio = resnet50_ratio(service.url, pid=service.pid) if resnet50 else None
        analyses = asyncio.run(
            drive(service.url, analysis_requests(), clients=clients, duration=duration)
        )
        server_side = server_latency(service.url, "POST", "/v1/analyses", "201")
        ceiling = asyncio.run(
            drive(
                service.url,
                [("GET", "/healthz", None)],
                clients=clients,
                duration=max(3.0, duration / 3),
            )
        )
    analyses.pop("created")
    ceiling.pop("created")
    result = {
        "resnet50": ratio,
        "database": database,
        "clients": clients,
        "analyses": analyses,
        "healthz": ceiling,
        "server_side": server_side,
        "ratio_analyses_to_healthz_throughput": analyses["throughput_rps"]
        / ceiling["throughput_rps"],
    }
    print(
        f"POST /v1/analyses on {database}, {clients} clients, {analyses['seconds']} s: "
        f"{analyses['throughput_rps']:.1f} req/s, p50 {analyses['p50_ms']:.1f} ms, "
        f"p99 {analyses['p99_ms']:.1f} ms, statuses {analyses['statuses']}, "
        f"errors {analyses['errors']}"
    )
    print(
        f"  server side (the service's own histogram, warm-up included): "
        f"{server_side['over_1s']:.1%} of analyses over 1 s, {server_side['over_2_5s']:.1%} "
        f"over 2.5 s; p50 <= {server_side['p50_le_s']} s, p99 <= {server_side['p99_le_s']} s"
    )
    print(
        f"GET /healthz (ceiling) on {database}: {ceiling['throughput_rps']:.1f} req/s, "
        f"p50 {ceiling['p50_ms']:.1f} ms, p99 {ceiling['p99_ms']:.1f} ms"
    )
    print(
        f"ratio analyses/healthz throughput: {result['ratio_analyses_to_healthz_throughput']:.2f}"
    )
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="6 s per measurement")
    parser.add_argument(
        "--postgres", action="store_true", help="also on a fresh PostgreSQL database"
    )
    parser.add_argument("--database-url", default="", help="an existing database instead")
    args = parser.parse_args(argv)
    duration = 6.0 if args.quick else args.duration
    results = [
        run(
            clients=args.clients,
            duration=duration,
            database_url=args.database_url,
            database="custom" if args.database_url else "sqlite",
        )
    ]
    if args.postgres:
        results.append(run(clients=args.clients, duration=duration, database="postgres"))
    return results


if __name__ == "__main__":
    main()
