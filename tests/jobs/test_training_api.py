"""``/v1/training-runs`` and measured gradients over HTTP with the embedded executor
(``convlens serve``'s wiring: the app's lifespan starts the worker subprocess). Runs that a
test looks at while they run wait at a step it chose (a hold), so nothing races."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.jobs.lifecycle import sweep, work_dir
from tests.jobs.conftest import job_settings
from tests.jobs.helpers import example3_config, hold, reached, release, tiny_config, wait_for

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    return job_settings(tmp_path, max_concurrent_training_per_tenant=3)


@pytest.fixture
def api(api_settings: Settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(api_settings), raise_server_exceptions=False) as client:
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


def test_a_training_run_shows_progress_streams_events_and_ends_with_a_verdict(
    api: Any, api_settings: Settings
) -> None:
    analysis = _architecture_id(api, example3_config(), input_shape=[32, 32, 3])
    response = api.post(
        "/v1/training-runs", json={"analysis_id": analysis["id"], "steps": 40, "batch_size": 8}
    )
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["Location"] == f"/v1/training-runs/{run['id']}"
    assert run["parameters"]["input_shape"] == [32, 32, 3]  # taken from the analysis
    assert run["parameters"]["overfit_check"] is True
    hold(api_settings, run["id"], step=20)
    reached(api_settings, run["id"])
    middle = wait_for(
        lambda: (b := api.get(f"/v1/training-runs/{run['id']}").json())["progress"]["steps_done"] == 20 and b,
        60,
        "step 20 to show",
        interval=0.05,
    )
    assert middle["status"] == "running"
    progress = middle["progress"]
    assert progress["phase"] == "training" and progress["steps"] == 40
    assert progress["eta_s"] > 0 and progress["loss"] is not None
    assert 0 < progress["fraction"] < 0.5  # 20 of 40 steps, and 50 overfit-check steps to come
    release(api_settings, run["id"])
    body = _terminal(api, f"/v1/training-runs/{run['id']}")
    assert body["status"] == "succeeded", body["error"]
    result = body["result"]
    verdict = result["verdict"]
    assert verdict["loss_decreased"] is True and verdict["overfit_one_batch_passed"] is True
    assert result["overfit_one_batch"]["duration_s"] > 0
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
    assert {"step", "loss", "step_time_s", "eta_s", "attempt"} <= set(step)
    assert step["attempt"] == 1
    # resuming after an event id only sends what follows
    with api.stream(
        "GET", f"/v1/training-runs/{run['id']}/events", headers={"Last-Event-ID": "40"}
    ) as stream:
        later = "".join(stream.iter_text())
    assert "id: 40\n" not in later and "id: 41\n" in later


def test_the_overfit_check_is_a_timed_phase_of_its_own_and_optional(api: Any, api_settings: Settings) -> None:
    analysis = _architecture_id(api, tiny_config())
    checked = api.post(
        "/v1/training-runs",
        json={"analysis_id": analysis["id"], "steps": 10, "batch_size": 4},
    ).json()
    skipped = api.post(
        "/v1/training-runs",
        json={"analysis_id": analysis["id"], "steps": 10, "batch_size": 4, "overfit_check": False},
    ).json()
    hold(api_settings, checked["id"], phase="overfit_check")
    reached(api_settings, checked["id"])
    during = wait_for(
        lambda: (b := api.get(f"/v1/training-runs/{checked['id']}").json())["progress"]["phase"] == "overfit_check"
        and b,
        60,
        "the overfit check's phase to show",
        interval=0.05,
    )
    assert during["status"] == "running" and during["progress"]["steps_done"] == 10
    assert during["progress"]["fraction"] == pytest.approx(10 / 60)  # 10 steps, then 50 check steps
    release(api_settings, checked["id"])
    result = _terminal(api, f"/v1/training-runs/{checked['id']}")["result"]
    assert result["overfit_one_batch"]["steps"] == 50 and result["overfit_one_batch"]["passed"] is not None
    assert result["overfit_check_s"] == result["overfit_one_batch"]["duration_s"] > 0
    body = _terminal(api, f"/v1/training-runs/{skipped['id']}")
    assert body["result"]["overfit_one_batch"] == {"passed": None, "steps": 0, "reason": "not requested"}
    assert body["result"]["overfit_check_s"] is None
    assert body["result"]["verdict"]["overfit_one_batch_passed"] is None


def test_cancel_stops_a_run_at_its_next_step_and_deletes_its_files(api: Any, api_settings: Settings) -> None:
    analysis = _architecture_id(api, tiny_config())
    run = api.post(
        "/v1/training-runs", json={"analysis_id": analysis["id"], "steps": 2000, "batch_size": 4}
    ).json()
    hold(api_settings, run["id"], step=15)
    reached(api_settings, run["id"])
    assert (work_dir(api_settings, run["id"]) / "checkpoint.npz").exists()  # step 10's
    cancelled = api.post(f"/v1/training-runs/{run['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"] is True
    body = _terminal(api, f"/v1/training-runs/{run['id']}")  # the hold ends when told to stop
    assert body["status"] == "cancelled"
    assert body["result"]["status"] == "cancelled" and body["result"]["steps_completed"] == 15
    assert not work_dir(api_settings, run["id"]).exists()


def _npz() -> bytes:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 64)
    x = rng.standard_normal((3, 8, 8, 3)).astype("float32")[labels] + 0.3 * rng.standard_normal(
        (64, 8, 8, 3)
    )
    buffer = io.BytesIO()
    np.savez(buffer, x=x.astype("float32"), y=labels)
    return buffer.getvalue()


def _datasets(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "datasets").glob("*.npz"))


def test_an_uploaded_npz_dataset_is_used_then_deleted(api: Any, api_settings: Settings) -> None:
    analysis = _architecture_id(api, tiny_config())
    response = api.post(
        "/v1/training-runs",
        data={"analysis_id": analysis["id"], "steps": "30", "batch_size": "16", "overfit_check": "false"},
        files={"dataset_file": ("data.npz", _npz(), "application/octet-stream")},
    )
    assert response.status_code == 202, response.text
    body = _terminal(api, response.headers["Location"])
    assert body["status"] == "succeeded", body["error"]
    assert body["result"]["dataset"] == {"kind": "npz", "samples": 64}
    assert body["parameters"]["overfit_check"] is False
    assert "npz_path" not in body["parameters"]  # server paths stay private
    assert _datasets(api_settings) == []  # deleted when the run ended


def test_a_run_cancelled_while_queued_loses_its_dataset_at_the_next_sweep(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = job_settings(tmp_path, local_workers=0)  # nobody runs it
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        analysis = _architecture_id(client, tiny_config())
        run = client.post(
            "/v1/training-runs",
            data={"analysis_id": analysis["id"], "steps": "30"},
            files={"dataset_file": ("data.npz", _npz(), "application/octet-stream")},
        ).json()
        assert [p.stem for p in _datasets(settings)] == [run["id"]]
        assert sweep(settings) == []  # queued: its dataset stays
        assert client.post(f"/v1/training-runs/{run['id']}/cancel").json()["status"] == "cancelled"
        deleted = sweep(settings)
        assert [p.stem for p in deleted] == [run["id"]] and _datasets(settings) == []


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


def test_a_two_input_model_trains_at_a_shape_given_per_input(api: Any) -> None:
    """``input_shape`` per input name reaches the worker: the run rebuilds each input at its size."""
    import keras

    image, mask = keras.Input((32, 32, 3), name="image"), keras.Input((32, 32, 1), name="mask")
    a = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, 2, "same")(image))
    b = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same")(mask))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()([a, b]))
    config = json.loads(keras.Model([image, mask], out).to_json())
    shapes = {"image": [24, 20, 3], "mask": [12, 10, 1]}
    analysis = _architecture_id(api, config, input_shape=shapes)
    assert analysis["report"]["summary"]["input_shapes"] == [[None, 24, 20, 3], [None, 12, 10, 1]]
    response = api.post("/v1/training-runs", json={
        "analysis_id": analysis["id"], "steps": 4, "batch_size": 4, "overfit_check": False})
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["parameters"]["input_shape"] == shapes  # taken from the analysis
    body = _terminal(api, f"/v1/training-runs/{run['id']}")
    assert body["status"] == "succeeded", body["error"]
