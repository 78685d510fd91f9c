"""Helpers for API tests: seed fixtures and problem+json assertions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.db import session_scope

SEED_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "seed"
SEED_TOTALS = {1: 19_392, 2: 19_328, 3: 57_034}
FORMATS = ("json", "keras", "h5")


def seed_bytes(example: int, fmt: str) -> bytes:
    return (SEED_DIR / f"example{example}.{fmt}").read_bytes()


def seed_config(example: int) -> dict[str, Any]:
    return json.loads(seed_bytes(example, "json"))


def seed_expected(example: int) -> dict[str, Any]:
    return json.loads((SEED_DIR / f"example{example}.expected.json").read_text())


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["detail"], str) and "Traceback" not in body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


def row_counts(settings: Any) -> dict[str, int]:
    from app.models import Architecture, Job, JobEvent

    with session_scope(settings) as session:
        return {
            "architectures": session.scalar(select(func.count()).select_from(Architecture)) or 0,
            "jobs": session.scalar(select(func.count()).select_from(Job)) or 0,
            "job_events": session.scalar(select(func.count()).select_from(JobEvent)) or 0,
        }


def upload(client: Any, data: bytes, filename: str, **fields: str) -> Any:
    return client.post("/v1/analyses", files={"file": (filename, data, "application/octet-stream")},
                       data=fields)
