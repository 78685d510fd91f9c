"""Keras 3 functional ops, tf.keras TFOpLambda functions and the Applications' custom layers."""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze
from app.analysis.rules.ops import KERAS3_OPS, UNARY
from tests.analysis.builders import functional, input_layer, tensor

# (op class, config, input shapes, constant args, expected output shape)
OP_CASES: list[tuple[str, dict[str, Any], list[tuple[int, ...]], list[Any], list[int | None]]] = []
for _class_name, _op in KERAS3_OPS.items():
    if _op in UNARY:
        OP_CASES.append((_class_name, {}, [(4, 4, 3)], [], [None, 4, 4, 3]))
OP_CASES += [
    ("Add", {}, [(4, 4, 3)], [3.0], [None, 4, 4, 3]),
    ("Subtract", {}, [(4, 4, 3), (4, 4, 3)], [], [None, 4, 4, 3]),
    ("Multiply", {}, [(4, 4, 3), (1, 1, 3)], [], [None, 4, 4, 3]),
    ("Divide", {}, [(4, 3)], [2.0], [None, 4, 3]),
    ("TrueDivide", {}, [(4, 3)], [2.0], [None, 4, 3]),
    ("FloorDivide", {}, [(4, 3)], [2.0], [None, 4, 3]),
    ("Power", {}, [(4, 3)], [2.0], [None, 4, 3]),
    ("Maximum", {}, [(4, 3)], [0.0], [None, 4, 3]),
    ("Minimum", {}, [(4, 3)], [6.0], [None, 4, 3]),
    ("Mod", {}, [(4, 3)], [2.0], [None, 4, 3]),
    ("Mean", {"axis": [1, 2], "keepdims": True}, [(4, 4, 3)], [], [None, 1, 1, 3]),
    ("Sum", {"axis": -1, "keepdims": False}, [(4, 4, 3)], [], [None, 4, 4]),
    ("Max", {"axis": 1, "keepdims": False}, [(5, 3)], [], [None, 3]),
    ("Min", {"axis": 1, "keepdims": False}, [(5, 3)], [], [None, 3]),
    ("Prod", {"axis": 1, "keepdims": True}, [(5, 3)], [], [None, 1, 3]),
    ("Reshape", {"newshape": [-1, 16, 3]}, [(4, 4, 3)], [], [None, 16, 3]),
    ("Transpose", {"axes": [0, 2, 1]}, [(4, 3)], [], [None, 3, 4]),
    ("ExpandDims", {"axis": 1}, [(4, 3)], [], [None, 1, 4, 3]),
    ("Squeeze", {"axis": 1}, [(1, 3)], [], [None, 3]),
    ("Concatenate", {"axis": -1}, [(4, 3), (4, 5)], [], [None, 4, 8]),
    ("Matmul", {}, [(4, 3), (3, 6)], [], [None, 4, 6]),
]


def _op_model(class_name: str, config: dict[str, Any], shapes: list[tuple[int, ...]], constants: list[Any]) -> dict:
    names = [f"in{i}" for i in range(len(shapes))]
    layers = [input_layer(n, s) for n, s in zip(names, shapes)]
    tensors: list[Any] = [tensor(n) for n in names]
    args: list[Any] = [tensors] if class_name == "Concatenate" else tensors + constants
    layers.append(
        {
            "module": "keras.src.ops.numpy",
            "class_name": class_name,
            "name": "op",
            "config": dict(config, name="op"),
            "inbound_nodes": [{"args": args, "kwargs": {}}],
        }
    )
    return functional(layers, names, ["op"])


@pytest.mark.parametrize("case", OP_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(OP_CASES)])
def test_keras3_op_shapes(case: tuple) -> None:
    class_name, config, shapes, constants, expected = case
    report = analyze(_op_model(class_name, config, shapes, constants))
    assert report["summary"]["output_shapes"] == [expected]
    assert report["coverage"]["unsupported_layers"] == []
    # ops are not Keras layers: model.layers (and the report) leave them out
    assert [layer["class_name"] for layer in report["layers"]] == ["InputLayer"] * len(shapes)


def _tfop_model(function: str, kwargs: dict[str, Any], shape: tuple[int, ...]) -> dict:
    return {
        "class_name": "Functional",
        "keras_version": "2.21.0",
        "config": {
            "name": "m",
            "input_layers": [["x", 0, 0]],
            "output_layers": [["op", 0, 0]],
            "layers": [
                {
                    "class_name": "InputLayer",
                    "name": "x",
                    "config": {"batch_input_shape": [None, *shape], "name": "x"},
                    "inbound_nodes": [],
                },
                {
                    "class_name": "TFOpLambda",
                    "name": "op",
                    "config": {"name": "op", "function": function, "dtype": "float32"},
                    "inbound_nodes": [["x", 0, 0, kwargs]],
                },
            ],
        },
    }


@pytest.mark.parametrize(
    ("function", "kwargs", "shape", "expected"),
    [
        ("__operators__.add", {"y": 3.0, "name": None}, (4, 4, 2), [None, 4, 4, 2]),
        ("math.multiply", {"y": 0.5, "name": None}, (4, 2), [None, 4, 2]),
        ("nn.relu", {"name": None}, (4, 2), [None, 4, 2]),
        ("math.reduce_mean", {"axis": [1, 2], "keepdims": True}, (4, 4, 2), [None, 1, 1, 2]),
        ("reshape", {"shape": [-1, 8]}, (4, 2), [None, 8]),
        ("compat.v1.transpose", {"perm": [0, 2, 1]}, (4, 2), [None, 2, 4]),
        ("math.truediv", {"y": 6.0}, (3,), [None, 3]),
    ],
)
def test_tfoplambda_functions(function: str, kwargs: dict, shape: tuple, expected: list) -> None:
    report = analyze(_tfop_model(function, kwargs, shape))
    assert report["layers"][-1]["output_shape"] == expected
    assert report["layers"][-1]["params"] == 0
    assert report["coverage"]["unsupported_layers"] == []


def test_unknown_tfoplambda_function_is_reported_not_zeroed() -> None:
    report = analyze(_tfop_model("signal.rfft", {}, (8,)))
    layer = report["layers"][-1]
    assert report["coverage"]["unsupported_layers"] == [{"name": "op", "class_name": "TFOpLambda"}]
    assert layer["output_shape"] is None and layer["params"] is None and layer["macs"] is None
    assert report["coverage"]["metrics"]["shapes"]["status"] == "partial"


@pytest.mark.parametrize(
    ("class_name", "config", "shapes", "expected_shape", "params"),
    [
        ("LayerScale", {"init_values": 1e-6, "projection_dim": 96}, [(7, 7, 96)], [None, 7, 7, 96], 96),
        ("CustomScaleLayer", {"scale": 0.17}, [(5, 5, 8), (5, 5, 8)], [None, 5, 5, 8], 0),
        ("StochasticDepth", {"drop_path_rate": 0.1}, [(5, 5, 8)], [None, 5, 5, 8], 0),
    ],
)
def test_applications_custom_layers(
    class_name: str, config: dict, shapes: list, expected_shape: list, params: int
) -> None:
    from tests.analysis.builders import single_layer_model

    how = "list" if len(shapes) > 1 else "single"
    layer = analyze(single_layer_model(class_name, config, shapes, how))["layers"][-1]
    assert layer["output_shape"] == expected_shape
    assert layer["params"] == params
