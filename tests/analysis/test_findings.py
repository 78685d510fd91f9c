"""Findings (app.analysis.findings) on configs built with Keras to show one thing each.

Each fixture in ``tests/fixtures/findings`` was built to trigger one finding; the tests assert
its code, severity and layers, and that a clean model raises no warning. Numbers in the details
are checked against Keras (parameter shares) and the receptive-field oracle (stage fields).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.analysis import analyze
from app.analysis.findings import CODES
from tests.fixtures.load import FIXTURES_DIR, ModelFixture, load_config, small_fixtures

FINDINGS = small_fixtures("findings")
GRADIENT = small_fixtures("gradient")


def _application(stem: str) -> ModelFixture:
    folder = FIXTURES_DIR / "applications"
    return ModelFixture(stem, folder / f"{stem}.json.gz", folder / f"{stem}.expected.json")


def _findings(config: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    return analyze(config, **kwargs)["findings"]


def _by_code(findings: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [finding for finding in findings if finding["code"] == code]


def _one(findings: list[dict[str, Any]], code: str) -> dict[str, Any]:
    matching = _by_code(findings, code)
    assert len(matching) == 1, [f["code"] for f in findings]
    return matching[0]


# (fixture, code, severity, layers exactly)
CASES = [
    ("stride_gt_kernel", "stride_exceeds_kernel", "warning", ["skipping_conv", "skipping_pool"]),
    ("early_downsampling", "aggressive_early_downsampling", "warning", ["stem_pool"]),
    ("deep_plain_stack", "deep_plain_stack", "warning",
     [f"conv{i}" for i in range(1, 13)] + ["classifier"]),
    ("saturating_deep", "saturating_activations_deep", "warning",
     [f"conv{i}" for i in range(1, 9)]),
    ("dense_head", "dense_head_dominates", "warning", ["flatten", "fc1", "classifier"]),
    ("checkerboard", "checkerboard_transposed_conv", "warning", ["upsample_checkerboard"]),
    ("dilation_gridding", "dilation_gridding", "warning", ["dilated1", "dilated2", "dilated3"]),
    ("residual_mismatch", "residual_shape_mismatch", "warning",
     ["broadcast_add", "branch_conv", "shortcut_1ch"]),
    ("small_field", "receptive_field_small", "warning", ["conv3"]),
]


@pytest.mark.parametrize(("fixture", "code", "severity", "layers"), CASES,
                         ids=[case[0] for case in CASES])
def test_fixture_triggers_its_finding(fixture: str, code: str, severity: str,
                                      layers: list[str]) -> None:
    finding = _one(_findings(FINDINGS[fixture].config()), code)
    assert finding["severity"] == severity
    assert finding["layers"] == layers
    assert finding["message"] and isinstance(finding["details"], dict)
    assert any(name in finding["message"] for name in layers)


def test_misaligned_branches_are_named() -> None:
    finding = _one(_findings(FINDINGS["misaligned"].config()), "misaligned_fields")
    assert finding["severity"] == "warning"
    assert finding["layers"][0] == "misaligned_add"
    assert {"conv1", "pad_bottom_right"} <= set(finding["layers"])


def test_clean_model_raises_no_warning() -> None:
    findings = _findings(FINDINGS["clean_resnet"].config())
    assert [f for f in findings if f["severity"] != "info"] == []
    codes = {f["code"] for f in findings}
    assert {"stages", "receptive_field_coverage", "residual_connections"} <= codes


def test_each_fixture_triggers_only_what_it_was_built_for() -> None:
    """A fixture built for one warning does not also trip unrelated structural warnings."""
    field_codes = {"receptive_field_small", "aggressive_early_downsampling"}
    for fixture, code, _, _ in CASES:
        warnings = {f["code"] for f in _findings(FINDINGS[fixture].config())
                    if f["severity"] == "warning"}
        assert code in warnings
        assert warnings - {code} <= field_codes | {"stride_exceeds_kernel"}, (fixture, warnings)


def test_every_code_is_exercised() -> None:
    seen: set[str] = set()
    for fixture in list(FINDINGS.values()) + list(GRADIENT.values()):
        seen |= {f["code"] for f in _findings(fixture.config())}
    assert set(CODES) - seen == set()


def test_gradient_findings_refer_to_the_prediction() -> None:
    vanishing = _one(_findings(GRADIENT["plain20_sigmoid"].config()), "gradient_flow_vanishing")
    assert vanishing["layers"] == ["conv1", "classifier"]
    assert vanishing["details"]["ratio"] < 1e-3
    exploding = _one(_findings(GRADIENT["plain20_linear_large_init"].config()),
                     "gradient_flow_exploding")
    assert exploding["details"]["ratio"] > 1e3
    residual = _one(_findings(GRADIENT["residual_bn20_relu"].config()), "residual_connections")
    assert residual["details"]["shortest_path"] == 2 and residual["details"]["longest_path"] == 20
    assert residual["details"]["gradient_verdict"] == "healthy"
    assert _by_code(_findings(GRADIENT["residual_bn20_relu"].config()), "deep_plain_stack") == []


def test_vgg16_dense_head_share_is_keras_share() -> None:
    fixture = _application("vgg16")
    expected = {layer["name"]: layer["params"] for layer in fixture.expected()["layers"]}
    total = fixture.expected()["totals"]["params"]
    finding = _one(_findings(fixture.config()), "dense_head_dominates")
    head = ["fc1", "fc2", "predictions"]
    assert finding["layers"] == ["flatten", *head]
    share = sum(expected[name] for name in head) / total
    assert finding["details"]["share"] == pytest.approx(share, abs=1e-4)
    assert 0.89 < share < 0.90
    assert f"{share:.1%}" in finding["message"]


def test_vgg16_stages_follow_the_pools_and_the_oracle() -> None:
    fixture = _application("vgg16")
    fields = fixture.expected()["receptive_fields"]
    config = fixture.config()
    finding = _one(_findings(config, input_shape=[*fields["input_size"], 3]), "stages")
    stages = finding["details"]["stages"]
    assert [s["effective_stride"] for s in stages] == [1, 2, 4, 8, 16, 32]
    assert finding["layers"] == [f"block{i}_pool" for i in range(1, 6)]
    assert [s["channels_out"] for s in stages] == [64, 128, 256, 512, 512, 512]
    for stage in stages:
        oracle = fields["layers"][stage["last_layer"]]["axes"][0]["size"]
        assert stage["field_end"] == oracle
    assert stages[-1]["field_end"] == 212


def test_seed_example2_stages_and_field() -> None:
    fixture_dir = FIXTURES_DIR / "seed"
    config = load_config(fixture_dir / "example2.json")
    findings = _findings(config)
    stages = _one(findings, "stages")["details"]["stages"]
    assert [s["effective_stride"] for s in stages] == [1, 2, 4]
    assert [s["field_end"] for s in stages] == [5, 10, 12]
    small = _one(findings, "receptive_field_small")
    assert small["details"]["field"] == [12, 12] and small["details"]["input_size"] == [28, 28]


def test_keras_resnet50_strided_1x1_convolutions_skip_pixels() -> None:
    """Keras ResNet50 (v1) puts the stride-2 in a 1x1 convolution: 3 of 4 positions unseen."""
    finding = _one(_findings(_application("resnet50").config()), "stride_exceeds_kernel")
    assert "conv3_block1_1_conv" in finding["layers"]
    assert "conv3_block1_0_conv" in finding["layers"]
    assert all("block1" in name for name in finding["layers"])


def test_findings_are_json() -> None:
    for fixture in FINDINGS.values():
        json.dumps(_findings(fixture.config()), allow_nan=False)


@pytest.mark.parametrize("stem", ["efficientnetb0", "mobilenetv3small"])
def test_squeeze_and_excitation_gating_is_not_a_shape_mismatch(stem: str) -> None:
    codes = {f["code"] for f in _findings(_application(stem).config())}
    assert "residual_shape_mismatch" not in codes
    assert "saturating_activations_deep" not in codes  # the sigmoid gates are off the path
