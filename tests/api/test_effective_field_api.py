"""``POST /v1/analyses/{id}/effective-field`` without a worker: what it accepts and refuses (checked
against the stored report before anything is queued), the job it queues, and how a finished
job reaches the analysis, its report page and its plot (the job's result here is made by the
worker's own summary from synthetic influence maps, so no TensorFlow is needed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from app.analysis.schema import validate_report
from app.config import Settings
from app.db import session_scope
from app.jobs import repository
from app.models import Job
from app.models.base import utcnow
from app.worker.effective_field import METHOD, summarise_influence
from tests.api.helpers import assert_problem, seed_config


def _analysis(client: Any, example: int = 3, input_shape: list[int] | None = None) -> dict[str, Any]:
    response = client.post("/v1/analyses", json={"architecture": seed_config(example),
                                                 "input_shape": input_shape or [33, 33, 3]})
    assert response.status_code == 201, response.text[:500]
    return response.json()


def _children(settings: Settings, analysis_id: str) -> list[Job]:
    with session_scope(settings) as session:
        rows = list(session.scalars(select(Job).where(Job.parent_id == analysis_id, Job.kind == "effective_field")))
        session.expunge_all()
        return rows


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"layers": ["nope"]}, "no top-level layer 'nope'"),
        ({"layers": ["dense"]}, "no local receptive field"),
        ({"layers": []}, "layers"),
        ({"samples": 0}, "samples"),
        ({"samples": 100000}, "samples"),
        ({"bogus": 1}, "bogus"),
        ([1, 2], "body"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_queued(client: Any, settings: Settings, body: Any,
                                                            needle: str) -> None:
    analysis = _analysis(client)
    response = client.post(f"/v1/analyses/{analysis['id']}/effective-field", json=body)
    problem = assert_problem(response, 422, "validation_error")
    assert needle in problem["detail"]
    assert _children(settings, analysis["id"]) == []
    assert client.get(f"/v1/analyses/{analysis['id']}").json()["status"] == "succeeded"


def test_unknown_analysis_bad_json_and_unsupported_models(client: Any) -> None:
    assert_problem(client.post("/v1/analyses/nope/effective-field", json={}), 404, "not_found")
    analysis = _analysis(client)
    response = client.post(f"/v1/analyses/{analysis['id']}/effective-field", content=b"{",
                           headers={"content-type": "application/json"})
    assert_problem(response, 422, "invalid_json")


def test_a_measurement_that_would_not_fit_is_refused(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(tmp_path, tf_memory_bytes=2**20)),
                    raise_server_exceptions=False) as small:
        analysis = _analysis(small)
        response = small.post(f"/v1/analyses/{analysis['id']}/effective-field", json={"batch_size": 64})
        assert_problem(response, 422, "resource_limit_exceeded")


def _influence(box: list[list[int]], shape: tuple[int, int], spread: float) -> np.ndarray:
    """A Gaussian of influence centred on the box, zero outside it (what a measurement looks like)."""
    rows, cols = np.indices(shape, dtype=float)
    centre = [(first + last) / 2 for first, last in box]
    grid = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * spread**2))
    inside = np.zeros(shape, dtype=bool)
    inside[box[0][0]:box[0][1] + 1, box[1][0]:box[1][1] + 1] = True
    return np.where(inside, grid, 0.0)


def test_the_default_layers_are_queued_and_the_result_reaches_the_analysis_and_its_page(
    client: Any, settings: Settings
) -> None:
    analysis = _analysis(client)
    response = client.post(f"/v1/analyses/{analysis['id']}/effective-field")  # no body: every default
    assert response.status_code == 202, response.text[:500]
    assert response.headers["location"] == f"/v1/analyses/{analysis['id']}"
    assert response.json()["status"] == "running"  # its measurement is pending
    (child,) = _children(settings, analysis["id"])
    params = child.parameters
    assert [layer["name"] for layer in params["layers"]] == ["conv2d", "add", "conv2d_3", "conv2d_5"]
    assert params["layers"][-1] == {"name": "conv2d_5", "unit": [16, 16], "box": [[10, 22], [10, 22]]}
    assert params["input_shape"] == [33, 33, 3] and params["samples"] == 16
    assert child.status == "queued" and child.time_limit_s == settings.effective_field_time_limit_s

    rows = [
        {"layer": layer["name"], "output_size": [33, 33], "unit": layer["unit"],
         **summarise_influence(_influence(layer["box"], (33, 33), 1.0 + index), box=layer["box"])}
        for index, layer in enumerate(params["layers"])
    ]
    result = {"status": "measured", "method": METHOD, "mass": 0.95, "samples": 16, "seed": 0,
              "input_size": [33, 33], "layers": rows, "device": "cpu", "elapsed_s": 0.1,
              "weights": "initialisation"}
    with session_scope(settings) as session:
        row = session.get(Job, child.id)
        assert row is not None
        row.status, row.result, row.finished_at = "succeeded", result, utcnow()
        repository.settle_measurement(session, analysis["id"])

    done = client.get(f"/v1/analyses/{analysis['id']}").json()
    assert done["status"] == "succeeded"
    report = done["report"]
    assert report["schema_version"] == "2.0"  # reports are written as 2.0; the section is optional in it
    validate_report(report)
    measured = report["effective_field"]
    assert measured["job_id"] == child.id and measured["weights"] == "initialisation"
    assert [row["layer"] for row in measured["layers"]] == ["conv2d", "add", "conv2d_3", "conv2d_5"]

    page = client.get(f"/v1/analyses/{analysis['id']}/report.html")
    assert page.status_code == 200
    html = page.text
    section = html[html.index('id="effective-field"'):html.index('id="graph"')]
    assert [f'id="effective-field-theoretical-field-{i}"' in section for i in range(5)] == [True] * 4 + [False]
    assert "conv2d_5" in section and "13×13" in section  # the theoretical field beside the measured core
    assert "weights at initialisation" in section
    plot = client.get(f"/v1/analyses/{analysis['id']}/plots/effective_field.png")
    assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"


def test_a_failed_measurement_is_said_on_the_analysis_and_the_page(client: Any, settings: Settings) -> None:
    analysis = _analysis(client)
    client.post(f"/v1/analyses/{analysis['id']}/effective-field", json={"layers": ["conv2d_5"], "samples": 2})
    (child,) = _children(settings, analysis["id"])
    with session_scope(settings) as session:
        row = session.get(Job, child.id)
        assert row is not None
        row.status, row.finished_at = "failed", utcnow()
        row.error = {"code": "invalid_architecture", "detail": "The uploaded weights could not be loaded."}
        repository.settle_measurement(session, analysis["id"])
    done = client.get(f"/v1/analyses/{analysis['id']}").json()
    assert done["status"] == "succeeded"
    validate_report(done["report"])
    assert done["report"]["effective_field"]["status"] == "failed"
    html = client.get(f"/v1/analyses/{analysis['id']}/report.html").text
    assert "The measurement failed: The uploaded weights could not be loaded." in html
