"""The report page at every size, in headless Chromium: the seed's examples, ResNet50,
InceptionV3, NASNetMobile, EfficientNetB7 and NASNetLarge (stored Keras configs).

For each model the page is rendered by the real service (first GET, nothing cached) and laid
out by Chromium; from the DOM: every plot fits its panel, no legend overlaps any axes, every
box of the architecture graph (each stage block opened) lies inside its drawing with its text
inside the box, and no drawing is cut vertically. Full-page screenshots go to artifacts/, and
artifacts/report-pages.json records each page's size and render time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.load import load_config, named_configs
from tests.reports.test_browser import ARTIFACTS, _console_errors, _open, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODELS = named_configs("example1", "example2", "example3", "resnet50", "inceptionv3", "nasnetmobile",
                       "efficientnetb7", "nasnetlarge")
PAGE_BYTES_LIMIT = 2_000_000
MEASURED: dict[str, dict[str, float]] = {}

_LAYOUT = """
const rect = (e) => { const r = e.getBoundingClientRect();
  return {l: r.left, t: r.top, r: r.right, b: r.bottom, w: r.width, h: r.height}; };
const overlap = (a, b) => Math.min(a.r, b.r) - Math.max(a.l, b.l) > 1 && Math.min(a.b, b.b) - Math.max(a.t, b.t) > 1;
const problems = [];
document.querySelectorAll('details.stage-block').forEach((d) => { d.open = true; });
document.querySelectorAll('figure .plot').forEach((plot) => {
  const svg = plot.querySelector('svg'); const box = rect(plot); const drawn = rect(svg);
  if (drawn.w < 200 || drawn.h < 100) problems.push(`${plot.dataset.plot}: drawn ${drawn.w}x${drawn.h}`);
  if (drawn.r > box.r + 1 || drawn.l < box.l - 1) problems.push(`${plot.dataset.plot}: wider than its panel`);
  const legends = [...svg.querySelectorAll('g[id$="-legend"]')];
  const axes = [...svg.querySelectorAll('g[id*="axes"]')].filter((g) => !g.parentElement.closest('g[id*="axes"]'));
  for (const legend of legends) { const l = rect(legend);
    if (l.l < drawn.l - 1 || l.r > drawn.r + 1 || l.t < drawn.t - 1) problems.push(`${legend.id}: outside the plot`);
    for (const a of axes) { const r = rect(a.querySelector('g[id*="patch"]') || a);
      if (overlap(l, r)) problems.push(`${legend.id} overlaps ${a.id}`); } }
});
let boxes = 0;
document.querySelectorAll('svg.convlens-graph').forEach((svg) => {
  const frame = rect(svg); const scroller = svg.closest('.graph-scroll');
  if (scroller.scrollHeight > scroller.clientHeight + 1) problems.push(`${svg.id}: cut vertically`);
  svg.querySelectorAll('g.node').forEach((node) => { boxes += 1;
    const box = rect(node.querySelector('rect'));
    if (box.l < frame.l - 1 || box.r > frame.r + 1 || box.t < frame.t - 1 || box.b > frame.b + 1)
      problems.push(`${node.dataset.layer}: box outside its drawing`);
    node.querySelectorAll('text').forEach((text) => { const t = rect(text);
      if (t.r > box.r + 1 || t.b > box.b + 1) problems.push(`${node.dataset.layer}: text outside its box`); });
  });
});
return {problems: problems.slice(0, 20), count: problems.length, boxes: boxes,
        plots: document.querySelectorAll('figure .plot svg').length};
"""


@pytest.fixture(scope="module")
def service(live_service: str) -> str:
    return live_service


@pytest.mark.parametrize("model", list(MODELS))
def test_report_page_reads_right_at_every_size(service, browser, model):  # noqa: F811
    config = load_config(MODELS[model])
    created = httpx.post(f"{service}/v1/analyses", json={"architecture": config, "name": model},
                         timeout=120)
    assert created.status_code == 201, created.text
    analysis_id = created.json()["id"]
    report = httpx.get(f"{service}/v1/analyses/{analysis_id}", timeout=60).json()["report"]
    url = f"{service}/v1/analyses/{analysis_id}/report.html"
    started = time.perf_counter()
    page = httpx.get(url, timeout=120)
    render_s = time.perf_counter() - started
    assert page.status_code == 200
    started = time.perf_counter()
    assert httpx.get(url, timeout=120).content == page.content
    cached_s = time.perf_counter() - started
    MEASURED[model] = {"layers": len(report["layers"]), "page_bytes": len(page.content),
                       "render_s": round(render_s, 3), "cached_get_s": round(cached_s, 4)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-pages.json").write_text(json.dumps(MEASURED, indent=1))
    print(model, MEASURED[model])
    assert len(page.content) < PAGE_BYTES_LIMIT

    _open(browser, url)
    stages = next(f for f in report["findings"] if f["code"] == "stages")["details"]["stages"]
    rows = browser.find_elements("css selector", "#stage-table tbody tr.stage")
    assert len(rows) == len(stages)
    path = _screenshot(browser, f"report-{model}.png")
    assert path.stat().st_size > 20_000
    layout = browser.execute_script(_LAYOUT)
    assert layout["count"] == 0, layout["problems"]
    assert layout["plots"] >= 2
    assert layout["boxes"] >= min(len(report["layers"]) // 4, 20)
    assert _console_errors(browser) == []


def _screenshot(driver, name: str) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 40, 16000))
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path


COMPARED = [("resnet50", "inceptionv3"), ("nasnetmobile", "nasnetlarge")]


@pytest.mark.parametrize(("a", "b"), COMPARED, ids=[f"{a}-{b}" for a, b in COMPARED])
def test_comparison_page_reads_right_at_large_sizes(service, browser, a, b):  # noqa: F811
    """The comparison page at the report page's quality on large models: every plot fits its
    panel without legend overlaps, each side's graph is drawn as stage blocks whose boxes stay
    inside their drawings, and the page is screenshotted with its size and render time."""
    ids = []
    for model in (a, b):
        created = httpx.post(f"{service}/v1/analyses", json={
            "architecture": load_config(MODELS[model]), "name": model}, timeout=120)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    url = f"{service}/v1/analyses/{ids[0]}/compare/{ids[1]}?format=html"
    started = time.perf_counter()
    page = httpx.get(url, timeout=120)
    render_s = time.perf_counter() - started
    assert page.status_code == 200
    MEASURED[f"compare {a} vs {b}"] = {"page_bytes": len(page.content), "render_s": round(render_s, 3)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-pages.json").write_text(json.dumps(MEASURED, indent=1))
    _open(browser, url)
    assert f"{a} vs {b}" in browser.title
    blocks = browser.find_elements("css selector", "#graphs details.stage-block")
    assert len(blocks) >= 10  # both sides: one block per stage and the head
    layout = browser.execute_script(_LAYOUT)
    assert layout["count"] == 0, layout["problems"]
    assert layout["plots"] == 4
    assert _console_errors(browser) == []
    assert _screenshot(browser, f"compare-{a}-{b}.png").stat().st_size > 20_000


def test_terminal_report_of_resnet50_fits_80_columns_in_a_screenshot(browser, tmp_path):  # noqa: F811
    """``convlens analyze`` of ResNet50 in an 80-column terminal, drawn by rich as SVG and
    screenshotted in Chromium: no line past 80 columns, the layer table's Keras columns."""
    import io

    from rich.console import Console

    from app.analysis import analyze
    from app.reports.cli import print_report

    report = analyze(load_config(MODELS["resnet50"]), name="resnet50")
    console = Console(file=io.StringIO(), width=80, record=True, force_terminal=True, highlight=False)
    print_report(report, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Connected to" in text and "Output shape" in text and "conv5_block3_out" in text
    # the screenshot: the summary, findings, stages and the first 40 layers
    console = Console(file=io.StringIO(), width=80, record=True, force_terminal=True, highlight=False)
    print_report(report, console, max_layers=40)
    svg = tmp_path / "terminal-resnet50.svg"
    svg.write_text(console.export_svg(title="convlens analyze resnet50.keras"))
    html = tmp_path / "terminal-resnet50.html"
    html.write_text(f'<html><body style="margin:0"><img src="{svg.name}" style="width:1380px"></body></html>')
    _open(browser, html.as_uri())
    path = _screenshot(browser, "terminal-resnet50.png")
    assert path.stat().st_size > 20_000
