"""/docs (Swagger UI) and /redoc (ReDoc) work on a machine without internet.

The real service (``convlens serve``) is opened in headless Chromium whose network ends at
this machine: every host name but the loopback ones fails to resolve and every request that
is not for the loopback goes to a closed proxy port. Chromium's own network log (DevTools
``Network.requestWillBeSent`` events) lists every request the pages made: all of them are
for the service itself, and every operation of ``/openapi.json`` is rendered on both pages.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser import chromium
from tests.reports.conftest import serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}
RENDER_CEILING_S = 120.0


def _closed_port() -> int:
    """A loopback port nothing listens on: the proxy every non-loopback request is sent to."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("docs-offline")) as base:
        yield base


@pytest.fixture(scope="module")
def offline_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium that can reach only this machine's loopback, logging every request."""
    with chromium(
        tmp_path_factory.mktemp("chromium-offline"),
        flags=(
            "--disable-domain-reliability",
            # No route off this machine: names do not resolve, and anything not for the loopback
            # goes to a port nothing listens on (the loopback bypasses proxies by default).
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            f"--proxy-server=http://127.0.0.1:{_closed_port()}",
        ),
        logs={"browser": "ALL", "performance": "ALL"},
    ) as driver:
        yield driver


def _network_log(driver) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """The URLs Chromium requested since the last call (the performance log drains on read),
    split into those that went out and those the page's Content-Security-Policy refused
    before any connection was made."""
    requests: dict[str, str] = {}
    refused: set[str] = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests[message["params"]["requestId"]] = message["params"]["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and message["params"].get("blockedReason") == "csp":
            refused.add(message["params"]["requestId"])
    sent = [url for request, url in requests.items() if request not in refused]
    return sent, [url for request, url in requests.items() if request in refused]


def _off_machine(urls: list[str]) -> list[str]:
    return [
        url for url in urls
        if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).hostname not in LOOPBACK_HOSTS
    ]


def _operation_ids(base: str) -> set[str]:
    schema = httpx.get(f"{base}/openapi.json", timeout=30).json()
    ids = {
        operation["operationId"]
        for operations in schema["paths"].values()
        for method, operation in operations.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert len(ids) > 15
    return ids


def _wait_for(driver, script: str, expected: int) -> int:  # type: ignore[no-untyped-def]
    """Poll a count in the page until it reaches ``expected`` (the page renders asynchronously
    after its script and the OpenAPI document load); a generous ceiling, never a fixed sleep."""
    deadline = time.monotonic() + RENDER_CEILING_S
    while True:
        count = int(driver.execute_script(script))
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def _console_errors(driver, refused: list[str]) -> list[dict]:  # type: ignore[no-untyped-def]
    """Severe console entries, less the browser's notes that the page's policy refused ``refused``."""
    return [
        entry for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE"
        and not (entry.get("source") == "security" and any(f"'{url}'" in entry["message"] for url in refused))
    ]


def test_swagger_ui_renders_every_operation_from_local_assets(service, offline_browser) -> None:
    from selenium.webdriver.common.by import By

    driver = offline_browser
    operation_ids = _operation_ids(service)
    _network_log(driver)
    driver.get(f"{service}/docs")
    assert driver.execute_script("return typeof SwaggerUIBundle") == "function", "Swagger UI did not load"
    count = "return document.querySelectorAll('.opblock').length"
    assert _wait_for(driver, count, len(operation_ids)) == len(operation_ids)
    shown = {
        block.get_attribute("id").split("-", 2)[2]  # operations-<tag>-<operationId>
        for block in driver.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert shown == operation_ids
    assert driver.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("convlens")

    sent, refused = _network_log(driver)
    assert any(url.endswith("/static/docs/swagger-ui-bundle.js") for url in sent), sent
    assert any(url.endswith("/openapi.json") for url in sent), sent
    assert _off_machine(sent) == []
    assert _console_errors(driver, refused) == []
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "docs-swagger-offline.png"))


def test_redoc_renders_every_operation_from_local_assets(service, offline_browser) -> None:
    from selenium.webdriver.common.by import By

    driver = offline_browser
    operation_ids = _operation_ids(service)
    _network_log(driver)
    driver.get(f"{service}/redoc")
    assert driver.execute_script("return typeof Redoc") == "object", "ReDoc did not load"
    sections = '[data-section-id^="operation/"]'
    count = f"return document.querySelectorAll('{sections}').length"
    assert _wait_for(driver, count, len(operation_ids)) == len(operation_ids)
    shown = {
        section.get_attribute("data-section-id").removeprefix("operation/")
        for section in driver.find_elements(By.CSS_SELECTOR, sections)
    }
    assert shown == operation_ids
    assert driver.find_element(By.CSS_SELECTOR, "h1").text.startswith("convlens")

    sent, refused = _network_log(driver)
    assert any(url.endswith("/static/docs/redoc.standalone.js") for url in sent), sent
    assert _off_machine(sent) == []
    # ReDoc's sidebar logo comes from its vendor's CDN: the page's policy refuses it.
    assert _off_machine(refused) == refused
    assert _console_errors(driver, refused) == []
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "docs-redoc-offline.png"))
