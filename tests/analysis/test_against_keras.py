"""The engine against Keras itself: every layer's output shape and parameters, the totals, and
the MACs of weighted layers against closed formulas and TensorFlow's profiler.

The truth comes from ``tests/fixtures`` (written by ``python -m tests.fixtures.generate`` from
real Keras 3 and tf_keras models), so these tests run without TensorFlow. The one test that
needs TensorFlow regenerates a small fixture in-process and checks the stored one is current.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.analysis import analyze
from app.analysis.rules import traits_of
from app.analysis.traits import Trait
from tests.fixtures import builders
from tests.fixtures.load import (
    FIXTURES_DIR,
    ModelFixture,
    application_fixtures,
    load_expected,
    seed_fixtures,
    small_fixtures,
)

ALL_FIXTURES = (seed_fixtures() + application_fixtures()
                + list(small_fixtures("gradient").values())
                + list(small_fixtures("findings").values()))



def formula_kind(class_name: str) -> str | None:
    """Which closed formula counts a layer's MACs, from the traits its rule declares (None:
    not a layer whose MACs the profiler's convolution and matmul ops carry)."""
    traits = traits_of(class_name)
    for trait, kind in ((Trait.TRANSPOSED, "transposed"), (Trait.SEPARABLE, "separable"),
                        (Trait.DEPTHWISE, "depthwise"), (Trait.SPATIAL_KERNEL, "convolution"),
                        (Trait.DENSE, "dense")):
        if trait in traits and Trait.RECURRENT not in traits:
            return kind
    return None


def is_weighted(class_name: str) -> bool:
    return formula_kind(class_name) is not None


# TensorFlow op types that carry the multiply-accumulates of those layers.
PROFILED_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2",
                "Conv2DBackpropInput")


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    """One engine report per fixture, computed once."""
    return {}


def _report(fixture: ModelFixture, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if fixture.id not in cache:
        cache[fixture.id] = analyze(fixture.config())
    return cache[fixture.id]


def test_every_application_is_stored_in_both_formats() -> None:
    stored = {fixture.id for fixture in application_fixtures()}
    wanted = {f"{stem}-{fmt}" for stem in builders.APPLICATIONS.values()
              for fmt in ("keras3", "tfkeras")}
    assert wanted - stored == set(), "run `python -m tests.fixtures.generate` to add them"
    for fixture in application_fixtures():
        assert fixture.config_path.exists(), fixture.config_path


def test_seed_totals_are_the_seeds() -> None:
    for number, total in builders.SEED_PARAM_TOTALS.items():
        for suffix in ("", ".tfkeras"):
            path = FIXTURES_DIR / "seed" / f"example{number}{suffix}.expected.json"
            expected = load_expected(path)
            assert expected["totals"]["params"] == total


@pytest.mark.parametrize("fixture", ALL_FIXTURES, ids=lambda f: f.id)
def test_layers_and_totals_equal_keras(fixture: ModelFixture, reports: dict) -> None:
    expected = fixture.expected()
    report = _report(fixture, reports)
    got_layers = report["layers"]
    want_names = [layer["name"] for layer in expected["layers"]]
    assert [layer["name"] for layer in got_layers] == want_names
    mismatches = []
    for want, got in zip(expected["layers"], got_layers, strict=True):
        for key in ("class_name", "output_shape", "params", "trainable_params",
                    "non_trainable_params"):
            if got.get(key) != want[key]:
                mismatches.append(
                    f"{want['name']}.{key}: engine {got.get(key)!r}, keras {want[key]!r}")
    assert mismatches == [], f"{len(mismatches)} mismatches, first: {mismatches[:10]}"
    summary = report["summary"]
    assert summary["total_params"] == expected["totals"]["params"]
    assert summary["trainable_params"] == expected["totals"]["trainable_params"]
    assert summary["non_trainable_params"] == expected["totals"]["non_trainable_params"]
    assert summary["input_shapes"] == expected["input_shapes"]
    assert summary["output_shapes"] == expected["output_shapes"]
    assert summary["layer_count"] == len(expected["layers"])
    assert report["coverage"]["unsupported_layers"] == []


# --------------------------------------------------------------------------------------------
# MACs: closed formulas, on every weighted layer of every fixture
# --------------------------------------------------------------------------------------------


def _ints(value: Any, rank: int) -> list[int]:
    return [value] * rank if isinstance(value, int) else list(value)


def closed_form_macs(class_name: str, config: dict[str, Any], input_shape: list[int],
                     output_shape: list[int]) -> int:
    """Multiply-accumulates of one call, biases excluded (TensorFlow's convention).

    Conv: out_positions x C_out x (kernel volume x C_in / groups); depthwise: out_positions x
    C_in x multiplier x kernel volume; separable: depthwise at the strided positions plus the
    1x1 pointwise; transposed: in_positions x C_in x kernel volume x C_out; dense: units x
    input features x leading positions.
    """
    channels_first = config.get("data_format") == "channels_first"
    kind = formula_kind(class_name)
    if kind == "dense":
        return math.prod(input_shape[1:]) * int(config["units"])
    spatial_in = input_shape[2:] if channels_first else input_shape[1:-1]
    spatial_out = output_shape[2:] if channels_first else output_shape[1:-1]
    c_in = input_shape[1] if channels_first else input_shape[-1]
    c_out = output_shape[1] if channels_first else output_shape[-1]
    kernel = math.prod(_ints(config["kernel_size"], len(spatial_in)))
    if kind == "convolution":
        return math.prod(spatial_out) * c_out * kernel * c_in // int(config.get("groups", 1) or 1)
    if kind == "depthwise":
        return math.prod(spatial_out) * c_in * int(config.get("depth_multiplier", 1)) * kernel
    if kind == "separable":
        depth = c_in * int(config.get("depth_multiplier", 1))
        return math.prod(spatial_out) * (depth * kernel + depth * c_out)
    if kind == "transposed":
        return math.prod(spatial_in) * c_in * kernel * c_out
    raise AssertionError(class_name)


def _layer_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {layer["config"]["name"]: layer["config"] for layer in config["config"]["layers"]}


def _recorded_input_shapes(config: dict[str, Any]) -> dict[str, list[int | None]]:
    """Keras 3 records the shape of each call's input tensors in ``inbound_nodes``; the first
    one, per layer (tf_keras configs do not record them)."""
    found: dict[str, list[int | None]] = {}
    for layer in config["config"]["layers"]:
        for node in layer.get("inbound_nodes") or []:
            args = node.get("args") if isinstance(node, dict) else None
            first = args[0] if args else None
            if isinstance(first, list):
                first = first[0] if first else None
            if isinstance(first, dict) and first.get("class_name") == "__keras_tensor__":
                found[layer["config"]["name"]] = first["config"]["shape"]
            break
    return found


@pytest.mark.parametrize("fixture", ALL_FIXTURES, ids=lambda f: f.id)
def test_weighted_layer_macs_match_closed_formulas(fixture: ModelFixture, reports: dict) -> None:
    expected = fixture.expected()
    report = _report(fixture, reports)
    shapes = {layer["name"]: layer["output_shape"] for layer in expected["layers"]}
    configs = _layer_configs(fixture.config())
    recorded = _recorded_input_shapes(fixture.config())
    # The implicit InputLayer of a Sequential model is not in model.layers.
    declared_inputs = []
    for layer in fixture.config()["config"]["layers"]:
        if layer["class_name"] == "InputLayer":
            shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
            shapes.setdefault(layer["config"]["name"], shape)
            declared_inputs.append(shape)
    checked, mismatches = 0, []
    for layer in report["layers"]:
        if not is_weighted(layer["class_name"]):
            continue
        if layer["name"] in recorded:
            input_shape = recorded[layer["name"]]
        else:
            input_shape = shapes[layer["inbound"][0]] if layer["inbound"] else declared_inputs[0]
        if None in input_shape[1:] or None in shapes[layer["name"]][1:]:
            # Unknown spatial size (e.g. MobileNetV3's default input): no number is invented.
            if layer["macs"] is not None:
                mismatches.append(f"{layer['name']}: engine {layer['macs']} for unknown shapes")
            checked += 1
            continue
        want = closed_form_macs(layer["class_name"], configs[layer["name"]], input_shape,
                                shapes[layer["name"]])
        checked += 1
        if layer["macs"] != want:
            mismatches.append(f"{layer['name']} ({layer['class_name']}): engine {layer['macs']}, "
                              f"formula {want}")
    assert checked > 0 or not any(
        is_weighted(layer["class_name"]) for layer in expected["layers"])
    assert mismatches == [], f"{len(mismatches)} mismatches, first: {mismatches[:10]}"


PROFILED = [fixture for fixture in application_fixtures()
            if "tensorflow_profile" in fixture.expected()]


def test_enough_models_are_profiled() -> None:
    assert len(PROFILED) >= 3


@pytest.mark.parametrize("fixture", PROFILED, ids=lambda f: f.id)
def test_macs_agree_with_tensorflow_profiler(fixture: ModelFixture, reports: dict) -> None:
    """Engine MACs x 2 on convolution/depthwise/separable/dense layers equals the profiler's
    Conv2D + DepthwiseConv2dNative + MatMul floating-point operations (batch 1)."""
    profile = fixture.expected()["tensorflow_profile"]["float_ops_by_op_type"]
    report = _report(fixture, reports)
    engine_flops = 2 * sum(layer["macs"] for layer in report["layers"]
                           if is_weighted(layer["class_name"]))
    profiler_flops = sum(profile.get(op, 0) for op in PROFILED_OPS)
    assert engine_flops == profiler_flops
    # The total may add element-wise work (normalization, pooling, merges), never less.
    assert report["summary"]["flops"] == 2 * report["summary"]["macs"]
    assert report["summary"]["macs"] * 2 >= profiler_flops


# --------------------------------------------------------------------------------------------
# The fixtures themselves are current (needs TensorFlow)
# --------------------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_stored_fixture_is_fresh(tmp_path: Any) -> None:
    """Rebuild the seed's example 2 with Keras now and compare with the stored truth."""
    import json

    keras = pytest.importorskip("keras")
    from tests.fixtures import oracle
    from tests.fixtures.generate import _fresh, keras_record

    _fresh(keras)
    model = builders.build_seed_example(keras, 2)
    stored = load_expected(FIXTURES_DIR / "seed" / "example2.expected.json")
    record = keras_record(model, fmt="keras3", source=stored["source"])
    for key in ("totals", "input_shapes", "output_shapes", "layers", "model_name"):
        assert record[key] == stored[key], key
    stored_config = json.loads((FIXTURES_DIR / "seed" / "example2.json").read_text())
    assert json.loads(model.to_json())["config"]["layers"] == stored_config["config"]["layers"]
    fields = oracle.receptive_fields(json.loads(model.to_json()))
    assert fields["input_size"] == stored["receptive_fields"]["input_size"]
    assert {k: v["axes"] for k, v in fields["layers"].items()} == {
        k: v["axes"] for k, v in stored["receptive_fields"]["layers"].items()}
