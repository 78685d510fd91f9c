"""MACs per sample against their closed formulas (bias additions not counted; FLOPs = 2 x MACs)."""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze
from tests.analysis.builders import single_layer_model

ROWS: list[tuple[str, str, dict[str, Any], list[tuple[int, ...]], str, int]] = [
    # output positions x kernel x C_in / groups x filters
    (
        "conv2d",
        "Conv2D",
        {"filters": 8, "kernel_size": 3, "padding": "same"},
        [(16, 16, 4)],
        "single",
        16 * 16 * 9 * 4 * 8,
    ),
    (
        "conv2d-strided",
        "Conv2D",
        {"filters": 8, "kernel_size": 3, "strides": 2},
        [(17, 17, 4)],
        "single",
        8 * 8 * 9 * 4 * 8,
    ),
    (
        "conv2d-groups",
        "Conv2D",
        {"filters": 8, "kernel_size": 3, "groups": 4, "padding": "same"},
        [(8, 8, 8)],
        "single",
        8 * 8 * 9 * 2 * 8,
    ),
    ("conv1d", "Conv1D", {"filters": 6, "kernel_size": 5}, [(20, 3)], "single", 16 * 5 * 3 * 6),
    ("conv3d", "Conv3D", {"filters": 2, "kernel_size": 3}, [(5, 5, 5, 3)], "single", 27 * 27 * 3 * 2),
    # depthwise: output positions x kernel x C_in x multiplier
    (
        "depthwise",
        "DepthwiseConv2D",
        {"kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
        [(10, 10, 5)],
        "single",
        10 * 10 * 9 * 5 * 2,
    ),
    # separable: depthwise + pointwise
    (
        "separable",
        "SeparableConv2D",
        {"filters": 7, "kernel_size": 3, "padding": "same"},
        [(10, 10, 5)],
        "single",
        10 * 10 * 9 * 5 + 10 * 10 * 5 * 7,
    ),
    # transposed: input positions x kernel x C_in x filters
    (
        "transposed",
        "Conv2DTranspose",
        {"filters": 3, "kernel_size": 4, "strides": 2, "padding": "same"},
        [(6, 6, 2)],
        "single",
        6 * 6 * 16 * 2 * 3,
    ),
    # dense: positions x C_in x units
    ("dense", "Dense", {"units": 10}, [(64,)], "single", 640),
    ("dense-per-position", "Dense", {"units": 4}, [(5, 6)], "single", 5 * 6 * 4),
    ("einsum-dense", "EinsumDense", {"equation": "ab,bc->ac", "output_shape": 8}, [(5,)], "single", 40),
    # recurrent: T x gates x (F u + u u)
    ("lstm", "LSTM", {"units": 8}, [(6, 4)], "single", 6 * 4 * (4 * 8 + 8 * 8)),
    ("gru", "GRU", {"units": 4}, [(5, 3)], "single", 5 * 3 * (3 * 4 + 4 * 4)),
    ("simplernn", "SimpleRNN", {"units": 5}, [(7, 3)], "single", 7 * (3 * 5 + 5 * 5)),
    # attention: projections + scores + weighted sum + output projection
    (
        "mha",
        "MultiHeadAttention",
        {"num_heads": 2, "key_dim": 4},
        [(10, 8), (10, 8)],
        "args",
        10 * 8 * 2 * 4 * 3 + 2 * 10 * 10 * (4 + 4) + 10 * 2 * 4 * 8,
    ),
    ("dot", "Dot", {"axes": 1}, [(5,), (5,)], "list", 5),
    # no multiply-accumulates with weights
    ("maxpool", "MaxPooling2D", {"pool_size": 2}, [(8, 8, 3)], "single", 0),
    ("batchnorm", "BatchNormalization", {}, [(8, 8, 3)], "single", 0),
    ("add", "Add", {}, [(4, 3), (4, 3)], "list", 0),
]


@pytest.mark.parametrize(
    ("class_name", "config", "shapes", "how", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_macs_match_closed_formula(class_name: str, config: dict, shapes: list, how: str, expected: int) -> None:
    report = analyze(single_layer_model(class_name, config, shapes, how))
    assert report["layers"][-1]["macs"] == expected
    assert report["summary"]["macs"] == expected
    assert report["summary"]["flops"] == 2 * expected


def test_shared_layer_macs_count_every_call() -> None:
    from tests.analysis.builders import call, functional, input_layer

    layers = [input_layer("x", (4,)), call("Dense", "d", {"units": 4}, "x")]
    layers[1]["inbound_nodes"].append(
        {"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["d", 0, 0]}}], "kwargs": {}}
    )
    report = analyze(functional(layers, ["x"], ["x"]))
    config = functional(layers, ["x"], ["x"])
    config["config"]["output_layers"] = [["d", 1, 0]]
    report = analyze(config)
    assert report["layers"][-1]["macs"] == 2 * 16
    assert report["layers"][-1]["params"] == 20
