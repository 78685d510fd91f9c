"""Keras itself confirms every row of the layer table (output shape, parameters, trainable split)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.analysis.layer_cases import CASES, LayerCase

pytestmark = pytest.mark.tensorflow


def _build(case: LayerCase) -> tuple[object, list[int | None] | list, int, int]:
    keras = pytest.importorskip("keras")
    import tf_keras

    library = keras if hasattr(keras.layers, case.class_name) else tf_keras
    if case.class_name == "InputLayer":
        return None, list(library.Input(case.input_shapes[0]).shape), 0, 0
    config = json.loads(json.dumps(case.config))
    for value in config.values():  # wrapped layers (Bidirectional, TimeDistributed)
        if isinstance(value, dict) and "class_name" in value:
            value["module"] = "keras.layers"
    layer = getattr(library.layers, case.class_name).from_config(dict(config, name="target"))
    inputs = [library.Input(shape) for shape in case.input_shapes]
    if case.call == "single":
        output = layer(inputs[0])
    elif case.call == "list":
        output = layer(inputs)
    else:
        output = layer(*inputs)
    shape = [list(t.shape) for t in output] if isinstance(output, (list, tuple)) else list(output.shape)
    trainable = int(sum(np.prod(w.shape) for w in layer.trainable_weights))
    return layer, shape, layer.count_params(), trainable


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_row_agrees_with_keras(case: LayerCase) -> None:
    _, shape, params, trainable = _build(case)
    assert shape == case.output_shape
    assert (params, trainable) == (case.params, case.trainable_params)


def test_keras3_ops_in_a_real_model() -> None:
    """x + 3, x * gate and ops.mean as Keras 3 records them, read by the engine."""
    keras = pytest.importorskip("keras")
    from app.analysis import analyze

    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    gate = keras.ops.mean(x, axis=[1, 2], keepdims=True)
    y = x * keras.ops.sigmoid(gate) + 3.0
    model = keras.Model(inputs, y)
    report = analyze(json.loads(model.to_json()))
    assert report["summary"]["output_shapes"] == [list(model.output.shape)]
    assert report["summary"]["total_params"] == model.count_params()
    assert [layer["name"] for layer in report["layers"]] == [layer.name for layer in model.layers]
    assert report["coverage"]["unsupported_layers"] == []
