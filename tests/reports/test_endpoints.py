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
