"""Request rate limits fit who uses the service: tenant quotas when API keys are on, none for
the one local user of the embedded default (no keys)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.auth.service import create_key
from app.db import session_scope
from app.main import create_app
from tests.api.helpers import assert_problem
from tests.conftest import make_settings


def test_without_keys_the_local_user_is_not_rate_limited(tmp_path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_minute=3)
    assert settings.auth_mode == "none"
    with TestClient(create_app(settings)) as client:
        statuses = [client.get("/v1/analyses").status_code for _ in range(12)]
    assert statuses == [200] * 12


def test_with_keys_each_tenant_has_its_quota(tmp_path) -> None:
    settings = make_settings(tmp_path, auth_mode="api_key", rate_limit_per_minute=3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        with session_scope(settings) as session:
            key_a = create_key(session, "tenant-a")
            key_b = create_key(session, "tenant-b")
        a = {"Authorization": f"Bearer {key_a}"}
        b = {"Authorization": f"Bearer {key_b}"}
        assert [client.get("/v1/analyses", headers=a).status_code for _ in range(3)] == [200] * 3
        body = assert_problem(client.get("/v1/analyses", headers=a), 429, "rate_limited")
        assert "3 per minute" in body["detail"] and body["retry_after"] >= 1
        # another tenant's quota is its own
        assert client.get("/v1/analyses", headers=b).status_code == 200
