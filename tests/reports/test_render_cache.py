"""Rendered pages and plots are cached per analysis and revision: a second GET does not render
again, a measurement arriving makes the next GET render the new version, and renders of
different analyses do not wait on each other."""

from __future__ import annotations

import threading

from app.db import session_scope
from app.models import Job
from app.reports.cache import RenderCache, render_cache
from tests.reports.test_endpoints import create


def test_report_page_is_rendered_once_per_revision(client, settings):
    cache = render_cache()
    analysis_id = create(client, 3)
    before = cache.renders
    first = client.get(f"/v1/analyses/{analysis_id}/report.html")
    second = client.get(f"/v1/analyses/{analysis_id}/report.html")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert cache.renders == before + 1

    # A gradients measurement arrives: the report's revision changes, the page is drawn anew.
    with session_scope(settings) as session:
        analysis = session.get(Job, analysis_id)
        session.add(Job(
            tenant_id=analysis.tenant_id, kind="gradients", name="measure",
            architecture_id=analysis.architecture_id, parent_id=analysis.id, parameters={},
            status="succeeded",
            result={"measured": {"verdict": "healthy", "status": "complete",
                                 "layers": [{"name": "conv2d", "gradient_norm": 0.5},
                                            {"name": "dense", "gradient_norm": 1.0}]}},
        ))
    third = client.get(f"/v1/analyses/{analysis_id}/report.html")
    assert third.status_code == 200
    assert cache.renders == before + 2
    # the gradient card now tells the measurement's story beside the prediction
    assert "not measured yet" in first.text and "not measured yet" not in third.text
    assert "the prediction (ratio" in third.text and "the prediction (ratio" not in first.text
    client.get(f"/v1/analyses/{analysis_id}/report.html")
    assert cache.renders == before + 2


def test_plots_are_cached_per_name_and_format(client):
    cache = render_cache()
    analysis_id = create(client, 2)
    before = cache.renders
    for _ in range(2):
        for name in ("receptive_field.svg", "receptive_field.png", "params_macs.svg"):
            assert client.get(f"/v1/analyses/{analysis_id}/plots/{name}").status_code == 200
    assert cache.renders == before + 3


def test_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used():
    cache = RenderCache(max_bytes=100)
    cache.get_or_render("a", lambda: b"x" * 40)
    cache.get_or_render("b", lambda: b"y" * 40)
    cache.get_or_render("a", lambda: b"never")  # a is now the most recently used
    cache.get_or_render("c", lambda: b"z" * 40)  # evicts b
    assert cache.size_bytes <= 100
    assert cache.get("a") == b"x" * 40 and cache.get("b") is None and cache.get("c") == b"z" * 40
    assert cache.get_or_render("huge", lambda: b"h" * 500) == b"h" * 500  # served, not kept
    assert cache.get("huge") is None


def test_renders_of_different_keys_do_not_wait_on_each_other():
    """A slow render (held open by the test) does not block another key's render; a second
    request for the same key waits for the first render instead of drawing again."""
    cache = RenderCache(max_bytes=10_000)
    release = threading.Event()
    started = threading.Event()
    calls: list[str] = []

    def slow() -> bytes:
        calls.append("slow")
        started.set()
        assert release.wait(30)
        return b"slow page"

    results: dict[str, bytes] = {}
    first = threading.Thread(target=lambda: results.setdefault("1", cache.get_or_render("big", slow)))
    second = threading.Thread(target=lambda: results.setdefault("2", cache.get_or_render("big", slow)))
    first.start()
    assert started.wait(30)
    second.start()
    # While "big" renders, another analysis's plot renders and returns at once.
    assert cache.get_or_render("small", lambda: b"small plot") == b"small plot"
    assert "2" not in results
    release.set()
    first.join(30)
    second.join(30)
    assert results == {"1": b"slow page", "2": b"slow page"} and calls == ["slow"]


def test_misaligned_detail_is_bounded_and_the_full_list_is_on_request(client):
    """NASNetMobile: every field names at most three misaligned pairs (with the count), the
    summary lists the merges where pairs first meet; the route lists all pairs of each."""
    import json

    from tests.fixtures.load import FIXTURES_DIR, load_config

    config = load_config(FIXTURES_DIR / "applications" / "nasnetmobile.json.gz")
    response = client.post("/v1/analyses", json={"architecture": config, "name": "nasnet"})
    assert response.status_code in (201, 202), response.text
    analysis_id = response.json()["id"]
    report = client.get(f"/v1/analyses/{analysis_id}").json()["report"]
    assert len(json.dumps(report)) < 1_000_000  # was 1.8 MB with every pair on every field
    counted = 0
    for layer in report["layers"]:
        field = layer.get("receptive_field") or {}
        pairs = field.get("misaligned") or []
        assert len(pairs) <= 3
        if len(pairs) == 3 and "misaligned_count" in field:
            counted += 1
            assert field["misaligned_count"] > 3
    assert counted > 0
    summary = report["receptive_field"]["misaligned"]
    assert summary and all(len(merge["branches"]) <= 3 for merge in summary)
    full = client.get(f"/v1/analyses/{analysis_id}/misaligned")
    assert full.status_code == 200
    body = full.json()
    by_layer = {merge["layer"]: merge for merge in body["merges"]}
    assert [merge["layer"] for merge in summary] == list(by_layer)
    for merge in summary:
        listed = by_layer[merge["layer"]]
        assert len(listed["branches"]) == listed["pair_count"] == merge["pair_count"]
        assert listed["branches"][: len(merge["branches"])] == merge["branches"]
    assert body["pair_count"] == sum(merge["pair_count"] for merge in summary)


def test_a_page_rendered_again_later_is_the_same_bytes(client, monkeypatch):
    """Each HTTP process of ``convlens serve`` keeps its own cache, so one revision may be
    rendered in several processes at different times: the page must not depend on the clock."""
    from datetime import UTC, datetime

    import app.reports.html as html

    analysis_id = create(client, 3)
    first = client.get(f"/v1/analyses/{analysis_id}/report.html").content
    render_cache().clear()  # another process: nothing cached

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime(2031, 7, 1, 12, 0, tzinfo=tz or UTC)

    monkeypatch.setattr(html, "datetime", Later)
    second = client.get(f"/v1/analyses/{analysis_id}/report.html").content
    assert second == first
