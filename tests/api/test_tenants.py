"""Tenants: no key gets 401; another tenant's ids get 404 on every route, including routes that
other domains add later (the test walks the application's route table)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.auth.service import create_key, revoke_key
from app.db import session_scope
from app.main import create_app
from app.models import Job
from tests.api.helpers import assert_problem, seed_bytes, seed_config
from tests.conftest import make_settings

PARAM = re.compile(r"{([^}:]+)(:[^}]*)?}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def keyed(request, tmp_path):
    url = ""
    if request.param == "postgres":
        from tests.conftest import _clean_postgres

        url = request.getfixturevalue("postgres_url")
        _clean_postgres(url)
    settings = make_settings(tmp_path, url, auth_mode="api_key")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        with session_scope(settings) as session:
            key_a = create_key(session, "tenant-a")
            key_b = create_key(session, "tenant-b")
        yield settings, client, {"Authorization": f"Bearer {key_a}"}, {"Authorization": f"Bearer {key_b}"}


def _v1_routes(app):
    """Every (method, path) of the public API, from the OpenAPI schema (routers of every domain)."""
    routes = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(routes) >= 7, routes
    return routes


def test_no_or_bad_key_gets_401(keyed) -> None:
    _settings, client, _a, _b = keyed
    for method, path in _v1_routes(client.app):
        url = PARAM.sub("00000000-0000-0000-0000-000000000000", path)
        for headers in ({}, {"Authorization": "Bearer cl_wrong"}, {"Authorization": "Basic abc"}):
            response = client.request(method, url, headers=headers)
            body = assert_problem(response, 401, "unauthorized")
            assert response.headers.get("www-authenticate") == "Bearer", body


def test_other_tenants_ids_are_404_everywhere(keyed) -> None:
    settings, client, a, b = keyed
    created = client.post("/v1/analyses", json={"architecture": seed_config(3), "name": "a-secret"}, headers=a)
    assert created.status_code == 201
    analysis = created.json()
    uploaded = client.post("/v1/analyses", headers=a,
                           files={"file": ("m.keras", seed_bytes(1, "keras"), "application/octet-stream")})
    assert uploaded.status_code == 201
    with session_scope(settings) as session:
        run = Job(tenant_id=analysis_tenant(settings, analysis["id"]), kind="training", status="queued",
                  architecture_id=analysis["architecture"]["id"], parent_id=analysis["id"],
                  parameters={"steps": 1})
        session.add(run)
        session.flush()
        run_id = run.id
    ids = [analysis["id"], analysis["architecture"]["id"], uploaded.json()["id"], run_id]

    checked = 0
    for method, path in _v1_routes(client.app):
        if "{" not in path:
            continue
        for target in ids:
            url = PARAM.sub(target, path)
            response = client.request(method, url, headers=b, json={})
            assert response.status_code == 404, (method, url, response.status_code, response.text[:200])
            assert_problem(response, 404)
            checked += 1
    assert checked >= 4 * 4
    # Lists show nothing of tenant A to tenant B, and A still sees its own.
    assert client.get("/v1/analyses", headers=b).json()["total"] == 0
    assert client.get("/v1/architectures", headers=b).json()["total"] == 0
    assert client.get("/v1/analyses", headers=a).json()["total"] == 2
    assert client.get(f"/v1/analyses/{analysis['id']}", headers=a).status_code == 200
    # The same content uploaded by B is B's own architecture.
    mine = client.post("/v1/analyses", json={"architecture": seed_config(3)}, headers=b).json()
    assert mine["architecture"]["id"] != analysis["architecture"]["id"]


def analysis_tenant(settings, analysis_id: str) -> str:
    with session_scope(settings) as session:
        return session.get(Job, analysis_id).tenant_id


def test_rate_limit_per_tenant(tmp_path) -> None:
    settings = make_settings(tmp_path, auth_mode="api_key", rate_limit_per_minute=5)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        with session_scope(settings) as session:
            a = {"Authorization": f"Bearer {create_key(session, 'a')}"}
            b = {"Authorization": f"Bearer {create_key(session, 'b')}"}
        statuses = [client.get("/v1/analyses", headers=a).status_code for _ in range(7)]
        assert statuses[:5] == [200] * 5
        limited = client.get("/v1/analyses", headers=a)
        assert_problem(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/v1/analyses", headers=b).status_code == 200


def test_keys_cli_creates_a_working_key(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from app.cli import cli
    from app.config import get_settings

    monkeypatch.setenv("CONVLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONVLENS_AUTH_MODE", "api_key")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["keys", "create", "--tenant", "acme"])
        assert result.exit_code == 0, result.output
        key = result.output.strip().splitlines()[-1]
        assert key.startswith("cl_") and len(key) > 30
        settings = get_settings()
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            assert client.get("/v1/analyses", headers={"Authorization": f"Bearer {key}"}).status_code == 200
            assert client.get("/v1/analyses").status_code == 401
        from sqlalchemy import select

        from app.models import ApiKey

        with session_scope(settings) as session:
            stored = session.scalars(select(ApiKey)).all()
            assert len(stored) == 1 and key not in (stored[0].key_hash, stored[0].prefix)
    finally:
        get_settings.cache_clear()


def test_a_revoked_key_is_refused_and_the_other_keys_stay(keyed) -> None:
    settings, client, headers_a, headers_b = keyed
    assert client.get("/v1/analyses", headers=headers_a).status_code == 200
    prefix = headers_a["Authorization"].removeprefix("Bearer ")[:10]
    with session_scope(settings) as session:
        assert revoke_key(session, prefix) == 1
    with session_scope(settings) as session:
        assert revoke_key(session, prefix) == 0  # already revoked
    assert_problem(client.get("/v1/analyses", headers=headers_a), 401, "unauthorized")
    assert client.get("/v1/analyses", headers=headers_b).status_code == 200
