"""One gradient quantity for the prediction and the measurement, the verdict rule, and how a
measurement meets the prediction in a report (no TensorFlow: the measured side is in
tests/worker/test_gradients.py).
"""

from __future__ import annotations

import json
import lzma
import math
from typing import Any

import pytest

from app.analysis import analyze, analyze_graph, build_graph, gradient_flow
from app.analysis.gradient_flow import (
    QUANTITY,
    attach_measurement,
    classify,
    log10_layer_gradient_norm,
    relative_profile,
)
from app.analysis.schema import validate_report
from tests.analysis.builders import call, functional, input_layer
from tests.fixtures.load import small_fixtures
from tests.security.applications_configs import STORE

GRADIENT = small_fixtures("gradient")
FAMOUS = ["VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2",
          "ResNet152V2", "InceptionV3", "InceptionResNetV2", "Xception", "MobileNet",
          "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "DenseNet121", "DenseNet169",
          "DenseNet201", "NASNetMobile", "EfficientNetB0", "EfficientNetB3", "EfficientNetV2B0",
          "EfficientNetV2S", "ConvNeXtTiny", "ConvNeXtBase"]


@pytest.fixture(scope="module")
def applications() -> dict[str, Any]:
    with lzma.open(STORE / "applications-keras.json.xz") as handle:
        configs: dict[str, Any] = json.loads(handle.read())["configs"]
    return configs


def test_the_prediction_computes_the_quantity_through_its_one_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Doubling the definition doubles every predicted per-layer log value: the prediction
    has no second formula (the measurement's side is checked in tests/worker)."""
    config = GRADIENT["plain20_relu_he"].config()
    before = analyze(config)["gradient_flow"]["predicted"]
    calls = []
    original = gradient_flow.log10_layer_gradient_norm

    def spy(log10_mean_square: float, positions: int, averaged: int = 1) -> float:
        calls.append(positions)
        return 2.0 * original(log10_mean_square, positions, averaged)

    monkeypatch.setattr(gradient_flow, "log10_layer_gradient_norm", spy)
    after = analyze(config)["gradient_flow"]["predicted"]
    assert len(calls) == before["weighted_layers"] == 20
    assert calls[0] == 32 * 32 and calls[-1] == 1  # conv1 at 32x32 positions, the classifier
    for old, new in zip(before["layers"], after["layers"], strict=True):
        assert new["log10_relative_gradient_scale"] == pytest.approx(
            2.0 * old["log10_relative_gradient_scale"], abs=1e-3)


def test_the_quantity_is_named_and_defined_once_in_the_report() -> None:
    report = analyze(GRADIENT["plain20_sigmoid"].config())
    flow = report["gradient_flow"]
    assert flow["quantity"] == QUANTITY
    predicted = flow["predicted"]
    assert predicted["quantity"] == QUANTITY["name"]
    # per_layer: weighted layers only, by name, in graph order, relative to the last.
    assert list(predicted["per_layer"]) == [entry["name"] for entry in predicted["layers"]]
    assert list(predicted["per_layer"])[0] == "conv1"
    assert predicted["per_layer"]["classifier"] == 1.0
    assert predicted["per_layer"]["conv1"] == pytest.approx(predicted["ratio"])
    validate_report(report)


def test_the_ratio_does_not_move_with_resolution_changes_that_keep_the_gradient() -> None:
    """Max pooling and a stride-2 convolution route each output's gradient to fewer input
    positions; per position it shrinks, summed over positions (the quantity) it does not.
    (1x1 kernels: a wider kernel reads zero padding at the borders, a share that does depend
    on the map's size; tested below.)"""
    def chain(*middle: dict[str, Any]) -> dict[str, Any]:
        conv = {"filters": 8, "kernel_size": 1, "padding": "same", "activation": "linear",
                "kernel_initializer": "he_normal"}
        layers = [input_layer("in", (16, 16, 8)), call("Conv2D", "first", conv, "in")]
        previous = "first"
        for entry in middle:
            layers.append(entry | {"inbound_nodes": [{"args": [
                {"class_name": "__keras_tensor__", "config": {"keras_history": [previous, 0, 0]}}
            ], "kwargs": {}}]})
            previous = entry["name"]
        layers.append(call("Conv2D", "last", conv, previous))
        return functional(layers, ["in"], ["last"])

    plain = analyze(chain())["gradient_flow"]["predicted"]["ratio"]
    pooled = analyze(chain({"class_name": "MaxPooling2D", "name": "pool",
                            "config": {"name": "pool", "pool_size": 2}}))
    assert pooled["gradient_flow"]["predicted"]["ratio"] == pytest.approx(plain, rel=1e-6)


def test_zero_padding_at_small_maps_shrinks_the_backward_fan() -> None:
    """A 3x3 'same' convolution on a 2x2 map reads 4 of its 9 taps at every output: its
    backward fan (and forward variance) is 4/9 of the nominal, per layer, which on a 64x64 map
    is almost 1. Three such layers between the first and the last: (4/9)^(3/2) in the quantity;
    an explicit ZeroPadding2D before a 'valid' convolution is the same border."""
    def chain(side: int, explicit: bool = False) -> dict[str, Any]:
        conv = {"filters": 8, "kernel_size": 3, "padding": "valid" if explicit else "same",
                "activation": "linear", "kernel_initializer": "he_normal"}
        layers = [input_layer("in", (side, side, 8))]
        previous = "in"
        for index in range(4):
            if explicit:
                layers.append(call("ZeroPadding2D", f"pad{index}", {"padding": 1}, previous))
                previous = f"pad{index}"
            layers.append(call("Conv2D", f"conv{index}", conv, previous))
            previous = f"conv{index}"
        return functional(layers, ["in"], [previous])

    wide = analyze(chain(64))["gradient_flow"]["predicted"]["log10_ratio"]
    small = analyze(chain(2))["gradient_flow"]["predicted"]["log10_ratio"]
    padded = analyze(chain(2, explicit=True))["gradient_flow"]["predicted"]["log10_ratio"]
    edge = gradient_flow._border_axis(64, 64, 3, 1, 1, 1)[0] ** 2
    assert small - wide == pytest.approx(1.5 * math.log10((4 / 9) / edge), abs=1e-3)
    assert padded == pytest.approx(small, abs=1e-3)


def test_relative_profile_is_the_same_arithmetic_on_both_sides() -> None:
    profile = relative_profile([("a", 8.0), ("b", None), ("c", 2.0)])
    assert profile["per_layer"] == {"a": 4.0, "b": None, "c": 1.0}
    assert profile["ratio"] == 4.0 and profile["first_layer"] == "a"
    assert relative_profile([])["ratio"] is None
    assert log10_layer_gradient_norm(0.0, 100) == 1.0


@pytest.mark.parametrize(("ratio", "normalized", "verdict"), [
    (gradient_flow.VANISHING_RATIO / 10, False, "vanishing"),
    (gradient_flow.VANISHING_RATIO / 10, True, "vanishing"),
    (1.0, False, "healthy"),
    (gradient_flow.EXPLODING_RATIO * 10, False, "exploding"),
    (gradient_flow.EXPLODING_RATIO * 10, True, "healthy"),
    (gradient_flow.NORMALIZED_EXPLODING_RATIO * 10, True, "exploding"),
    (None, False, None),
])
def test_the_verdict_rule(ratio: float | None, normalized: bool, verdict: str | None) -> None:
    assert classify(ratio, normalized=normalized) == verdict


def test_plain_sigmoid_stack_vanishes_and_its_residual_batchnorm_twin_is_healthy() -> None:
    plain = analyze(GRADIENT["plain20_sigmoid"].config())["gradient_flow"]["predicted"]
    twin = analyze(GRADIENT["residual_bn20_sigmoid"].config())["gradient_flow"]["predicted"]
    assert plain["verdict"] == "vanishing" and plain["ratio"] < 1e-6
    assert twin["verdict"] == "healthy" and twin["normalized"]
    assert twin["weighted_layers"] == plain["weighted_layers"] == 20


@pytest.mark.parametrize("name", FAMOUS)
def test_networks_that_train_are_neither_vanishing_nor_exploding(
    applications: dict[str, Any], name: str
) -> None:
    report = analyze(applications[name])
    predicted = report["gradient_flow"]["predicted"]
    assert predicted["verdict"] == "healthy", (name, predicted["ratio"])
    codes = {finding["code"] for finding in report["findings"]}
    assert not codes & {"gradient_flow_vanishing", "gradient_flow_exploding"}
    if predicted["growth_under_normalization"]:  # theory's growth, said at info severity
        growth = [f for f in report["findings"] if f["code"] == "gradient_flow_normalization_growth"]
        assert [f["severity"] for f in growth] == ["info"]


def test_growth_under_normalization_is_an_info_finding(applications: dict[str, Any]) -> None:
    report = analyze(applications["ResNet152"])
    predicted = report["gradient_flow"]["predicted"]
    assert predicted["ratio"] > gradient_flow.EXPLODING_RATIO
    assert predicted["verdict"] == "healthy" and predicted["growth_under_normalization"]
    (finding,) = [f for f in report["findings"] if f["code"] == "gradient_flow_normalization_growth"]
    assert finding["severity"] == "info" and "warm-up" in finding["message"]


# -- a measurement meets the prediction --------------------------------------------------------


def _measured(per_layer: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {"status": "measured", "per_layer": per_layer, "ratio": None,
            "non_finite_gradients": False, "verdict": None, **extra}


def test_a_contradicting_measurement_marks_the_finding_and_the_disagreement() -> None:
    report = analyze(GRADIENT["plain20_sigmoid"].config())
    names = list(report["gradient_flow"]["predicted"]["per_layer"])
    healthy = {name: 1.0 for name in names}
    merged = attach_measurement(report, _measured(healthy))
    flow = merged["gradient_flow"]
    assert flow["measured"]["verdict"] == "healthy" and flow["measured"]["ratio"] == 1.0
    assert flow["agreement"] == "disagree"
    (finding,) = [f for f in merged["findings"] if f["code"] == "gradient_flow_vanishing"]
    assert finding["measurement"] == "contradicted"
    assert "contradicts" in finding["measurement_note"]
    assert flow["comparison"]["layers"] == 20 and flow["comparison"]["within_factor"] < 0.5
    # The stored report is not changed in place, and a second measurement replaces the first.
    assert "measurement" not in [f for f in report["findings"]
                                 if f["code"] == "gradient_flow_vanishing"][0]
    again = attach_measurement(merged, _measured(
        {name: value for name, value in report["gradient_flow"]["predicted"]["per_layer"].items()}))
    assert again["gradient_flow"]["agreement"] == "agree"
    assert again["gradient_flow"]["comparison"]["median_factor"] == 1.0
    (finding,) = [f for f in again["findings"] if f["code"] == "gradient_flow_vanishing"]
    assert finding["measurement"] == "confirmed"


def test_the_measured_verdict_follows_the_predictions_rule_and_flag(
    applications: dict[str, Any]
) -> None:
    report = analyze(applications["ResNet50"])
    predicted = report["gradient_flow"]["predicted"]
    assert predicted["normalized"]
    names = list(predicted["per_layer"])
    grown = {name: 1.0 for name in names} | {names[0]: gradient_flow.EXPLODING_RATIO * 5}
    merged = attach_measurement(report, _measured(grown))["gradient_flow"]
    assert merged["measured"]["verdict"] == "healthy"  # normalization: the wider band


def test_a_failed_measurement_leaves_the_prediction_standing() -> None:
    report = analyze(GRADIENT["plain20_sigmoid"].config())
    merged = attach_measurement(report, {"status": "failed", "verdict": None,
                                         "reason": "the TensorFlow process was killed",
                                         "error": None})
    assert merged["gradient_flow"]["agreement"] is None
    finding = [f for f in merged["findings"] if f["code"] == "gradient_flow_vanishing"][0]
    assert "measurement" not in finding
    validate_report(merged)


# -- skip connections: linear bookkeeping, same answer as reachability ------------------------


def _bypassing_by_reachability(result: Any, names: list[str]) -> dict[str, list[str]]:
    """The definition, checked the slow way: merges that a layer reaches through some input
    and not through all of them."""
    successors = result.successors()
    order = [layer.name for layer in result.layers]
    reach: dict[str, set[str]] = {}
    for name in reversed(order):
        found = {name}
        for successor in successors.get(name, []):
            found |= reach[successor]
        reach[name] = found
    merges = [layer for layer in result.layers
              if layer.merge in gradient_flow.SKIP_MERGES and len(set(layer.inbound)) > 1]
    out = {}
    for name in names:
        out[name] = [m.name for m in merges
                     if any(source in reach[name] for source in set(m.inbound))
                     and not all(source in reach[name] for source in set(m.inbound))]
    return out


@pytest.mark.parametrize("name", ["ResNet50", "DenseNet121", "InceptionV3", "MobileNetV2",
                                  "EfficientNetB0"])
def test_skip_bookkeeping_agrees_with_reachability(applications: dict[str, Any], name: str) -> None:
    result = analyze_graph(build_graph(applications[name]))
    names = [layer.name for layer in result.layers]
    fast = gradient_flow._bypassing_skips(result, names)
    assert fast == _bypassing_by_reachability(result, names)
    assert any(fast.values())


@pytest.mark.parametrize("name", ["ResNet50", "DenseNet121", "InceptionV3", "InceptionResNetV2",
                                  "MobileNetV3Small", "NASNetMobile", "EfficientNetB0"])
@pytest.mark.parametrize("listed", [None, 2])
def test_the_walks_and_the_one_pass_find_the_same_skips(
    applications: dict[str, Any], name: str, listed: int | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The merges' regions walked one by one (chains of blocks) or found in one backward pass
    (NASNet's overlapping cells): the same lists, cut at ``listed``, and counts."""
    result = analyze_graph(build_graph(applications[name]))
    places = gradient_flow._places(result)
    found = []
    for means in (gradient_flow._walk_merge_regions, gradient_flow._merge_regions_in_one_pass):
        monkeypatch.setattr(gradient_flow, "_walk_merge_regions", means)
        monkeypatch.setattr(gradient_flow, "_merge_regions_in_one_pass", means)
        wanted: list[list[str] | None] = [[] if layer.fan_in is not None else None
                                          for layer in result.layers]
        counts = gradient_flow._bypassing_skips_by_place(result, wanted, places, listed=listed)
        found.append((wanted, counts))
    assert found[0] == found[1]
    assert any(found[0][1])


def test_inception_resnet_scaled_residual_sums_do_not_compound(applications: dict[str, Any]) -> None:
    """Its CustomScaleLayer adds 0.17 x the branch to the shortcut: not a scale of the sum."""
    predicted = analyze(applications["InceptionResNetV2"])["gradient_flow"]["predicted"]
    assert math.isfinite(predicted["log10_ratio"]) and abs(predicted["log10_ratio"]) < 3
