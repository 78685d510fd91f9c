"""A training run in one request, like an analysis: the Keras model JSON inline, or an uploaded
model file (with or without an uploaded dataset). The model is analysed and stored as an
analysis the run names; a refused model or body leaves no rows and no files behind.

No job worker runs here (the runs stay queued); tests/reports/test_generated_client.py follows
a run created this way to its verdict with a TensorFlow worker.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.api.helpers import SEED_TOTALS, assert_problem, row_counts, seed_bytes, seed_config
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, max_concurrent_training_per_tenant=10)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _npz(samples: int = 8) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, x=rng.random((samples, 28, 28, 1), dtype=np.float32),
             y=rng.integers(0, 10, samples))
    return buffer.getvalue()


def _files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.data_dir.rglob("*") if p.is_file() and p.suffix not in (
        ".db", ".db-wal", ".db-shm") and not p.name.startswith("convlens.db"))


def _analysis_of(client: TestClient, run: dict[str, Any]) -> dict[str, Any]:
    assert run["analysis_id"], run
    analysis = client.get(f"/v1/analyses/{run['analysis_id']}").json()
    assert analysis["status"] == "succeeded"
    assert analysis["architecture"]["id"] == run["architecture_id"]
    return analysis


@pytest.mark.parametrize("as_string", [False, True], ids=["object", "to_json_string"])
def test_an_inline_architecture_is_analysed_stored_and_trained(client, as_string) -> None:
    config = seed_config(3)
    architecture = json.dumps(config) if as_string else config
    response = client.post("/v1/training-runs", json={
        "architecture": architecture, "name": "example3 inline", "steps": 7, "batch_size": 4,
        "input_shape": "64,64,3"})
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["Location"] == f"/v1/training-runs/{run['id']}"
    assert run["status"] == "queued" and run["progress"]["steps"] == 7
    assert run["parameters"]["input_shape"] == [64, 64, 3]
    assert "architecture" not in run["parameters"] and "name" not in run["parameters"]
    analysis = _analysis_of(client, run)
    assert analysis["name"] == "example3 inline"
    assert analysis["input_shape"] == [64, 64, 3]
    assert analysis["report"]["summary"]["total_params"] == SEED_TOTALS[3]
    assert analysis["report"]["summary"]["input_shapes"] == [[None, 64, 64, 3]]
    # the same content sent again is the same architecture, a new analysis and a new run
    again = client.post("/v1/training-runs", json={"architecture": architecture, "steps": 7}).json()
    assert again["architecture_id"] == run["architecture_id"]
    assert again["analysis_id"] != run["analysis_id"] and again["id"] != run["id"]
    # the analysis's report page lists the run
    page = client.get(f"/v1/analyses/{run['analysis_id']}/report.html")
    assert page.status_code == 200 and run["id"] in page.text


@pytest.mark.parametrize("route", ["/v1/training-runs", "/v1/training-runs/upload"])
def test_an_uploaded_model_file_is_trained_in_one_request(client, settings, route) -> None:
    response = client.post(route, data={"steps": "5", "name": "example1 uploaded"},
                           files={"file": ("example1.keras", seed_bytes(1, "keras"), "application/octet-stream")})
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["parameters"]["dataset"] == "synthetic"
    analysis = _analysis_of(client, run)
    assert analysis["architecture"]["format"] == "keras" and analysis["architecture"]["has_weights"]
    assert analysis["report"]["summary"]["total_params"] == SEED_TOTALS[1]
    # the worker loads the weights from the stored blob
    blobs = list(settings.blob_dir.iterdir())
    assert [p.name for p in blobs] == [f"{analysis['architecture']['sha256']}.keras"]
    assert not list((settings.data_dir / "uploads").glob("*"))


def test_an_uploaded_model_and_dataset_together(client, settings) -> None:
    response = client.post("/v1/training-runs/upload", data={"steps": "5", "batch_size": "4"}, files={
        "file": ("example1.h5", seed_bytes(1, "h5"), "application/octet-stream"),
        "dataset_file": ("data.npz", _npz(), "application/octet-stream")})
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["parameters"]["dataset"] == "npz" and "npz_path" not in run["parameters"]
    analysis = _analysis_of(client, run)
    assert analysis["architecture"]["format"] == "h5"
    assert [p.stem for p in (settings.data_dir / "datasets").iterdir()] == [run["id"]]
    assert not list((settings.data_dir / "uploads").glob("*"))


MISTAKES = [
    # (request kwargs, status, code, words the detail must hold)
    (lambda: {"json": {"architecture": seed_config(1), "analysis_id": "a1"}}, 422, "validation_error",
     ["one model to train", "not several"]),
    (lambda: {"json": {"steps": 5}}, 422, "validation_error",
     ["analysis_id, architecture_id, architecture", "'file'"]),
    (lambda: {"data": {"steps": "5"}, "files": {"dataset_file": ("d.npz", _npz(), "application/octet-stream")}},
     422, "validation_error", ["'file'"]),
    (lambda: {"data": {"analysis_id": "a1"},
              "files": {"file": ("example1.keras", seed_bytes(1, "keras"), "application/octet-stream")}},
     422, "validation_error", ["send one of them"]),
    (lambda: {"data": {"architecture": json.dumps(seed_config(1))},
              "files": {"dataset_file": ("d.npz", _npz(), "application/octet-stream")}}, 422, "validation_error",
     ["file part 'file'", "JSON body"]),
    (lambda: {"files": {"model": ("example1.keras", seed_bytes(1, "keras"), "application/octet-stream")}},
     422, "wrong_file_field", ["'file' or 'dataset_file'"]),
    (lambda: {"data": {"steps": "5"}, "files": {"file": ("data.npz", _npz(), "application/octet-stream")}},
     422, "wrong_file_field", [".npz dataset", "'dataset_file'"]),
    (lambda: {"data": {"steps": "5"}, "files": {"file": ("upload", _npz(), "application/octet-stream")}},
     422, "wrong_file_field", ["'dataset_file'"]),
    (lambda: {"json": {"architecture": {"class_name": "Sequential", "config": {"layers": "nope"}}}},
     422, None, []),
    (lambda: {"files": {"file": ("model.keras", b"not a zip at all", "application/octet-stream")}},
     None, None, []),
    (lambda: {"json": {"architecture": seed_config(1), "input_shape": [0, 28, 1]}}, 422, None, []),
    (lambda: {"json": {"architecture": seed_config(1), "steps": 10**6}}, 422, "validation_error",
     ["steps must be at most"]),
]


@pytest.mark.parametrize("mistake", range(len(MISTAKES)))
def test_a_refused_request_leaves_nothing_behind(client, settings, mistake) -> None:
    make, status, code, words = MISTAKES[mistake]
    before = row_counts(settings)
    response = client.post("/v1/training-runs", **make())
    assert 400 <= response.status_code < 500, response.text
    body = assert_problem(response, status or response.status_code, code)
    for word in words:
        assert word in body["detail"], body
    assert row_counts(settings) == before
    assert _files(settings) == []


def test_a_code_bearing_inline_architecture_is_refused_at_the_gate(client, settings) -> None:
    config = copy.deepcopy(seed_config(1))
    layers = config["config"]["layers"]
    layers.insert(1, {"class_name": "Lambda", "config": {"name": "evil", "function": "print"}})
    response = client.post("/v1/training-runs", json={"architecture": config})
    assert_problem(response, 422, "unsafe_architecture")
    assert row_counts(settings)["jobs"] == 0


@pytest.mark.parametrize(("route", "operation"), [("/v1/analyses", "an analysis"),
                                                  ("/v1/training-runs", "a training run")])
def test_a_model_json_posted_unwrapped_is_told_how_to_wrap_it(client, settings, route, operation) -> None:
    """``model.to_json()`` sent as the body itself: the problem says to wrap it in
    ``{"architecture": ...}``, not that its keys are extra inputs."""
    response = client.post(route, json=seed_config(3))
    body = assert_problem(response, 422, "validation_error")
    assert body["detail"].startswith("The body is a Keras model's JSON itself (class_name 'Functional')")
    assert f'for {operation} send it as the field architecture: {{"architecture": <model.to_json()>' in body["detail"]
    assert "Extra inputs" not in response.text
    assert row_counts(settings)["jobs"] == 0
    # wrapped, the same document is accepted
    wrapped = client.post(route, json={"architecture": seed_config(3)})
    assert wrapped.status_code in (201, 202), wrapped.text
