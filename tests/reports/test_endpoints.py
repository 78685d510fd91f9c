"""The report page, standalone plots and comparisons over HTTP (real app, SQLite)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from app.db import session_scope
from app.models import Job
from tests.api.helpers import assert_problem, seed_config, seed_expected
from tests.reports.test_html import external_references, parse


def create(client, number: int, name: str | None = None) -> str:
    response = client.post(
        "/v1/analyses",
        json={"architecture": seed_config(number), "name": name or f"example{number}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_report_page_over_http(client):
    analysis_id = create(client, 3)
    response = client.get(f"/v1/analyses/{analysis_id}/report.html")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    collector = parse(response.text)
    assert external_references(collector) == []
    for layer in seed_expected(3)["layers"]:
        assert layer["name"] in response.text
    links = [attrs.get("href") for tag, attrs in collector.tags if tag == "a"]
    assert f"/v1/analyses/{analysis_id}/plots/receptive_field.svg" in links
    # the links on the page work
    for link in (link for link in links if link and link.startswith("/v1/")):
        assert client.get(link).status_code == 200, link


def test_plots_as_svg_and_png(client):
    analysis_id = create(client, 2)
    svg = client.get(f"/v1/analyses/{analysis_id}/plots/receptive_field.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    assert root.tag.endswith("svg")
    png = client.get(f"/v1/analyses/{analysis_id}/plots/params_macs.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    training = client.get(f"/v1/analyses/{analysis_id}/plots/training.svg")
    assert training.status_code == 200 and b"No training run yet." in training.content
    assert_problem(client.get(f"/v1/analyses/{analysis_id}/plots/nope.svg"), 404, "not_found")
    assert_problem(client.get(f"/v1/analyses/{analysis_id}/plots/receptive_field.gif"), 404)
    assert_problem(client.get("/v1/analyses/does-not-exist/plots/receptive_field.svg"), 404)


def test_compare_json_and_html(client):
    first, second = create(client, 1, "Example 1"), create(client, 2, "Example 2")
    response = client.get(f"/v1/analyses/{first}/compare/{second}")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["a"]["analysis_id"] == first and body["b"]["analysis_id"] == second
    text = " ".join(body["explanation"])
    assert "kernel goes from 3x3 in Example 1 to 5x5 in Example 2" in text
    assert body["summary"]["total_params"]["delta"] == (
        seed_expected(2)["totals"]["params"] - seed_expected(1)["totals"]["params"]
    )

    page = client.get(f"/v1/analyses/{first}/compare/{second}?format=html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert external_references(parse(page.text)) == []
    negotiated = client.get(
        f"/v1/analyses/{first}/compare/{second}",
        headers={"Accept": "text/html,application/xhtml+xml"},
    )
    assert negotiated.headers["content-type"].startswith("text/html")
    assert_problem(client.get(f"/v1/analyses/{first}/compare/missing"), 404)
    assert_problem(client.get(f"/v1/analyses/{first}/compare/{second}?format=pdf"), 422)


def test_an_analysis_without_a_report_is_a_conflict(client, settings):
    analysis_id = create(client, 1)
    with session_scope(settings) as session:
        done = session.get(Job, analysis_id)
        pending = Job(
            tenant_id=done.tenant_id,
            kind="analysis",
            name="pending",
            architecture_id=done.architecture_id,
            parameters={},
            status="queued",
        )
        session.add(pending)
        session.flush()
        pending_id = pending.id
    body = assert_problem(client.get(f"/v1/analyses/{pending_id}/report.html"), 409, "conflict")
    assert "status queued" in body["detail"]


def _training_run(client, analysis_id: str, steps: int) -> str:
    response = client.post(
        "/v1/training-runs", json={"analysis_id": analysis_id, "steps": steps, "batch_size": 8}
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_the_report_draws_the_runs_of_its_own_analysis(client, settings):
    """Runs name their analysis in parameters (parent_id stays empty); a finished run is drawn
    from its result's history, a running one from its step events, and an analysis without
    runs of its own shows those of the same architecture."""
    from app.jobs import repository as jobs

    first, second, third = (
        create(client, 3, "first"),
        create(client, 3, "second"),
        create(client, 3, "third"),
    )
    finished = _training_run(client, first, steps=4)
    running = _training_run(client, second, steps=6)
    losses = [2.5, 2.0, 1.25, 0.75]
    with session_scope(settings) as session:
        row = session.get(Job, finished)
        assert row.parent_id is None and row.parameters["analysis_id"] == first
        row.status = "succeeded"
        row.result = {
            "status": "completed",
            "steps_completed": 4,
            "history": {
                "loss": losses,
                "accuracy": [0.1, 0.2, 0.4, 0.5],
                "step_time_s": [0.5, 0.01, 0.01, 0.01],
                "grad_global_norm": [1.0, 1.1, 1.2, 1.3],
            },
            "verdict": {
                "loss_initial": 2.5,
                "loss_final": 0.75,
                "loss_relative_change": -0.7,
                "loss_decreased": True,
                "overfit_one_batch_passed": True,
                "gradient_health_overall": "healthy",
                "summary": "Loss went from 2.5 to 0.75 (-70%).",
            },
        }
        live = session.get(Job, running)
        live.status = "running"
        # attempt 1 died after two steps; attempt 2 is at step 3
        payloads = [
            {"step": 1, "steps": 6, "loss": 9.0, "wall_time": 1.0},
            {"step": 2, "steps": 6, "loss": 8.0, "wall_time": 2.0},
            {"step": 1, "steps": 6, "loss": 3.0, "wall_time": 3.0},
            {"step": 2, "steps": 6, "loss": 2.75, "wall_time": 4.0},
            {"step": 3, "steps": 6, "loss": 2.5, "wall_time": 5.0},
        ]
        jobs.add_events(session, running, 1, [("step", p) for p in payloads])

    def training_text(analysis_id: str) -> tuple[str, str]:
        page = client.get(f"/v1/analyses/{analysis_id}/report.html")
        assert page.status_code == 200
        section = page.text.split('id="training"', 1)[1].split("</section>", 1)[0]
        return section, " ".join(parse(section).text)

    section, text = training_text(first)
    assert f"Run {finished} (succeeded): 4 of 4 steps drawn" in text
    # one loss story: the verdict's pair (means of the first and last five steps), told once
    # in words and once in the runs table, the same numbers; no second pair from raw steps
    assert "at the first step" not in text
    assert "Loss went from 2.5 to 0.75 (-70%)." in text
    assert "(loss: mean of the first five steps → mean of the last five)" in text
    assert "2.5 → 0.75 (-70%)" in section.split('id="training-runs"', 1)[1]
    assert 'id="plot-training"' in section and "<svg" in section
    assert finished in section and running not in section  # only its own runs
    assert "no training run of its own" not in text

    section, text = training_text(second)
    assert f"Run {running} (running): 3 of 6 steps drawn" in text
    assert "loss 3 at the first step, 2.5 at the latest" in text  # the last attempt only
    assert running in section and finished not in section

    section, text = training_text(third)  # none of its own: the architecture's, newest first
    assert "no training run of its own" in text
    assert section.index(running[:8]) < section.index(finished[:8])
    assert f"Run {running} (running)" in text

    plot = client.get(f"/v1/analyses/{first}/plots/training.svg")
    assert plot.status_code == 200 and b"No training run yet." not in plot.content
    root = ET.fromstring(plot.content)
    assert root.tag.endswith("svg")
