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


def test_junk_inside_a_layer_config_never_escapes_as_an_unexpected_exception() -> None:
    junk: list[Any] = [None, 3, "x", [], {}, [1, "a"], {"a": 1}, -1, 1.5]
    keys = ["filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias", "data_format"]
    for key in keys:
        for value in junk:
            config = sequential([("Conv2D", {"filters": 4, "kernel_size": 3, key: value})], (8, 8, 3))
            try:
                analyze(config)
            except InvalidArchitecture:
                pass


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
