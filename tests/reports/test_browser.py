"""End to end: the real service, the seed's examples, the pages rendered by headless Chromium.

Uses ``convlens serve`` on a free port with a temporary data directory, analyses the
seed's Example 3 (uploaded as a .keras file), opens report.html in headless Chromium
and checks that the plots and the architecture drawing were laid out with a non-zero
size and that the console stayed clean; the same for the Example 1 vs Example 2
comparison page. Full-page screenshots go to artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import chromium
from tests.reports.conftest import SEED, seed_expected

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def service(live_service: str) -> str:
    return live_service


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium through chromedriver, with a fresh profile."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _upload(base: str, number: int, fmt: str, name: str) -> str:
    with (SEED / f"example{number}.{fmt}").open("rb") as handle:
        response = httpx.post(
            f"{base}/v1/analyses",
            data={"name": name},
            files={"file": (f"example{number}.{fmt}", handle, "application/octet-stream")},
            timeout=60,
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _open(driver, url: str) -> None:
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"


def _size(driver, element) -> tuple[float, float]:
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();return [r.width, r.height];", element
    )
    return float(rect[0]), float(rect[1])


def _assert_rendered(driver, css: str, minimum: int = 1) -> list:
    from selenium.webdriver.common.by import By

    elements = driver.find_elements(By.CSS_SELECTOR, css)
    assert len(elements) >= minimum, f"{css}: {len(elements)} found"
    for element in elements:
        width, height = _size(driver, element)
        assert width > 50 and height > 50, f"{css} rendered {width}x{height}"
    return elements


def _console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 40, 12000))
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path


def test_report_page_renders_in_chromium(service, browser):
    from selenium.webdriver.common.by import By

    analysis_id = _upload(service, 3, "keras", "Seed example 3: residual blocks")
    _open(browser, f"{service}/v1/analyses/{analysis_id}/report.html")
    assert "Seed example 3" in browser.title

    _assert_rendered(browser, "#plot-receptive_field svg")
    _assert_rendered(browser, "#plot-params_macs svg")
    _assert_rendered(browser, "#plot-gradient_flow svg")
    graph = _assert_rendered(browser, "svg#architecture-graph")[0]
    nodes = graph.find_elements(By.CSS_SELECTOR, "g.node")
    assert sorted(node.get_attribute("data-layer") for node in nodes) == sorted(
        layer["name"] for layer in seed_expected(3)["layers"]
    )
    for node in nodes:
        assert min(_size(browser, node)) > 10
    assert len(graph.find_elements(By.CSS_SELECTOR, "g.edge.skip")) == 2
    rows = browser.find_elements(By.CSS_SELECTOR, "#layers tbody tr")
    assert len(rows) == len(seed_expected(3)["layers"])
    assert _console_errors(browser) == []
    assert _screenshot(browser, "report-example3.png").stat().st_size > 20_000


def test_comparison_page_renders_in_chromium(service, browser):
    first = _upload(service, 1, "h5", "Example 1")
    second = _upload(service, 2, "json", "Example 2")
    _open(browser, f"{service}/v1/analyses/{first}/compare/{second}?format=html")
    assert "Example 1 vs Example 2" in browser.title
    explanation = browser.find_element("css selector", "#explanation").text
    assert "kernel goes from 3x3 in Example 1 to 5x5 in Example 2" in explanation
    _assert_rendered(browser, "[data-plot^='receptive_field-'] svg", minimum=2)
    _assert_rendered(browser, "[data-plot^='params_macs-'] svg", minimum=2)
    _assert_rendered(browser, "svg#graph-a")
    _assert_rendered(browser, "svg#graph-b")
    assert _console_errors(browser) == []
    assert _screenshot(browser, "compare-example1-example2.png").stat().st_size > 20_000


@pytest.mark.tensorflow
def test_report_page_with_a_training_run_renders_in_chromium(live_service_with_worker, browser):
    """A real 20-step run of Example 3 (one job worker); its curves and run table on the page."""
    import time

    base = live_service_with_worker
    with (SEED / "example3.keras").open("rb") as handle:
        created = httpx.post(
            f"{base}/v1/analyses",
            data={"name": "Seed example 3, trained", "input_shape": "[32, 32, 3]"},
            files={"file": ("example3.keras", handle, "application/octet-stream")},
            timeout=60,
        )
    assert created.status_code == 201, created.text
    analysis_id = created.json()["id"]
    started = httpx.post(
        f"{base}/v1/training-runs",
        # the page's training section is under test, not the overfit check (a phase of its own)
        json={"analysis_id": analysis_id, "steps": 20, "batch_size": 16, "overfit_check": False},
        timeout=60,
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 900  # a generous ceiling: a busy machine trains slowly
    while (run := httpx.get(f"{base}/v1/training-runs/{run_id}", timeout=30).json())[
        "status"
    ] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, run["progress"]
        time.sleep(0.5)
    assert run["status"] == "succeeded", run.get("error")

    _open(browser, f"{base}/v1/analyses/{analysis_id}/report.html")
    _assert_rendered(browser, "#plot-training svg")
    caption = browser.find_element("css selector", "#training .lead").text
    assert caption.startswith(f"Run {run_id} (succeeded): 20 of 20 steps drawn")
    rows = browser.find_elements("css selector", "#training-runs tbody tr")
    assert len(rows) == 1 and run_id[:8] in rows[0].text and "SUCCEEDED" in rows[0].text.upper()
    verdict = browser.find_element("css selector", "#training-verdict").text
    # the verdict, and what its loss pair is (the one loss story of the page)
    assert verdict == run["result"]["verdict"]["summary"] + (
        " (loss: mean of the first five steps → mean of the last five)")
    assert "at the first step" not in browser.find_element("css selector", "#training").text
    assert _console_errors(browser) == []
    assert _screenshot(browser, "report-example3-training.png").stat().st_size > 20_000


@pytest.mark.tensorflow
def test_resnet50_report_after_a_measurement_tells_one_verdict_story(
    live_service_with_worker, browser
):
    """ResNet50 (Keras Applications, weights=None, 64x64 inputs) analysed and measured by a
    real job worker: while the measurement runs the analysis never reads progress 1.0; the
    page then shows the predicted and the measured verdict side by side, says whether they
    agree, marks any gradient finding the measurement contradicts, and draws both series per
    weighted layer on a labelled log axis."""
    import json
    import lzma
    import time

    from tests.security.applications_configs import STORE

    with lzma.open(STORE / "applications-keras.json.xz") as handle:
        config = json.loads(handle.read())["configs"]["ResNet50"]
    base = live_service_with_worker
    created = httpx.post(
        f"{base}/v1/analyses",
        json={"architecture": config, "name": "ResNet50, measured", "input_shape": [64, 64, 3],
              "measure_gradients": True},
        timeout=120,
    )
    assert created.status_code in (200, 201, 202), created.text
    analysis_id = created.json()["id"]
    deadline = time.monotonic() + 900
    while (body := httpx.get(f"{base}/v1/analyses/{analysis_id}", timeout=60).json())[
        "status"
    ] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, body["progress"]
        if body["status"] == "running" and body.get("report") is not None:
            assert body["progress"] < 1.0
        time.sleep(1.0)
    assert body["status"] == "succeeded", body.get("error")
    flow = body["report"]["gradient_flow"]
    measured = flow["measured"]
    assert measured["status"] == "measured", measured
    assert measured["verdict"] == flow["predicted"]["verdict"] == "healthy"
    assert flow["agreement"] == "agree"
    assert flow["comparison"]["layers"] == 54

    _open(browser, f"{base}/v1/analyses/{analysis_id}/report.html")
    card = browser.find_element("css selector", "#card-gradients").text.lower()
    assert "predicted" in card and "measured" in card
    predicted_badge = browser.find_element("css selector", "#gradient-predicted").text.lower()
    measured_badge = browser.find_element("css selector", "#gradient-measured").text.lower()
    assert predicted_badge == measured_badge == "healthy"
    assert "agrees with the prediction" in card
    findings = browser.find_element("css selector", "#findings").text.lower()
    # no warning claims a verdict the card does not show
    assert "gradient_flow_exploding" not in findings and "gradient_flow_vanishing" not in findings
    _assert_rendered(browser, "#plot-gradient_flow svg")
    plot = browser.find_element("css selector", "#plot-gradient_flow").text
    assert "measured: healthy" in plot and "conv1_conv" in plot
    assert _console_errors(browser) == []
    assert _screenshot(browser, "report-resnet50-measured.png").stat().st_size > 20_000
