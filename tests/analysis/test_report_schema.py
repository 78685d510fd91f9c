"""The typed report (app.analysis.schema): strict, complete, and checked on every report the
suite produces (tests/conftest.py wraps the report builder and the gradient measurement)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from app.analysis import analyze, findings
from app.analysis import report as report_module
from app.analysis.schema import FINDING_CODES, SCHEMA_VERSIONS, Report, validate_report
from app.api.docs import seed_config


@pytest.fixture(scope="module")
def example3() -> dict[str, Any]:
    return analyze(seed_config("example3"))


def test_every_finding_code_has_its_typed_details() -> None:
    assert sorted(FINDING_CODES) == sorted(findings.CODES)


def test_the_engines_schema_version_is_described() -> None:
    assert report_module.SCHEMA_VERSION in SCHEMA_VERSIONS
    assert Report.model_fields["schema_version"].annotation.__args__ == SCHEMA_VERSIONS  # type: ignore[union-attr]


def test_the_suite_validates_every_report_it_builds() -> None:
    assert getattr(report_module.build_report, "__validated__", False)
    from app.worker import gradients, training

    assert getattr(gradients.measure, "__validated__", False)
    assert getattr(training.run_training, "__validated__", False)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.__setitem__("extra", 1),
        lambda r: r["summary"].__setitem__("total_flops", 1),
        lambda r: r["layers"][1]["receptive_field"]["axes"][0].__setitem__("centre", 1),
        lambda r: r["findings"][0]["details"].__setitem__("undocumented", True),
        lambda r: r["gradient_flow"]["predicted"]["layers"][0].__setitem__("gain", 1.0),
        lambda r: r["coverage"]["metrics"].__setitem__("latency", {"status": "complete", "reason": None}),
        lambda r: r["summary"].pop("macs"),
        lambda r: r["findings"][0].__setitem__("code", "no_such_finding"),
        lambda r: r["layers"][0].__setitem__("params", "many"),
    ],
    ids=["report", "summary", "axis", "finding details", "predicted layer", "metric", "missing field",
         "unknown finding code", "wrong type"],
)
def test_anything_the_schema_does_not_describe_is_refused(example3: dict[str, Any], change: Any) -> None:
    changed = copy.deepcopy(example3)
    change(changed)
    with pytest.raises(ValidationError):
        validate_report(changed)


def test_typed_attributes_read_the_report(example3: dict[str, Any]) -> None:
    report = validate_report(example3)
    assert report.summary.total_params == example3["summary"]["total_params"] == 57034
    conv = next(layer for layer in report.layers if layer.class_name == "Conv2D")
    assert conv.receptive_field is not None and conv.receptive_field.axes is not None
    assert [axis.size for axis in conv.receptive_field.axes] == [3, 3]
    assert {finding.code for finding in report.findings} == {f["code"] for f in example3["findings"]}
