"""Benchmark: one tenant holding what it can must not slow another tenant down.

Tenant B holds, at once, 100 server-sent event streams (on a queued training run, so each
stream polls for the whole window), 60 slow uploads (one byte every 5 s; each is answered
408 once the body deadline passes and B opens it again; a refused one is tried again after
the 429's Retry-After) and 10 queued gradient
measurements. Meanwhile tenant A reads its analysis (``GET /v1/analyses/{id}``, 4 clients
back to back) and a probe reads ``/healthz`` every 50 ms. Figures: A's GET and the probe's
p50/p99 while B holds all that, against the same with B idle (the baseline, measured first
on the same service); how many of B's streams, uploads and jobs were held or refused.

Two configurations, on SQLite and on PostgreSQL, ``convlens serve`` defaults otherwise
(one HTTP process per core, no job workers: B's jobs stay queued):

- ``raised caps``: the per-tenant caps raised above what B asks for, so B really holds 100
  streams, 60 uploads and 10 jobs: the service itself must stay fair.
- ``default caps``: what B gets with the shipped limits (the rest is refused 429 ``tenant_limit``).

Goals (issue "no tenant can starve another"): A's GET p99 < 1 s and /healthz p99 < 200 ms.

Run::

    python -m bench.bench_fairness            # 20 s windows
    python -m bench.bench_fairness --quick    # 8 s windows
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from bench import ARTIFACTS, ROOT, PostgresDatabase, Service, latency_summary, machine

STREAMS, UPLOADS, GRADIENTS = 100, 60, 10
A_CLIENTS = 4
PROBE_INTERVAL_S = 0.05
SLOW_BYTE_EVERY_S = 5.0
#: B waits this long after a 429 (the Retry-After the service sends) before it tries again.
RETRY_AFTER_S = 5.0
BOUNDARY = "fairness-boundary"
RAISED = {
    "CONVLENS_MAX_OPEN_STREAMS_PER_TENANT": "1000",
    "CONVLENS_MAX_UPLOADS_PER_TENANT": "1000",
    "CONVLENS_MAX_QUEUED_GRADIENTS_PER_TENANT": "1000",
}


def _tenant_keys(service: Service, database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Migrate the service's database and create tenants A and B (before it starts)."""
    from app import db
    from app.auth.service import create_key
    from app.config import Settings

    settings = Settings(data_dir=service.data_dir, database_url=database_url)
    db.upgrade(settings)
    with db.session_scope(settings) as session:
        a, b = create_key(session, "tenant-a"), create_key(session, "tenant-b")
    db.dispose_engines()
    return {"Authorization": f"Bearer {a}"}, {"Authorization": f"Bearer {b}"}


def _config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((ROOT / "app/api/examples/seed_example2.json").read_text())
    return config


class Counts:
    def __init__(self) -> None:
        self.streams_open = self.streams_refused = self.streams_max = 0
        self.uploads_open = self.uploads_refused = self.uploads_timed_out = self.uploads_max = 0


async def _stream(port: int, headers: dict[str, str], run_id: str, counts: Counts, stop: asyncio.Event) -> None:
    """One event stream held open until ``stop`` (reopened if the service closes it)."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET /v1/training-runs/{run_id}/events HTTP/1.1\r\nHost: b\r\n"
                      f"Authorization: {headers['Authorization']}\r\nAccept: text/event-stream\r\n\r\n").encode())
        await writer.drain()
        status = (await reader.readline()).split(b" ")[1:2]
        if status != [b"200"]:
            counts.streams_refused += 1
            writer.close()
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=RETRY_AFTER_S)
            continue
        counts.streams_open += 1
        counts.streams_max = max(counts.streams_max, counts.streams_open)
        try:
            reading = asyncio.ensure_future(reader.read(65536))
            while not stop.is_set():
                done, _ = await asyncio.wait({reading, asyncio.ensure_future(stop.wait())},
                                             return_when=asyncio.FIRST_COMPLETED)
                if reading in done:
                    if not reading.result():
                        break
                    reading = asyncio.ensure_future(reader.read(65536))
            reading.cancel()
        finally:
            counts.streams_open -= 1
            writer.close()


async def _slow_upload(port: int, headers: dict[str, str], counts: Counts, stop: asyncio.Event) -> None:
    """An upload that sends one byte every 5 s, opened again when the service cuts it."""
    head = (f"POST /v1/analyses/upload HTTP/1.1\r\nHost: b\r\nAuthorization: {headers['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 1000000\r\n\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.keras\"\r\n\r\n").encode()
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        await writer.drain()
        answer = asyncio.ensure_future(reader.readline())
        held = False
        try:
            while not stop.is_set():
                done, _ = await asyncio.wait({answer, asyncio.ensure_future(stop.wait())},
                                             timeout=1.0 if not held else SLOW_BYTE_EVERY_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if answer in done:
                    line = answer.result()
                    if b" 429 " in line:
                        counts.uploads_refused += 1
                        await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=RETRY_AFTER_S)
                    elif b" 408 " in line:
                        counts.uploads_timed_out += 1
                    break
                if not held and not done:  # not refused: the service is receiving it
                    held = True
                    counts.uploads_open += 1
                    counts.uploads_max = max(counts.uploads_max, counts.uploads_open)
                if not done:
                    try:
                        writer.write(b"x")
                        await writer.drain()
                    except ConnectionError:
                        break
        finally:
            answer.cancel()
            counts.uploads_open -= held
            writer.close()


async def _reader(client: httpx.AsyncClient, url: str, headers: dict[str, str], until: float,
                  latencies: list[float], statuses: dict[int, int]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        response = await client.get(url, headers=headers)
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1


async def _probe(client: httpx.AsyncClient, until: float, latencies: list[float]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        response = await client.get("/healthz")
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
        await asyncio.sleep(PROBE_INTERVAL_S)


async def _measure(base: str, a: dict[str, str], analysis_id: str, seconds: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=A_CLIENTS + 1)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client, \
            httpx.AsyncClient(base_url=base, timeout=60) as probe_client:
        until = time.monotonic() + seconds
        gets: list[float] = []
        health: list[float] = []
        statuses: dict[int, int] = {}
        await asyncio.gather(
            *(_reader(client, f"/v1/analyses/{analysis_id}", a, until, gets, statuses) for _ in range(A_CLIENTS)),
            _probe(probe_client, until, health),
        )
    return {"a_get": latency_summary(gets, seconds), "healthz": latency_summary(health, seconds),
            "a_statuses": statuses}


async def _scenario(service: Service, a: dict[str, str], b: dict[str, str], seconds: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        mine = await client.post("/v1/analyses", json={"architecture": _config(), "name": "a"}, headers=a)
        assert mine.status_code == 201, mine.text
        analysis_id = mine.json()["id"]
        baseline = await _measure(service.url, a, analysis_id, seconds / 2)

        theirs = await client.post("/v1/analyses", json={"architecture": _config(), "name": "b"}, headers=b)
        run = await client.post("/v1/training-runs", json={"analysis_id": theirs.json()["id"], "steps": 10},
                                headers=b)
        assert run.status_code == 202, run.text
        gradients = {"accepted": 0, "refused": 0}
        for index in range(GRADIENTS):
            created = await client.post("/v1/analyses", json={"architecture": _config(), "name": f"g{index}"},
                                        headers=b)
            measured = await client.post(f"/v1/analyses/{created.json()['id']}/gradients", headers=b)
            gradients["accepted" if measured.status_code == 202 else "refused"] += 1

    counts = Counts()
    stop = asyncio.Event()
    port = service.port
    holders = [asyncio.ensure_future(_stream(port, b, run.json()["id"], counts, stop)) for _ in range(STREAMS)]
    holders += [asyncio.ensure_future(_slow_upload(port, b, counts, stop)) for _ in range(UPLOADS)]
    await asyncio.sleep(2.0)  # every stream and upload is open (or refused) before measuring
    loaded = await _measure(service.url, a, analysis_id, seconds)
    held = {"streams_held": counts.streams_max, "streams_refused": counts.streams_refused,
            "uploads_held": counts.uploads_max, "uploads_refused": counts.uploads_refused,
            "uploads_timed_out": counts.uploads_timed_out, "gradients_queued": gradients["accepted"],
            "gradients_refused": gradients["refused"]}
    stop.set()
    await asyncio.gather(*holders, return_exceptions=True)
    return {"baseline": baseline, "loaded": loaded, "tenant_b": held}


def run_one(database: str, caps: str, seconds: float) -> dict[str, Any]:
    def go(database_url: str) -> dict[str, Any]:
        env = {"CONVLENS_AUTH_MODE": "api_key", **(RAISED if caps == "raised" else {})}
        service = Service(database_url=database_url, env=env)
        a, b = _tenant_keys(service, database_url or f"sqlite:///{service.data_dir / 'convlens.db'}")
        with service:
            result = asyncio.run(_scenario(service, a, b, seconds))
        return {"database": database, "caps": caps, **result}

    if database == "postgresql":
        with PostgresDatabase() as url:
            return go(url)
    return go("")


def _line(entry: dict[str, Any]) -> str:
    loaded, base, b = entry["loaded"], entry["baseline"], entry["tenant_b"]
    met = loaded["a_get"]["p99_ms"] < 1000 and loaded["healthz"]["p99_ms"] < 200
    return (
        f"{entry['database']:<10} {entry['caps']:<8} caps: B holds {b['streams_held']} streams "
        f"({b['streams_refused']} refused), {b['uploads_held']} slow uploads ({b['uploads_refused']} refused, "
        f"{b['uploads_timed_out']} cut 408), {b['gradients_queued']} queued gradients ({b['gradients_refused']} "
        f"refused) | A GET p50 {loaded['a_get']['p50_ms']:.0f} ms p99 {loaded['a_get']['p99_ms']:.0f} ms "
        f"({loaded['a_get']['throughput_rps']:.0f} req/s; idle B: p50 {base['a_get']['p50_ms']:.0f} p99 "
        f"{base['a_get']['p99_ms']:.0f}) | /healthz p50 {loaded['healthz']['p50_ms']:.0f} ms p99 "
        f"{loaded['healthz']['p99_ms']:.0f} ms (idle B: p99 {base['healthz']['p99_ms']:.0f}) | goal "
        f"A p99 < 1 s, healthz p99 < 200 ms: {'met' if met else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 s windows instead of 20 s")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--caps", default="raised,default")
    args = parser.parse_args()
    seconds = 8.0 if args.quick else 20.0
    results = []
    for database in args.databases.split(","):
        for caps in args.caps.split(","):
            entry = run_one(database, caps, seconds)
            results.append(entry)
            print(_line(entry), flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Path(ARTIFACTS / "fairness.json").write_text(json.dumps(
        {"machine": machine(), "seconds": seconds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
