"""Reading Keras 3 and tf.keras 2.x configs: nested models (called twice, frozen), shared layers,
several inputs and outputs. The stored configs and numbers come from Keras (see data/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.analysis import analyze, build_graph

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("fmt", ["keras3", "tf_keras"])
def test_nested_shared_multi_io_model_matches_keras(fmt: str) -> None:
    stored = json.loads((DATA / f"nested_{fmt}.json").read_text())
    report = analyze(stored["config"])
    got = [
        {
            "name": layer_["name"],
            "output_shape": layer_["output_shape"],
            "params": layer_["params"],
            "trainable_params": layer_["trainable_params"],
        }
        for layer_ in report["layers"]
    ]
    assert got == stored["layers"]
    assert report["summary"]["total_params"] == stored["total_params"]
    assert report["summary"]["trainable_params"] == stored["trainable_params"]
    assert report["summary"]["output_shapes"] == stored["output_shapes"]
    layers = {layer_["name"]: layer_ for layer_ in report["layers"]}
    assert layers["shared"]["calls"] == 2 and layers["fun"]["calls"] == 2
    assert layers["shared"]["inbound"] == ["img", "shared"]
    # a nested model carries its own layers; the frozen Sequential's weights are non-trainable
    assert [layer_["name"] for layer_ in layers["seq"]["layers"]] == ["sd", "sbn"]
    assert layers["seq"]["layers"][1]["non_trainable_params"] == 12
    # the shared conv is counted once in params, twice in MACs
    assert layers["shared"]["macs"] == 2 * 16 * 16 * 27 * 3


def test_graph_keeps_calls_and_sequential_input_unlisted() -> None:
    stored = json.loads((DATA / "nested_tf_keras.json").read_text())
    graph = build_graph(stored["config"])
    assert graph.format == "tf_keras"
    shared = graph.layer("shared")
    assert [c.inputs[0].layer for c in shared.calls] == ["img", "shared"]
    seq = graph.layer("seq").subgraph
    assert seq is not None and not seq.layers[0].listed and seq.layers[0].class_name == "InputLayer"


def test_tf_keras_sequential_with_batch_input_shape_on_first_layer() -> None:
    config = {
        "class_name": "Sequential",
        "keras_version": "2.15.0",
        "config": {
            "name": "s",
            "layers": [
                {
                    "class_name": "Conv2D",
                    "config": {
                        "name": "c",
                        "filters": 2,
                        "kernel_size": [3, 3],
                        "batch_input_shape": [None, 8, 8, 1],
                        "dtype": "float32",
                    },
                },
                {"class_name": "Flatten", "config": {"name": "f"}},
            ],
        },
    }
    report = analyze(config)
    assert [layer_["name"] for layer_ in report["layers"]] == ["c", "f"]
    assert report["layers"][1]["output_shape"] == [None, 72]
    assert report["summary"]["input_shapes"] == [[None, 8, 8, 1]]


def test_mixed_precision_policy_halves_activation_bytes() -> None:
    def model(policy: object) -> dict:
        return {
            "class_name": "Sequential",
            "config": {
                "name": "s",
                "layers": [
                    {"class_name": "InputLayer", "config": {"batch_shape": [None, 4, 4, 1]}},
                    {"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 1, "dtype": policy}},
                ],
            },
        }

    full = analyze(model("float32"))["layers"][0]
    half = analyze(model({"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}))["layers"][0]
    assert full["activation_bytes"] == 4 * 4 * 2 * 4
    assert half["activation_bytes"] == full["activation_bytes"] // 2


def test_every_reference_names_its_layer_with_the_layers_own_string() -> None:
    """Names read from ``keras_history`` are equal to the layers' names but other string
    objects; the parser makes them the same objects, so the tens of thousands of lookups by
    name in a large graph's walk, prediction and findings match on identity."""
    from tests.analysis.builders import call, functional, input_layer

    config = json.loads(json.dumps(functional(
        [input_layer("x", (8, 8, 3)), call("Conv2D", "conv", {"filters": 4, "kernel_size": 3}, "x"),
         call("Add", "add", {}, "conv", "conv")], ["x"], ["add"])))
    graph = build_graph(config)
    names = {node.name: node.name for node in graph.layers}
    refs = [ref for node in graph.layers for c in node.calls for ref in c.inputs]
    refs += graph.inputs + graph.outputs
    assert len(refs) == 5
    assert all(ref.layer is names[ref.layer] for ref in refs)
