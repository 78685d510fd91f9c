"""Storage: files go with what owns them, a per-tenant quota, stored bytes in /metrics, and
/metrics behind its own token in api_key mode. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.auth.service import create_key
from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.models import StorageDelta, Tenant
from app.storage.repository import fold_deltas
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


def test_the_datasets_of_runs_that_have_not_ended_count_for_the_tenant(any_settings: Settings) -> None:
    """A queued run's dataset counts with the architectures (one statement when there are no
    such runs, a second for their ids when there are)."""
    with _client(any_settings) as client:
        analysis = client.post("/v1/analyses", json={"architecture": tiny_config()}).json()
        with session_scope(any_settings) as session:
            architectures = tenant_bytes(session, any_settings, "default")
        assert architectures == analysis["architecture"]["byte_size"]
        dataset = _npz(16)
        run = client.post("/v1/training-runs", data={"analysis_id": analysis["id"], "steps": "2"},
                          files={"dataset_file": ("d.npz", dataset)})
        assert run.status_code == 202, run.text
        stored = (any_settings.data_dir / "datasets").glob("*.npz")
        with session_scope(any_settings) as session:
            assert tenant_bytes(session, any_settings, "default") == architectures + sum(
                path.stat().st_size for path in stored)
            assert tenant_bytes(session, any_settings, "another") == 0


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


def test_an_open_runs_dataset_counts_when_a_new_architecture_is_checked(any_settings: Settings) -> None:
    """A new architecture is checked and counted in one statement only while no run of its
    tenant is open; with one, its dataset counts too (the full check) and the refusal says so."""
    first, second = seed_bytes(1, "keras"), seed_bytes(2, "keras")
    dataset = _npz(64)
    settings = any_settings.model_copy(update={"storage_quota_bytes": len(first) + len(second) + len(dataset) // 2})
    with _client(settings) as client:
        stored = client.post("/v1/analyses/upload", files={"file": ("a.keras", first)})
        assert stored.status_code == 201
        run = client.post("/v1/training-runs", data={"analysis_id": stored.json()["id"], "steps": "2"},
                          files={"dataset_file": ("d.npz", dataset)})
        assert run.status_code == 202, run.text
        kept = sum(path.stat().st_size for path in (settings.data_dir / "datasets").glob("*.npz"))
        refused = client.post("/v1/analyses/upload", files={"file": ("b.keras", second)})
        problem = assert_problem(refused, 413, "storage_quota_exceeded")
        assert problem["used_bytes"] == len(first) + kept and problem["adding_bytes"] == len(second)
        assert client.post(f"/v1/training-runs/{run.json()['id']}/cancel").status_code in (200, 202)
        with session_scope(settings) as session:  # the run has ended: its dataset no longer counts
            assert tenant_bytes(session, settings, "default") == len(first)


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


def _counters_and_sums(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    """What the quota counts per tenant (no runs here: architectures only), and the sums of
    the architectures' own sizes."""
    from app.models import Architecture

    with session_scope(settings) as session:
        counters = {row.id: tenant_bytes(session, settings, row.id) for row in session.scalars(select(Tenant))}
        sums = dict(session.execute(select(Architecture.tenant_id, func.sum(Architecture.byte_size))
                                    .group_by(Architecture.tenant_id)).all())
    return counters, {tenant: int(sums.get(tenant, 0)) for tenant in counters}


def test_the_tenant_counter_is_the_sum_of_its_architectures(any_settings: Settings) -> None:
    """The quota reads a counter; the architectures' own sizes are the independent truth."""
    with _client(any_settings) as client:
        kept = []
        for example, fmt in ((1, "keras"), (2, "keras"), (1, "keras"), (3, "h5")):  # one duplicate
            kept.append(client.post("/v1/analyses/upload",
                                    files={"file": (f"m.{fmt}", seed_bytes(example, fmt))}).json())
        client.post("/v1/analyses", json={"architecture": tiny_config()})
        client.delete(f"/v1/architectures/{kept[1]['architecture']['id']}")
        counters, sums = _counters_and_sums(any_settings)
        assert counters == sums and counters["default"] > 0
        # the reconciler folds the deltas into the tenant's row: the same count, no deltas left
        with session_scope(any_settings) as session:
            fold_deltas(session)  # (the reconciler may have folded some already)
        with session_scope(any_settings) as session:
            assert session.scalar(select(func.count()).select_from(StorageDelta)) == 0
            assert session.get(Tenant, "default").stored_bytes == sums["default"]
        assert _counters_and_sums(any_settings) == (counters, sums)


def test_the_migration_counts_what_was_stored_before_it(any_settings: Settings) -> None:
    from app import db
    from tests.jobs.helpers import add_architecture

    db.upgrade(any_settings)
    db.downgrade(any_settings, "20261130_0003")  # the schema before the counter
    add_architecture(any_settings, tiny_config())
    db.upgrade(any_settings)
    counters, sums = _counters_and_sums(any_settings)
    assert counters == sums and counters["default"] > 0


def test_two_folds_at_once_count_each_delta_once(any_settings: Settings) -> None:
    """The second fold reads the same deltas before the first commits, then deletes nothing
    (they are gone when its delete runs) and so adds nothing."""
    import threading

    from app import db
    from app.storage.usage import architecture_bytes_changed

    db.upgrade(any_settings)
    with session_scope(any_settings) as session:
        for delta in (100, 20, 3):
            architecture_bytes_changed(session, "default", delta)
    selected = threading.Event()
    folded: list[int] = []

    def second_fold() -> None:
        with session_scope(any_settings) as session:
            read = session.scalars

            def scalars(*args: Any, **kwargs: Any) -> Any:
                rows = list(read(*args, **kwargs))
                selected.set()  # it has read the ids; its delete waits for the first fold
                return rows

            session.scalars = scalars  # type: ignore[method-assign]
            folded.append(fold_deltas(session))

    with session_scope(any_settings) as session:
        assert fold_deltas(session) == 3
        thread = threading.Thread(target=second_fold)
        thread.start()
        assert selected.wait(30)
    thread.join(60)
    assert folded == [0]
    with session_scope(any_settings) as session:
        assert session.get(Tenant, "default").stored_bytes == 123
        assert tenant_bytes(session, any_settings, "default") == 123
