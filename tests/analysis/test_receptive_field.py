"""Receptive fields (Araujo et al., Distill 2019): size, effective stride, effective padding.

Rows are small stacks whose fields follow from the published recurrences
r = r + (k'-1) S, S = S s, P = P + p S with Keras's left padding for 'same'
(floor(total / 2)); the Keras Applications numbers are checked against an
independent oracle in test_receptive_field_oracle.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze
from tests.analysis.builders import call, functional, input_layer, sequential

C = "Conv2D"
ROWS: list[tuple[str, list[tuple[str, dict[str, Any]]], tuple[int, ...], tuple[Any, Any, Any]]] = [
    ("conv3-same", [(C, {"filters": 1, "kernel_size": 3, "padding": "same"})], (8, 8, 1), (3, 1, 1)),
    ("conv3-valid", [(C, {"filters": 1, "kernel_size": 3})], (8, 8, 1), (3, 1, 0)),
    (
        "conv3-s2-same-even",
        [(C, {"filters": 1, "kernel_size": 3, "strides": 2, "padding": "same"})],
        (8, 8, 1),
        (3, 2, 0),
    ),
    (
        "conv3-s2-same-odd",
        [(C, {"filters": 1, "kernel_size": 3, "strides": 2, "padding": "same"})],
        (9, 9, 1),
        (3, 2, 1),
    ),
    ("dilated", [(C, {"filters": 1, "kernel_size": 3, "dilation_rate": 2, "padding": "same"})], (9, 9, 1), (5, 1, 2)),
    (
        "resnet-stem",
        [
            ("ZeroPadding2D", {"padding": 3}),
            (C, {"filters": 1, "kernel_size": 7, "strides": 2}),
            ("ZeroPadding2D", {"padding": 1}),
            ("MaxPooling2D", {"pool_size": 3, "strides": 2}),
        ],
        (224, 224, 3),
        (11, 4, 5),
    ),
    (
        "seed-example-1",
        [
            (C, {"filters": 32, "kernel_size": 3, "padding": "same"}),
            (C, {"filters": 64, "kernel_size": 3, "padding": "same"}),
            ("MaxPooling2D", {"pool_size": 2, "strides": 2}),
        ],
        (256, 256, 3),
        (6, 2, 2),
    ),
    (
        "seed-example-2",
        [
            (C, {"filters": 32, "kernel_size": 5, "padding": "same"}),
            ("MaxPooling2D", {"pool_size": 2}),
            (C, {"filters": 64, "kernel_size": 3, "padding": "same"}),
            ("MaxPooling2D", {"pool_size": 2}),
        ],
        (28, 28, 1),
        (12, 4, 4),
    ),
    ("cropping", [("Cropping2D", {"cropping": 2}), (C, {"filters": 1, "kernel_size": 3})], (8, 8, 1), (3, 1, -2)),
    (
        "bn-relu-dropout-keep",
        [(C, {"filters": 1, "kernel_size": 3}), ("BatchNormalization", {}), ("ReLU", {}), ("Dropout", {"rate": 0.5})],
        (8, 8, 1),
        (3, 1, 0),
    ),
]


@pytest.mark.parametrize(("layers", "shape", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_field_of_last_layer(layers: list, shape: tuple, expected: tuple) -> None:
    report = analyze(sequential(layers, shape))
    field = report["layers"][-1]["receptive_field"]
    assert field["global"] is False
    size, stride, padding = expected
    assert field["axes"] == [{"size": size, "stride": stride, "padding": padding}] * 2


def test_conv1d_causal_dilated() -> None:
    report = analyze(
        sequential([("Conv1D", {"filters": 1, "kernel_size": 3, "padding": "causal", "dilation_rate": 2})], (16, 1))
    )
    assert report["layers"][0]["receptive_field"]["axes"] == [{"size": 5, "stride": 1, "padding": 4}]


def test_upsampling_divides_the_stride_and_gives_the_envelope() -> None:
    """Units 2m and 2m+1 both see pixels 2m..2m+1: every unit sees 2 pixels, but an evenly
    spaced field of stride 1 holding both starts a pixel earlier and is 3 wide."""
    report = analyze(
        sequential([(C, {"filters": 1, "kernel_size": 2, "strides": 2}), ("UpSampling2D", {"size": 2})], (8, 8, 1))
    )
    axis = report["layers"][-1]["receptive_field"]["axes"][0]
    assert axis == {"size": 3, "stride": 1, "padding": 1, "period": 2, "unit_sizes": [2, 2]}


def test_transposed_convolution_envelope() -> None:
    """A 2x transposed convolution of kernel 2 after a stride-2 valid convolution of kernel 3:
    output units 2m and 2m+1 both come from input unit m, which sees pixels 2m..2m+2."""
    report = analyze(sequential([
        (C, {"filters": 1, "kernel_size": 3, "strides": 2}),
        ("Conv2DTranspose", {"filters": 1, "kernel_size": 2, "strides": 2}),
    ], (9, 9, 1)))
    axis = report["layers"][-1]["receptive_field"]["axes"][0]
    assert axis == {"size": 4, "stride": 1, "padding": 1, "period": 2, "unit_sizes": [3, 3]}


@pytest.mark.parametrize(
    ("head", "expect_global"),
    [
        ([("GlobalAveragePooling2D", {})], True),
        ([("Flatten", {})], None),
        ([("Flatten", {}), ("Dense", {"units": 3})], True),
    ],
)
def test_heads_make_the_field_global_or_non_spatial(head: list, expect_global: bool | None) -> None:
    report = analyze(sequential([(C, {"filters": 2, "kernel_size": 3}), *head], (8, 8, 1)))
    field = report["layers"][-1]["receptive_field"]
    if expect_global is None:
        assert field is None
    else:
        assert field == {"axes": None, "global": True}
    summary = report["receptive_field"]
    assert summary["layer"] == "l0" and summary["axes"][0] == {"size": 3, "stride": 1, "padding": 0}
    assert summary["coverage"] == [0.375, 0.375] and summary["sees_whole_input"] is False


def test_residual_union_and_alignment() -> None:
    layers = [
        input_layer("x", (8, 8, 1)),
        call(C, "a", {"filters": 1, "kernel_size": 3, "padding": "same"}, "x"),
        call(C, "b", {"filters": 1, "kernel_size": 3, "padding": "same"}, "a"),
        call("Add", "add", {}, "b", "x", as_list=True),
    ]
    report = analyze(functional(layers, ["x"], ["add"]))
    field = report["layers"][-1]["receptive_field"]
    assert field["axes"][0] == {"size": 5, "stride": 1, "padding": 2}
    assert "misaligned" not in field and report["receptive_field"]["misaligned"] == []


def test_misaligned_branches_are_reported() -> None:
    layers = [
        input_layer("x", (8, 8, 1)),
        call(C, "valid2", {"filters": 1, "kernel_size": 2}, "x"),
        call("Cropping2D", "crop", {"cropping": [[0, 1], [0, 1]]}, "x"),
        call("Add", "add", {}, "valid2", "crop", as_list=True),
    ]
    report = analyze(functional(layers, ["x"], ["add"]))
    assert report["layers"][-1]["receptive_field"]["misaligned"] == [["valid2", "crop"]]
    assert [{key: m[key] for key in ("layer", "branches", "pair_count")}
            for m in report["receptive_field"]["misaligned"]] == [
        {"layer": "add", "branches": [["valid2", "crop"]], "pair_count": 1}]


def test_squeeze_excitation_gate_makes_the_field_global_but_keeps_local_axes() -> None:
    layers = [
        input_layer("x", (8, 8, 4)),
        call(C, "conv", {"filters": 4, "kernel_size": 3, "padding": "same"}, "x"),
        call("GlobalAveragePooling2D", "squeeze", {"keepdims": True}, "conv"),
        call(C, "excite", {"filters": 4, "kernel_size": 1, "activation": "sigmoid"}, "squeeze"),
        call("Multiply", "scale", {}, "conv", "excite", as_list=True),
    ]
    report = analyze(functional(layers, ["x"], ["scale"]))
    field = report["layers"][-1]["receptive_field"]
    assert field["global"] is True and field["axes"][0] == {"size": 3, "stride": 1, "padding": 1}
    assert report["receptive_field"]["global"] is True


def test_attention_is_global() -> None:
    layers = [
        input_layer("x", (6, 8)),
        {
            "class_name": "MultiHeadAttention",
            "name": "mha",
            "config": {"name": "mha", "num_heads": 2, "key_dim": 4},
            "inbound_nodes": [
                {
                    "args": [
                        {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}},
                        {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}},
                    ],
                    "kwargs": {},
                }
            ],
        },
    ]
    report = analyze(functional(layers, ["x"], ["mha"]))
    assert report["layers"][-1]["receptive_field"] == {"axes": None, "global": True}


def test_vgg16_block5_pool_matches_the_published_field() -> None:
    from tests.fixtures.load import FIXTURES_DIR, load_config

    path = FIXTURES_DIR / "applications" / "vgg16.json.gz"
    report = analyze(load_config(path))
    summary = report["receptive_field"]
    assert summary["layer"] == "block5_pool"
    assert summary["axes"] == [{"size": 212, "stride": 32, "padding": 90}] * 2
    assert summary["sees_whole_input"] is False
