"""Storage failures answer 503 ``storage_unavailable`` naming the folder, the cause and the
remedy, with nothing half-written: no blob, upload, dataset or row stays behind. The faults
are injected into the storage layer (:data:`app.storage.files.disk`): tests run as root,
which ignores file modes. On SQLite and PostgreSQL."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.db import session_scope
from app.models import Architecture, Job
from app.storage import files
from tests.api.helpers import assert_problem, seed_bytes
from tests.jobs.helpers import tiny_config


def _fail(code: int) -> Any:
    def failing(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(code, "injected")

    return failing


def _leftovers(settings: Settings) -> dict[str, Any]:
    with session_scope(settings) as session:
        rows = (session.scalar(select(func.count()).select_from(Job)),
                session.scalar(select(func.count()).select_from(Architecture)))
    stored = {folder: sorted(p.name for p in (settings.data_dir / folder).glob("*"))
              for folder in ("uploads", "blobs", "datasets")}
    return {"rows": rows, **stored}


NOTHING = {"rows": (0, 0), "uploads": [], "blobs": [], "datasets": []}


@pytest.mark.parametrize(("operation", "code", "cause"), [
    ("new_file", errno.EROFS, "read-only"),
    ("write", errno.ENOSPC, "no space left"),
    ("place", errno.EACCES, "permission denied"),
])
def test_an_upload_the_disk_refuses_is_storage_unavailable(
    any_client: Any, any_settings: Settings, monkeypatch: pytest.MonkeyPatch,
    operation: str, code: int, cause: str,
) -> None:
    monkeypatch.setattr(files.disk, operation, _fail(code))
    response = any_client.post("/v1/analyses/upload", files={"file": ("m.keras", seed_bytes(1, "keras"))})
    problem = assert_problem(response, 503, "storage_unavailable")
    assert problem["cause"] == errno.errorcode[code]
    assert cause in problem["detail"] and str(any_settings.data_dir) in problem["detail"]
    assert response.headers["retry-after"] == "30"
    assert _leftovers(any_settings) == NOTHING
    monkeypatch.undo()
    assert any_client.post("/v1/analyses/upload",
                           files={"file": ("m.keras", seed_bytes(1, "keras"))}).status_code == 201


def test_a_dataset_the_disk_refuses_is_storage_unavailable(any_client: Any, any_settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    analysis = any_client.post("/v1/analyses", json={"architecture": tiny_config()}).json()
    before = _leftovers(any_settings)
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((8, 8, 8, 3), "float32"), y=np.zeros(8, "int64"))
    monkeypatch.setattr(files.disk, "place", _fail(errno.EACCES))
    response = any_client.post("/v1/training-runs", data={"analysis_id": analysis["id"], "steps": "2"},
                               files={"dataset_file": ("d.npz", buffer.getvalue())})
    assert_problem(response, 503, "storage_unavailable")
    assert _leftovers(any_settings) == before  # no run, no dataset, no upload


def test_a_request_refused_after_its_blob_was_placed_leaves_no_blob(any_client: Any, any_settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from app.errors import ResourceLimitExceeded
    from app.jobs import resources

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise ResourceLimitExceeded("refused after the blob was placed")

    monkeypatch.setattr(resources, "check_job_resources", refuse)
    response = any_client.post("/v1/analyses/upload", data={"measure_gradients": "true"},
                               files={"file": ("m.keras", seed_bytes(1, "keras"))})
    assert_problem(response, 422, "resource_limit_exceeded")
    assert _leftovers(any_settings) == NOTHING


def test_the_storage_layer_passes_other_errors_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), files.storage_errors("x", tmp_path):
        raise FileNotFoundError(errno.ENOENT, "not a storage failure")
