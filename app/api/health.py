"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db import get_engine, migration_state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to the newest revision")
def readyz(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    checks: dict[str, object] = {}
    ready = True
    try:
        with get_engine(settings).connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = migration_state(settings)
        checks["migrations"] = {"current": current, "head": head}
        ready = current == head
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = False
    executor = getattr(request.app.state, "executor", None)
    if executor is not None and hasattr(executor, "health"):
        checks["executor"] = executor.health()
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)
