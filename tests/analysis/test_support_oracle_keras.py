"""Keras itself confirms the numpy support oracle used for fields through upsampling.

For each decoder of test_receptive_field_oracle.py, a linearised Keras copy (float64, every
kernel 1, no bias, linear activations, max pooling as average pooling) is differentiated from
units in the middle of each output, one row and one column at a time: the input pixels with a
non-zero gradient, projected on each axis, must be exactly the oracle's support of that unit
(a transposed convolution's scatter, output_padding, UpSampling's repeat, the bilinear and
nearest sampling of tf.image.resize are then as the oracle writes them).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from tests.analysis.test_receptive_field_oracle import DECODERS
from tests.fixtures.support_oracle import axis_fields, supports

pytestmark = pytest.mark.tensorflow


def _linearised(config: dict[str, Any]) -> Any:
    """The Keras model of a builders.functional config, linearised (its layers called in the
    listed order on the tensors their inbound nodes name)."""
    keras = pytest.importorskip("keras")
    tensors: dict[str, Any] = {}
    for entry in copy.deepcopy(config["config"]["layers"]):
        class_name, layer_config = entry["class_name"], dict(entry["config"], dtype="float64")
        if class_name == "InputLayer":
            tensors[entry["name"]] = keras.Input(batch_shape=layer_config["batch_shape"],
                                                 dtype="float64", name=entry["name"])
            continue
        class_name = class_name.replace("MaxPooling", "AveragePooling")
        if "kernel_size" in layer_config:
            layer_config.update(use_bias=False, activation="linear", filters=1)
        layer = getattr(keras.layers, class_name).from_config(layer_config)
        args = entry["inbound_nodes"][0]["args"]
        names = [t["config"]["keras_history"][0] for t in (args[0] if isinstance(args[0], list) else args)]
        inputs = [tensors[name] for name in names]
        tensors[entry["name"]] = layer(inputs if isinstance(args[0], list) else inputs[0])
    outputs = [tensors[name] for name, _, _ in config["config"]["output_layers"]]
    model = keras.Model(tensors[config["config"]["input_layers"][0][0]], outputs)
    for weight in model.weights:
        weight.assign(np.ones(weight.shape))
    return model


@pytest.mark.parametrize("build", DECODERS.values(), ids=list(DECODERS))
def test_the_oracle_is_what_keras_differentiates(build: Any) -> None:
    import tensorflow as tf

    config = build()
    model = _linearised(config)
    oracle = supports(config)
    outputs = [layer[0] for layer in config["config"]["output_layers"]]
    shape = [1, *config["config"]["layers"][0]["config"]["batch_shape"][1:]]
    x = tf.Variable(np.random.default_rng(0).uniform(0.5, 1.5, shape), dtype=tf.float64)
    checked = 0
    for name in outputs:
        per_axis = oracle[name]
        rank = len(per_axis)
        for axis, support in enumerate(per_axis):
            period = axis_fields(support).get("period", 1)
            units = support.shape[0]
            start = units // 2
            middle = list(range(start, start + 2 * period + 1))
            for unit in middle:
                index: list[Any] = [0]
                for other in range(rank):
                    index.append(unit if other == axis else per_axis[other].shape[0] // 2)
                with tf.GradientTape() as tape:
                    out = model(x)
                    out = out[outputs.index(name)] if isinstance(out, (list, tuple)) else out
                    value = tf.reduce_sum(out[tuple(index)])
                grad = np.abs(tape.gradient(value, x).numpy()[0])
                other_axes = tuple(a for a in range(rank + 1) if a != axis)
                seen = np.flatnonzero(grad.sum(axis=other_axes) > 0)
                assert list(seen) == list(np.flatnonzero(support[unit])), (name, axis, unit)
                checked += 1
    assert checked > 0
