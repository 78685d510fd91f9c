"""Liveness and readiness.

``/readyz`` checks each dependency the service needs, in parallel and each within its own
timeout, so it answers within a few seconds even when a dependency hangs (a frozen broker
accepts connections and never answers): the database (reachable, migrated to head), the
broker (Celery executor: a round trip), and job workers (local: its worker processes;
Celery: a live worker for every queue, from the workers' heartbeat rows). Ready: 200 with
every check; not ready: 503 ``application/problem+json`` (code ``not_ready``) with the same
checks and which failed.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.config import Settings
from app.db import get_engine, migration_state

router = APIRouter(tags=["health"])

#: Checks run here, so that a hung dependency holds a check's thread, never the request's.
_checks = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    # on the event loop: no thread to wait for, so it answers while request threads are busy
    return {"status": "ok"}


def _database(settings: Settings) -> dict[str, Any]:
    with get_engine(settings).connect() as connection:
        connection.execute(text("SELECT 1"))
    current, head = migration_state(settings)
    return {"database": "ok", "migrations": {"current": current, "head": head}, "ok": current == head}


def _broker(settings: Settings) -> dict[str, Any]:
    from app.jobs.celery_app import broker_check

    status = broker_check(settings)
    return {"broker": status, "ok": status == "ok"}


def _celery_workers(settings: Settings) -> dict[str, Any]:
    from app.db import session_scope
    from app.jobs import repository
    from app.jobs.kinds import queues

    with session_scope(settings) as session:
        live = repository.live_workers(
            session, fresh_after=repository.utc_cutoff(settings.heartbeat_timeout_s)
        )
        by_queue = {queue: sum(1 for w in live if queue in (w.queues or [])) for queue in queues()}
    return {"workers": {"alive": len(live), "queues": by_queue}, "ok": all(by_queue.values())}


def _local_workers(health: dict[str, Any]) -> dict[str, Any]:
    return {"workers": {"alive": health["alive"], "expected": health["workers"]}, "ok": health["alive"] > 0}


def _run_checks(settings: Settings, executor: Any) -> tuple[bool, dict[str, Any]]:
    futures: dict[str, concurrent.futures.Future[dict[str, Any]]] = {
        "database": _checks.submit(_database, settings)
    }
    timeouts = {"database": settings.database_connect_timeout_s + settings.database_timeout_s / 2}
    if settings.executor == "celery":
        futures["broker"] = _checks.submit(_broker, settings)
        timeouts["broker"] = settings.broker_timeout_s * 2
        futures["workers"] = _checks.submit(_celery_workers, settings)
        timeouts["workers"] = timeouts["database"]
    health = executor.health() if executor is not None and settings.executor != "celery" else None
    if health is not None and health.get("workers", 0) > 0:
        futures["workers"] = _checks.submit(_local_workers, health)
        timeouts["workers"] = 2.0
    started = time.monotonic()
    checks: dict[str, Any] = {}
    failed: list[str] = []
    for name, future in futures.items():
        left = max(0.0, timeouts[name] - (time.monotonic() - started))
        try:
            outcome = future.result(timeout=left)
        except concurrent.futures.TimeoutError:
            checks[name] = f"timeout after {timeouts[name]:.1f} s"
            failed.append(name)
            continue
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks[name] = f"unreachable: {type(exc).__name__}"
            failed.append(name)
            continue
        if not outcome.pop("ok"):
            failed.append(name)
        checks.update(outcome)
    if health is not None:
        checks["executor"] = health
    elif executor is not None and "broker" in checks:
        checks["executor"] = {"executor": "celery", "broker": checks["broker"]}
    if failed:
        checks["failed"] = failed
    return not failed, checks


@router.get(
    "/readyz",
    summary="Ready: the database is reachable and migrated, the broker answers, workers are alive",
    responses={503: {"description": "A dependency is down", "content": {"application/problem+json": {}}}},
)
def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    ready, checks = _run_checks(settings, getattr(request.app.state, "executor", None))
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {
            "type": "https://convlens.dev/problems/not_ready",
            "title": "The service is not ready",
            "status": 503,
            "detail": "Not ready: " + ", ".join(f"{name} ({checks.get(name)})" for name in checks["failed"]),
            "code": "not_ready",
            "checks": checks,
        },
        status_code=503,
        media_type="application/problem+json",
        headers={"Retry-After": "5"},
    )
