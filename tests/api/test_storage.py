"""Storage: files go with what owns them, a per-tenant quota, stored bytes in /metrics, and
/metrics behind its own token in api_key mode. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.service import create_key
from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.models import Tenant
from app.storage.usage import tenant_bytes
from tests.api.helpers import assert_problem, seed_bytes
from tests.jobs.helpers import tiny_config


def _npz(samples: int = 8) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((samples, 8, 8, 3), "float32"), y=np.zeros(samples, "int64"))
    return buffer.getvalue()


def _files(settings: Settings, folder: str) -> list[str]:
    return sorted(path.name for path in (settings.data_dir / folder).glob("*"))


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_deleting_an_architecture_deletes_its_runs_datasets_and_its_file(any_settings: Settings) -> None:
    with _client(any_settings) as client:
        upload = client.post("/v1/analyses/upload", files={"file": ("m.keras", seed_bytes(1, "keras"))}).json()
        architecture_id = upload["architecture"]["id"]
        tiny = client.post("/v1/analyses", json={"architecture": tiny_config()}).json()
        for analysis in (upload, tiny):
            run = client.post("/v1/training-runs", data={"analysis_id": analysis["id"], "steps": "2"},
                              files={"dataset_file": ("d.npz", _npz())})
            assert run.status_code == 202, run.text
        assert len(_files(any_settings, "datasets")) == 2 and len(_files(any_settings, "blobs")) == 1
        assert client.delete(f"/v1/architectures/{architecture_id}").status_code == 204
        # at once, not at the next sweep: the run of the deleted architecture lost its dataset
        assert len(_files(any_settings, "datasets")) == 1 and _files(any_settings, "blobs") == []
        assert client.get(f"/v1/analyses/{upload['id']}").status_code == 404


def test_a_file_shared_by_content_stays_while_another_tenant_keeps_it(any_settings: Settings) -> None:
    settings = any_settings.model_copy(update={"auth_mode": "api_key"})
    with _client(settings) as client:
        with session_scope(settings) as session:
            a = {"Authorization": f"Bearer {create_key(session, 'a')}"}
            b = {"Authorization": f"Bearer {create_key(session, 'b')}"}
        files = {"file": ("m.keras", seed_bytes(1, "keras"))}
        first = client.post("/v1/analyses/upload", files=files, headers=a).json()
        client.post("/v1/analyses/upload", files=files, headers=b)
        assert client.delete(f"/v1/architectures/{first['architecture']['id']}", headers=a).status_code == 204
        assert len(_files(settings, "blobs")) == 1


def test_a_tenant_storage_quota(any_settings: Settings) -> None:
    first, second = seed_bytes(1, "keras"), seed_bytes(2, "keras")
    settings = any_settings.model_copy(update={"storage_quota_bytes": len(first) + len(second) // 2})
    with _client(settings) as client:
        stored = client.post("/v1/analyses/upload", files={"file": ("a.keras", first)})
        assert stored.status_code == 201
        refused = client.post("/v1/analyses/upload", files={"file": ("b.keras", second)})
        problem = assert_problem(refused, 413, "storage_quota_exceeded")
        assert problem["used_bytes"] == len(first) and problem["quota_bytes"] == settings.storage_quota_bytes
        assert "DELETE /v1/architectures" in problem["detail"]
        assert len(_files(settings, "blobs")) == 1 and _files(settings, "uploads") == []  # nothing kept
        # the same content again costs nothing; a dataset that does not fit is refused too
        assert client.post("/v1/analyses/upload", files={"file": ("a.keras", first)}).status_code == 201
        run = client.post("/v1/training-runs", data={"analysis_id": stored.json()["id"], "steps": "2"},
                          files={"dataset_file": ("d.npz", _npz(4096))})
        assert_problem(run, 413, "storage_quota_exceeded")
        assert _files(settings, "datasets") == []
        assert client.delete(f"/v1/architectures/{stored.json()['architecture']['id']}").status_code == 204
        assert client.post("/v1/analyses/upload", files={"file": ("b.keras", second)}).status_code == 201


def test_metrics_show_stored_bytes_and_need_their_own_token_in_api_key_mode(any_settings: Settings) -> None:
    keyed = any_settings.model_copy(update={"auth_mode": "api_key"})
    with _client(keyed) as client:
        assert_problem(client.get("/metrics"), 403, "metrics_disabled")  # no token set: refused
    settings = keyed.model_copy(update={"metrics_token": "scrape-secret"})
    with _client(settings) as client:
        with session_scope(settings) as session:
            tenant = {"Authorization": f"Bearer {create_key(session, 'a')}"}
        uploaded = client.post("/v1/analyses/upload", files={"file": ("m.keras", seed_bytes(1, "keras"))},
                               headers=tenant)
        assert uploaded.status_code == 201
        assert_problem(client.get("/metrics"), 401, "unauthorized")
        assert_problem(client.get("/metrics", headers=tenant), 401, "unauthorized")  # a tenant's key
        scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert scraped.status_code == 200
        figures = dict(re.findall(r'^convlens_stored_bytes\{kind="(\w+)"\} (\S+)$', scraped.text, re.M))
        with session_scope(settings) as session:
            expected = sum(tenant_bytes(session, settings, tenant.id) for tenant in session.scalars(select(Tenant)))
        assert float(figures["architectures"]) == expected == len(seed_bytes(1, "keras"))
        assert float(figures["blob_files"]) == len(seed_bytes(1, "keras"))
        assert float(figures["upload_files"]) == 0
