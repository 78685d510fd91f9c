"""``/v1/training-runs`` and measured gradients over HTTP with the embedded executor
(``convlens serve``'s wiring: the app's lifespan starts the worker subprocess)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.jobs.conftest import job_settings
from tests.jobs.helpers import example3_config, tiny_config, wait_for


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = job_settings(tmp_path, max_concurrent_training_per_tenant=3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _architecture_id(api: Any, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = api.post("/v1/analyses", json={"architecture": config, **extra})
    assert response.status_code in (201, 202), response.text
    return response.json()


def _terminal(api: Any, url: str, timeout: float = 300) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (body := api.get(url).json())["status"] in ("succeeded", "failed", "cancelled") and body
        ),
        timeout,
        f"{url} to finish",
        interval=0.3,
    )


def test_measured_gradients_are_merged_into_the_analysis_beside_the_prediction(api: Any) -> None:
    created = _architecture_id(
        api, example3_config(), input_shape=[32, 32, 3], measure_gradients=True
    )
    assert created["status"] in ("queued", "running")
    done = _terminal(api, f"/v1/analyses/{created['id']}")
    assert done["status"] == "succeeded"
    flow = done["report"]["gradient_flow"]
    assert flow["measured"]["verdict"] == "healthy"
    assert flow["measured"]["skip_ablation"]["early_layers_mean_ratio"] < 1
    assert flow["predicted"] is not None  # side by side


def test_a_training_run_shows_progress_streams_events_and_ends_with_a_verdict(api: Any) -> None:
    analysis = _architecture_id(api, example3_config(), input_shape=[32, 32, 3])
    response = api.post(
        "/v1/training-runs", json={"analysis_id": analysis["id"], "steps": 40, "batch_size": 8}
    )
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["Location"] == f"/v1/training-runs/{run['id']}"
    assert run["parameters"]["input_shape"] == [32, 32, 3]  # taken from the analysis
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        body = api.get(f"/v1/training-runs/{run['id']}").json()
        seen.append((body["status"], body["progress"]["steps_done"], body["progress"]["eta_s"]))
        if body["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert body["status"] == "succeeded", body["error"]
    assert any(
        status == "running" and 0 < done < 40 and eta is not None for status, done, eta in seen
    ), seen
    verdict = body["result"]["verdict"]
    assert verdict["loss_decreased"] is True and verdict["overfit_one_batch_passed"] is True
    with api.stream("GET", f"/v1/training-runs/{run['id']}/events") as stream:
        text = "".join(stream.iter_text())
    blocks = [b for b in text.split("\n\n") if b.strip()]
    kinds = [
        line.split(": ", 1)[1]
        for b in blocks
        for line in b.splitlines()
        if line.startswith("event: ")
    ]
    assert kinds[0] == "started" and kinds.count("step") == 40 and kinds[-1] == "end"
    step = next(json.loads(b.split("data: ", 1)[1]) for b in blocks if "event: step" in b)
    assert {"step", "loss", "step_time_s", "eta_s"} <= set(step)
    # resuming after an event id only sends what follows
    with api.stream(
        "GET", f"/v1/training-runs/{run['id']}/events", headers={"Last-Event-ID": "40"}
    ) as stream:
        later = "".join(stream.iter_text())
    assert "id: 40\n" not in later and "id: 41\n" in later


def test_cancel_stops_a_run_at_its_next_step(api: Any) -> None:
    analysis = _architecture_id(api, tiny_config())
    run = api.post(
        "/v1/training-runs", json={"analysis_id": analysis["id"], "steps": 2000, "batch_size": 4}
    ).json()
    wait_for(
        lambda: api.get(f"/v1/training-runs/{run['id']}").json()["progress"]["steps_done"] > 5,
        120,
        "the run to start",
    )
    cancelled = api.post(f"/v1/training-runs/{run['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"] is True
    body = _terminal(api, f"/v1/training-runs/{run['id']}")
    assert body["status"] == "cancelled"
    assert body["result"]["status"] == "cancelled" and body["result"]["steps_completed"] < 2000


def test_an_uploaded_npz_dataset_is_used(api: Any) -> None:
    analysis = _architecture_id(api, tiny_config())
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 64)
    x = rng.standard_normal((3, 8, 8, 3)).astype("float32")[labels] + 0.3 * rng.standard_normal(
        (64, 8, 8, 3)
    )
    buffer = io.BytesIO()
    np.savez(buffer, x=x.astype("float32"), y=labels)
    response = api.post(
        "/v1/training-runs",
        data={"analysis_id": analysis["id"], "steps": "30", "batch_size": "16"},
        files={"dataset_file": ("data.npz", buffer.getvalue(), "application/octet-stream")},
    )
    assert response.status_code == 202, response.text
    body = _terminal(api, response.headers["Location"])
    assert body["status"] == "succeeded", body["error"]
    assert body["result"]["dataset"] == {"kind": "npz", "samples": 64}
    assert "npz_path" not in body["parameters"]  # server paths stay private


@pytest.mark.parametrize(
    "payload,status,code",
    [
        ({"steps": 10}, 422, "validation_error"),  # neither analysis_id nor architecture_id
        ({"architecture_id": "nope"}, 404, "not_found"),
        ({"architecture_id": "x", "optimizer": "adagrad"}, 422, "validation_error"),
        ({"architecture_id": "x", "steps": 100000}, 422, "validation_error"),
        ({"architecture_id": "x", "dataset": "npz"}, 422, "validation_error"),
    ],
)
def test_bad_requests_are_problems(
    api: Any, payload: dict[str, Any], status: int, code: str
) -> None:
    if payload.get("architecture_id") == "x":
        payload["architecture_id"] = _architecture_id(api, tiny_config())["architecture"]["id"]
    response = api.post("/v1/training-runs", json=payload)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def test_an_unknown_run_is_not_found(api: Any) -> None:
    assert api.get("/v1/training-runs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert (
        api.post("/v1/training-runs/00000000-0000-0000-0000-000000000000/cancel").status_code == 404
    )
    assert (
        api.get("/v1/training-runs/00000000-0000-0000-0000-000000000000/events").status_code == 404
    )
