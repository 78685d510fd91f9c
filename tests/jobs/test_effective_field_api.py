"""The effective-field job end to end over HTTP with the embedded executor (``convlens serve``'s
wiring): an uploaded ``.keras`` whose weights give a known answer (every 3x3 kernel keeps only
its centre tap, so every unit is influenced by exactly one input pixel) is analysed at another
input size, measured by a worker's TensorFlow process, and the answer is in the analysis and on
its report page."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.analysis.schema import validate_report
from app.config import Settings
from tests.jobs.conftest import job_settings
from tests.jobs.helpers import wait_for

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings: Settings = job_settings(tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _centre_tap_keras(tmp_path: Path) -> tuple[bytes, list[str]]:
    """The file's bytes and its convolutions' names (Keras numbers them per process)."""
    from tests.worker.models import centre_tap_only, seed_example3

    model = centre_tap_only(seed_example3((64, 64, 3)))
    path = tmp_path / "centre-tap.keras"
    model.save(path)
    return path.read_bytes(), [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]


def test_an_uploaded_models_effective_field_is_measured_with_its_weights(api: Any, tmp_path: Path) -> None:
    data, convolutions = _centre_tap_keras(tmp_path)
    upload = api.post(
        "/v1/analyses/upload",
        files={"file": ("centre-tap.keras", io.BytesIO(data), "application/octet-stream")},
        data={"input_shape": "[33, 33, 3]"},
    )
    assert upload.status_code == 201, upload.text[:500]
    analysis = upload.json()
    assert analysis["architecture"]["has_weights"] is True
    response = api.post(f"/v1/analyses/{analysis['id']}/effective-field", json={"samples": 4, "batch_size": 2})
    assert response.status_code == 202, response.text[:500]
    url = response.headers["location"]
    done = wait_for(
        lambda: (body := api.get(url).json())["status"] in ("succeeded", "failed") and body,
        300, "the effective field to be measured", interval=0.3,
    )
    assert done["status"] == "succeeded", done["error"]
    validate_report(done["report"])
    measured = done["report"]["effective_field"]
    assert measured["status"] == "measured", measured
    assert measured["weights"] == "uploaded" and measured["input_size"] == [33, 33] and measured["samples"] == 4
    layers = [row["layer"] for row in measured["layers"]]
    assert len(layers) == 4 and layers[0] == convolutions[0] and layers[-1] == convolutions[-1]
    for row in measured["layers"]:
        assert row["size95"] == [1, 1] and row["area95"] == 1, row  # the weights say: one pixel
        assert row["centre"] == row["field_centre"] == [16.0, 16.0]
        assert row["mass_inside_field"] == 1.0
    html = api.get(f"/v1/analyses/{analysis['id']}/report.html").text
    assert "with the uploaded weights" in html and 'id="effective-field-theoretical-field-3"' in html
