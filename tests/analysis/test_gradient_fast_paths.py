"""The gradient-flow prediction's shortcuts give, bit for bit, what the general code gives."""

from __future__ import annotations

import json
import lzma
import random
from typing import Any

import pytest

from app.analysis import analyze, analyze_graph, build_graph, gradient_flow
from app.analysis.gradient_flow import (
    _LOG_FLOOR,
    _apply_activation,
    _centred_rectified,
    _log_sum2,
    _rectified,
    _relu_of_pre_activation,
    _Stats,
)
from tests.analysis.builders import call, functional, input_layer, tensor
from tests.security.applications_configs import STORE


@pytest.fixture(scope="module")
def applications() -> dict[str, Any]:
    with lzma.open(STORE / "applications-keras.json.xz") as handle:
        configs: dict[str, Any] = json.loads(handle.read())["configs"]
    return configs


def test_the_relu_of_a_centred_normal_is_the_general_rectification() -> None:
    rng = random.Random(7)
    pairs = [(rng.uniform(-320.0, 320.0), rng.uniform(-320.0, 320.0)) for _ in range(2000)]
    pairs += [(0.0, _LOG_FLOOR), (_LOG_FLOOR, _LOG_FLOOR), (99.99, -5.0), (100.0, _LOG_FLOOR),
              (-299.9, _LOG_FLOOR), (_LOG_FLOOR, -299.99), (float("nan"), 0.0)]
    for fluct, offset in pairs:
        stats = _Stats(fluct, offset, _LOG_FLOOR)
        spread = _log_sum2(stats.fluct, stats.offset)
        fast, general = _centred_rectified(spread), _rectified(stats, spread)
        assert repr(fast) == repr(general), (fluct, offset)


def test_the_relu_of_a_pre_activation_is_the_general_activation() -> None:
    rng = random.Random(11)
    pairs = [(rng.uniform(-320.0, 320.0), rng.uniform(-320.0, 320.0)) for _ in range(2000)]
    pairs += [(0.0, _LOG_FLOOR), (_LOG_FLOOR, _LOG_FLOOR), (99.99, -5.0), (100.0, _LOG_FLOOR),
              (-299.9, _LOG_FLOOR), (_LOG_FLOOR, -299.99), (-400.0, _LOG_FLOOR),
              (float("nan"), 0.0), (0.0, float("nan"))]
    for fluct, offset in pairs:
        notes: list[str] = []
        general = _apply_activation("relu", _Stats(fluct, offset, _LOG_FLOOR), "x", notes)
        fast = _relu_of_pre_activation(fluct, offset, _log_sum2(fluct, offset))
        assert repr(fast) == repr(general) and not notes, (fluct, offset)


def _shared_layer_model() -> dict[str, Any]:
    """A convolution called twice, the second time on its own output: a layer that reads a
    later one (itself)."""
    conv = call("Conv2D", "shared", {"filters": 4, "kernel_size": 3, "padding": "same",
                                     "activation": "relu"}, "x")
    conv["inbound_nodes"].append({"args": [tensor("shared", 0)], "kwargs": {}})
    gap = call("GlobalAveragePooling2D", "gap", {}, "shared")
    gap["inbound_nodes"][0]["args"] = [tensor("shared", 1)]
    return functional([input_layer("x", (8, 8, 4)), conv, gap,
                       call("Dense", "head", {"units": 3}, "gap")], ["x"], ["head"])


@pytest.mark.parametrize("name", ["ResNet50", "DenseNet121", "InceptionV3", "MobileNetV2",
                                  "EfficientNetB0"])
def test_the_averaging_found_with_the_paths_is_global_averaging(
        applications: dict[str, Any], name: str) -> None:
    result = analyze_graph(build_graph(applications[name]))
    _, averaged = gradient_flow._paths(result, set(), gradient_flow._places(result))
    expected = gradient_flow.global_averaging(result)
    assert averaged == [expected[layer.name] for layer in result.layers]
    assert max(averaged) > 1


def test_a_layer_reading_a_later_one_leaves_the_averaging_to_global_averaging() -> None:
    result = analyze_graph(build_graph(_shared_layer_model()))
    places = gradient_flow._places(result)
    assert gradient_flow._paths(result, set(), places)[1] is None
    assert analyze(_shared_layer_model())["gradient_flow"]["predicted"]["layers"]


def test_the_merges_candidates_are_the_layers_reading_several_layers(
        applications: dict[str, Any]) -> None:
    result = analyze_graph(build_graph(applications["ResNet50"]))
    several = gradient_flow._places(result)[2]
    assert several == [place for place, layer in enumerate(result.layers)
                       if len(layer.inbound) > 1 and len(set(layer.inbound)) > 1]
    assert several
