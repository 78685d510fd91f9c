"""Golden reports: the whole report of the seed's examples and of four Keras Applications
models, stored next to their configs as ``*.report.json`` and compared field by field, so any
change to a report is a reviewed diff.

After an intended change, rewrite them with ``python -m pytest tests/analysis/test_golden_reports.py
--update-goldens`` and review ``git diff tests/fixtures``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.analysis import analyze
from app.analysis.schema import validate_report
from tests.fixtures.load import FIXTURES_DIR, load_config, named_configs

GOLDEN_CONFIGS = {
    f"{path.parent.name}/{name}": path
    for name, path in named_configs("example1", "example2", "example3", "vgg16", "resnet50", "mobilenetv2",
                                    "efficientnetb0").items()
}


def golden_path(key: str) -> Path:
    return FIXTURES_DIR / f"{key}.report.json"


def _differences(expected: Any, actual: Any, where: str = "report", limit: int = 20) -> list[str]:
    """Where two JSON documents differ (the first ``limit`` paths), for a readable failure."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                if key not in b:
                    out.append(f"{path}.{key}: removed")
                elif key not in a:
                    out.append(f"{path}.{key}: added {json.dumps(b[key])[:120]}")
                else:
                    walk(a[key], b[key], f"{path}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{index}]")
        elif a != b or type(a) is not type(b):
            out.append(f"{path}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}")

    walk(expected, actual, where)
    return out


@pytest.mark.parametrize("key", sorted(GOLDEN_CONFIGS))
def test_report_equals_its_golden(key: str, request: pytest.FixtureRequest) -> None:
    report = analyze(load_config(GOLDEN_CONFIGS[key]))
    path = golden_path(key)
    if request.config.getoption("--update-goldens"):
        path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.exists(), f"no golden report {path}: run pytest {__file__} --update-goldens"
    golden = json.loads(path.read_text(encoding="utf-8"))
    differences = _differences(golden, report)
    assert not differences and golden == report, (
        f"{key}: the report differs from {path.name} (rewrite with --update-goldens after review):\n"
        + "\n".join(differences)
    )


@pytest.mark.parametrize("key", sorted(GOLDEN_CONFIGS))
def test_golden_reports_match_the_schema(key: str) -> None:
    """The stored goldens themselves are valid reports (extra fields forbidden)."""
    validate_report(json.loads(golden_path(key).read_text(encoding="utf-8")))


def test_a_changed_report_is_caught_with_the_path_of_the_change() -> None:
    golden = json.loads(golden_path("seed/example3").read_text(encoding="utf-8"))
    changed = json.loads(json.dumps(golden))
    changed["layers"][1]["receptive_field"]["axes"][0]["size"] += 2
    changed["summary"]["extra"] = 1
    assert _differences(golden, changed) == [
        "report.summary.extra: added 1",
        "report.layers[1].receptive_field.axes[0].size: 3 -> 5",
    ]
