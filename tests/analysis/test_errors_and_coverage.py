"""Unreadable configs raise InvalidArchitecture saying what was received; unknown layers are
reported and never counted as zero."""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze
from app.errors import InvalidArchitecture
from tests.analysis.builders import call, functional, input_layer, sequential


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "Received: NoneType"),
        ([], "Received: list"),
        ({"class_name": "Dense", "config": {"units": 3}}, "layers list"),
        ({"class_name": "Sequential", "config": {"layers": "conv"}}, "layers list"),
        (
            sequential([("Conv2D", {"filters": 4, "kernel_size": "three"})], (8, 8, 3)),
            "Conv2D 'l0': kernel_size must be a positive int or tuple of 2. Received: kernel_size='three'",
        ),
        (sequential([("Conv2D", {"filters": -1, "kernel_size": 3})], (8, 8, 3)), "filters must be a positive int"),
        (
            sequential([("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "full"})], (8, 8, 3)),
            "padding must be one of",
        ),
        (sequential([("Conv2D", {"filters": 4, "kernel_size": 9})], (4, 4, 3)), "input is too small"),
        (sequential([("Conv2D", {"filters": 4, "kernel_size": 3})], (8, 3)), "rank 4"),
        (sequential([("Dense", {"units": "ten"})], (8,)), "units must be a positive int. Received: units='ten'"),
        (sequential([("Reshape", {"target_shape": [5, 5]})], (8,)), "total size"),
        (sequential([("Concatenate", {"axis": "x"})], (8,)), "axis must be an int"),
        (
            sequential([{"no": "class"}], (8,))
            if False
            else {"class_name": "Sequential", "config": {"layers": [{"config": {}}]}},
            "no class_name",
        ),
        (
            {
                "class_name": "Sequential",
                "config": {"layers": [{"class_name": "InputLayer", "config": {"batch_shape": [None, "x"]}}]},
            },
            "batch_shape",
        ),
        (
            functional([input_layer("a", (4,)), call("Dense", "d", {"units": 2}, "ghost")], ["a"], ["d"]),
            "does not exist. Received: 'ghost'",
        ),
        (
            functional(
                [input_layer("a", (4,)), call("Dense", "d", {"units": 2}, "e"), call("Dense", "e", {"units": 2}, "d")],
                ["a"],
                ["d"],
            ),
            "cycle",
        ),
        (
            functional(
                [input_layer("a", (4,)), call("Add", "s", {}, "a", "b", as_list=True), input_layer("b", (5,))],
                ["a", "b"],
                ["s"],
            ),
            "incompatible shapes",
        ),
    ],
)
def test_unreadable_configs_raise_invalid_architecture(config: Any, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as error:
        analyze(config)
    assert message in error.value.detail
    assert error.value.status == 422


@pytest.mark.parametrize("input_shape", [[0, 8, 3], ["a"], [8, 8], 5, [True, 8, 3]])
def test_bad_input_shape_override(input_shape: Any) -> None:
    with pytest.raises(InvalidArchitecture, match="input_shape"):
        analyze(sequential([("Conv2D", {"filters": 4, "kernel_size": 3})], (8, 8, 3)), input_shape=input_shape)


JUNK_VALUES: list[Any] = [None, 3, "x", [], {}, [1, "a"], {"a": 1}, -1, 1.5]
JUNK_KEYS = ["filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias", "data_format"]
#: The junk values a Conv2D(filters=4, kernel_size=3) on 8x8x3 accepts, with the output shape
#: and parameters Keras builds for them (checked against Keras in the next test). Every other
#: pair of the 72 is refused: Keras refuses them too, or (use_bias) accepts any truthy value
#: where convlens asks for true or false.
JUNK_ACCEPTED = {
    ("filters", 3): ([None, 6, 6, 3], 84),
    ("kernel_size", 3): ([None, 6, 6, 4], 112),
    ("strides", 3): ([None, 2, 2, 4], 112),
    ("dilation_rate", 3): ([None, 2, 2, 4], 112),
    ("use_bias", None): ([None, 6, 6, 4], 108),  # null is false: no bias, as in Keras
    ("data_format", None): ([None, 6, 6, 4], 112),  # null is the default, channels_last
}


def _junk_configs() -> list[tuple[str, Any, dict[str, Any]]]:
    return [
        (key, value, sequential([("Conv2D", {"filters": 4, "kernel_size": 3, key: value})], (8, 8, 3)))
        for key in JUNK_KEYS
        for value in JUNK_VALUES
    ]


def test_junk_inside_a_layer_config_is_refused_with_the_key_named_or_analysed_as_keras_builds_it() -> None:
    accepted: dict[tuple[str, Any], tuple[Any, Any]] = {}
    for key, value, config in _junk_configs():
        try:
            report = analyze(config)
        except InvalidArchitecture as error:
            assert error.status == 422
            assert error.detail.startswith("Conv2D 'l0': "), error.detail
            assert f"Received: {key}=" in error.detail or key in error.detail, (key, value, error.detail)
            continue
        layer = report["layers"][-1]
        accepted[(key, value)] = (layer["output_shape"], layer["params"])
    assert len(_junk_configs()) == 72
    assert accepted == JUNK_ACCEPTED


@pytest.mark.tensorflow
def test_junk_the_engine_accepts_keras_builds_the_same_way() -> None:
    """Keras is the truth: every junk config the engine analyses, Keras builds with the same output
    shape and parameters; every one Keras refuses, the engine refuses too."""
    import keras

    for key, value, config in _junk_configs():
        try:
            model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(**{"filters": 4, "kernel_size": 3,
                                                                                      key: value})])
        except Exception:  # Keras refuses it: so must the engine
            with pytest.raises(InvalidArchitecture):
                analyze(config)
            continue
        if any(accepted == (key, value) for accepted in JUNK_ACCEPTED):
            assert JUNK_ACCEPTED[(key, value)] == ([None, *model.output_shape[1:]], model.count_params())
        else:  # Keras accepts a truthy use_bias of any type; convlens asks for a boolean
            assert key == "use_bias", (key, value)


def _with_unknown_layer() -> dict:
    return functional(
        [
            input_layer("img", (32, 32, 3)),
            call("Conv2D", "c1", {"filters": 8, "kernel_size": 3, "padding": "same"}, "img"),
            call("MyFancyLayer", "fancy", {"whatever": 1}, "c1"),
            call("Conv2D", "c2", {"filters": 4, "kernel_size": 3, "padding": "same"}, "fancy"),
            call("Conv2D", "side", {"filters": 4, "kernel_size": 1}, "c1"),
        ],
        ["img"],
        ["c2", "side"],
    )


def test_unknown_layer_is_listed_and_its_metrics_marked_partial() -> None:
    report = analyze(_with_unknown_layer())
    coverage = report["coverage"]
    assert coverage["status"] == "partial"
    assert coverage["unsupported_layers"] == [{"name": "fancy", "class_name": "MyFancyLayer"}]
    for metric in ("shapes", "params", "macs", "receptive_field"):
        assert coverage["metrics"][metric]["status"] == "partial"
        assert "MyFancyLayer" in coverage["metrics"][metric]["reason"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    fancy = layers["fancy"]
    assert fancy["supported"] is False
    assert fancy["params"] is None and fancy["macs"] is None and fancy["output_shape"] is None
    # downstream of the unknown layer: unknown, not zero
    assert layers["c2"]["output_shape"] is None
    assert layers["c2"]["params"] is None and layers["c2"]["macs"] is None
    assert layers["c2"]["receptive_field"] is None
    # everything else is still computed
    assert layers["c1"]["params"] == 3 * 3 * 3 * 8 + 8
    assert layers["side"]["params"] == 8 * 4 + 4
    assert layers["side"]["macs"] == 32 * 32 * 8 * 4
    assert report["summary"]["total_params"] == 224 + 36
    assert set(report["summary"]["incomplete"]) >= {"params", "macs"}


def test_complete_model_says_complete() -> None:
    report = analyze(
        sequential([("Conv2D", {"filters": 4, "kernel_size": 3}), ("Flatten", {}), ("Dense", {"units": 2})], (8, 8, 3))
    )
    metrics = report["coverage"]["metrics"]
    for metric in ("shapes", "params", "macs", "receptive_field", "activation_bytes"):
        assert metrics[metric]["status"] == "complete"
    assert report["coverage"]["unsupported_layers"] == []
    assert report["summary"]["incomplete"] == []


def test_unknown_spatial_size_marks_macs_partial_and_override_completes_it() -> None:
    config = sequential(
        [("Conv2D", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"})], (None, None, 3)
    )
    report = analyze(config)
    assert report["coverage"]["metrics"]["macs"]["status"] == "partial"
    assert report["layers"][0]["macs"] is None
    field = report["layers"][0]["receptive_field"]["axes"][0]
    assert field == {"size": 3, "stride": 2, "padding": None}
    report = analyze(config, input_shape=[9, 9, 3])
    assert report["layers"][0]["output_shape"] == [None, 5, 5, 4]
    assert report["layers"][0]["macs"] == 5 * 5 * 9 * 3 * 4
    assert report["layers"][0]["receptive_field"]["axes"][0] == {"size": 3, "stride": 2, "padding": 1}
    assert report["coverage"]["metrics"]["macs"]["status"] == "complete"


@pytest.mark.parametrize("tensor_index", [1, -1, 7])
def test_a_tensor_a_layer_does_not_output_is_refused_with_the_count(tensor_index: int) -> None:
    """Consuming output 1 (or -1: not "the last one") of a one-output layer is a readable
    error naming the layer and how many outputs it has."""
    consumer = call("ReLU", "act", {}, "conv")
    consumer["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["conv", 0, tensor_index]
    config = functional([input_layer("x", (8, 8, 3)),
                         call("Conv2D", "conv", {"filters": 4, "kernel_size": 3}, "x"),
                         consumer], ["x"], ["act"])
    with pytest.raises(InvalidArchitecture,
                       match=rf"ReLU 'act' consumes output {tensor_index} of 'conv', "
                             r"which has 1 output\(s\)"):
        analyze(config)


def test_a_shared_layers_second_call_passes_on_its_own_field() -> None:
    """A layer called twice: what consumes its second call sees the second call's field (the
    same 3x3 convolution applied after a stride-2 pooling has a field twice as wide)."""
    shared = call("Conv2D", "shared", {"filters": 3, "kernel_size": 3, "padding": "same"}, "x")
    pooled = call("MaxPooling2D", "pool", {"pool_size": 2}, "x")
    shared["inbound_nodes"].append({"args": [{"class_name": "__keras_tensor__", "config": {
        "shape": [None, 8, 8, 3], "dtype": "float32", "keras_history": ["pool", 0, 0]}}],
        "kwargs": {}})
    after_first = call("ReLU", "first", {}, "shared")
    after_second = call("ReLU", "second", {}, "shared")
    after_second["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["shared", 1, 0]
    config = functional([input_layer("x", (16, 16, 3)), pooled, shared, after_first,
                         after_second], ["x"], ["first", "second"])
    report = analyze(config)
    fields = {layer["name"]: layer["receptive_field"]["axes"][0] for layer in report["layers"]}
    assert fields["first"] == {"size": 3, "stride": 1, "padding": 1}
    assert fields["second"] == {"size": 6, "stride": 2, "padding": 2}
    assert report["summary"]["output_shapes"] == [[None, 16, 16, 3], [None, 8, 8, 3]]
