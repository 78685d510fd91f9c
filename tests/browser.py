"""Headless Chromium through chromedriver, for the tests marked ``browser``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The flags every browser test starts Chromium with.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


@contextmanager
def chromium(
    profile: Path, *, flags: Sequence[str] = (), logs: Mapping[str, str] | None = None
) -> Iterator[Any]:
    """A headless Chromium driver with a fresh profile in ``profile``, ``CHROMIUM_FLAGS`` and
    then ``flags``, keeping the logs named in ``logs`` (default: the browser console); quit
    on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert binary and driver_path, (
        "headless Chromium is needed: apt-get install chromium chromium-driver "
        "(scripts/test-services.sh installs it)"
    )
    options = Options()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", dict(logs or {"browser": "ALL"}))
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
