"""Load test: 60 s at 32 concurrent clients mixing analyses and reads, on SQLite and PostgreSQL.

Each client loops over a weighted mix (seeded, so runs are comparable):

- 35 % ``POST /v1/analyses`` with one of the seed's models as JSON,
- 5 %  ``POST /v1/analyses`` uploading the seed's ``.keras`` file (multipart),
- 35 % ``GET /v1/analyses/{id}`` of an analysis created earlier in the run,
- 15 % ``GET /v1/analyses?limit=20``,
- 10 % ``GET /v1/architectures/{id}``.

Pass criteria: zero 5xx and no transport errors, and every analysis answered 201 is readable
afterwards (``GET`` answers 200 with status ``succeeded`` and a report). Prints throughput,
p50 and p99 per database; exits 1 when a criterion fails.

Run::

    python -m bench.loadtest                          # 60 s on SQLite, then 60 s on PostgreSQL
    python -m bench.loadtest --duration 10 --databases sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from typing import Any

import httpx

from bench import ARTIFACTS, ROOT, SEED_EXAMPLES, PostgresDatabase, Service, latency_summary

MIX = (
    ("post_json", 35),
    ("post_upload", 5),
    ("get_analysis", 35),
    ("list", 15),
    ("get_architecture", 10),
)
KERAS_UPLOADS = sorted((ROOT / "tests" / "fixtures" / "seed").glob("example*.keras"))


async def run_mix(url: str, *, clients: int, duration: float, seed: int = 7) -> dict[str, Any]:
    bodies = [
        json.dumps({"architecture": json.loads(p.read_text())}).encode() for p in SEED_EXAMPLES
    ]
    uploads = [(p.name, p.read_bytes()) for p in KERAS_UPLOADS]
    actions = [name for name, weight in MIX for _ in range(weight)]
    created: list[str] = []
    architectures: list[str] = []
    latencies: list[float] = []
    by_action: dict[str, list[float]] = defaultdict(list)
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    transport_errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as client:
        started = time.perf_counter()
        stop_at = started + duration

        async def one(action: str, rng: random.Random) -> httpx.Response:
            if action == "post_upload" and uploads:
                name, data = rng.choice(uploads)
                return await client.post(
                    "/v1/analyses", files={"file": (name, data, "application/octet-stream")}
                )
            if action == "get_analysis" and created:
                return await client.get(f"/v1/analyses/{rng.choice(created)}")
            if action == "list":
                return await client.get("/v1/analyses", params={"limit": 20})
            if action == "get_architecture" and architectures:
                return await client.get(f"/v1/architectures/{rng.choice(architectures)}")
            return await client.post(
                "/v1/analyses",
                content=rng.choice(bodies),
                headers={"content-type": "application/json"},
            )

        async def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.perf_counter() < stop_at:
                action = rng.choice(actions)
                sent = time.perf_counter()
                try:
                    response = await one(action, rng)
                except httpx.HTTPError as exc:
                    transport_errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - sent
                latencies.append(elapsed)
                by_action[action].append(elapsed)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    server_errors.append(f"{action}: {response.status_code} {response.text[:200]}")
                elif response.status_code == 201:
                    body = response.json()
                    created.append(body["id"])
                    architectures.append(body["architecture"]["id"])

        await asyncio.gather(*(worker(i) for i in range(clients)))
        seconds = time.perf_counter() - started

        # Every analysis answered 201 must be readable, finished, with its report.
        unreadable: list[str] = []
        semaphore = asyncio.Semaphore(clients)

        async def verify(analysis_id: str) -> None:
            async with semaphore:
                try:
                    response = await client.get(f"/v1/analyses/{analysis_id}")
                except httpx.HTTPError as exc:
                    transport_errors[f"verify: {type(exc).__name__}"] += 1
                    unreadable.append(f"{analysis_id}: {type(exc).__name__}")
                    return
                body = response.json() if response.status_code == 200 else {}
                if (
                    response.status_code != 200
                    or body.get("status") != "succeeded"
                    or not body.get("report")
                ):
                    unreadable.append(f"{analysis_id}: {response.status_code} {body.get('status')}")

        await asyncio.gather(*(verify(i) for i in set(created)))

    summary = latency_summary(latencies, seconds)
    return {
        **summary,
        "seconds": round(seconds, 1),
        "clients": clients,
        "statuses": dict(statuses),
        "server_errors": len(server_errors),
        "server_error_samples": server_errors[:5],
        "transport_errors": dict(transport_errors),
        "analyses_created": len(created),
        "unreadable": len(unreadable),
        "unreadable_samples": unreadable[:5],
        "by_action": {
            name: latency_summary(values, seconds) for name, values in sorted(by_action.items())
        },
        "passed": not server_errors and not transport_errors and not unreadable and bool(created),
    }


def run(database: str, *, clients: int = 32, duration: float = 60.0) -> dict[str, Any]:
    with ExitStack() as stack:
        url = stack.enter_context(PostgresDatabase()) if database == "postgres" else ""
        log_path = ARTIFACTS / f"loadtest-{database}-server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        service = stack.enter_context(Service(database_url=url, log_path=log_path))
        result = asyncio.run(run_mix(service.url, clients=clients, duration=duration))
    result["database"] = database
    print(
        f"load test on {database}: {result['seconds']} s, {clients} clients, "
        f"{result['requests']} requests, "
        f"{result['throughput_rps']:.1f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms"
    )
    print(
        f"  statuses {result['statuses']}, 5xx {result['server_errors']}, transport errors "
        f"{result['transport_errors']}, analyses created {result['analyses_created']}, "
        f"unreadable afterwards {result['unreadable']} -> {'PASS' if result['passed'] else 'FAIL'}"
    )
    for name, figures in result["by_action"].items():
        print(
            f"  {name:<17} {figures['requests']:>6} requests, p50 {figures['p50_ms']:7.1f} ms, "
            f"p99 {figures['p99_ms']:7.1f} ms"
        )
    for sample in result["server_error_samples"] + result["unreadable_samples"]:
        print(f"  ! {sample}")
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    args = parser.parse_args(argv)
    results = [
        run(name.strip(), clients=args.clients, duration=args.duration)
        for name in args.databases.split(",")
        if name.strip()
    ]
    return results


if __name__ == "__main__":
    outcomes = main()
    sys.exit(0 if all(r["passed"] for r in outcomes) else 1)
