"""Keras itself confirms the numpy support oracle used for fields through upsampling.

For each decoder of test_receptive_field_oracle.py, a linearised Keras copy (float64, every
kernel 1, no bias, linear activations, max pooling as average pooling) is run on impulses: ones
on one input line (a row, a column) at a time. A unit in the middle of an output depends on the
line exactly when it responds to it (positive weights: nothing cancels), so the lines it
responds to must be the oracle's support of that unit on that axis (a transposed convolution's
scatter, output_padding, UpSampling's repeat, tf.image.resize's nearest, bilinear, bicubic,
area, Lanczos and antialiased sampling are then as the oracle writes them). A response below
1e-9 of the unit's largest is read as none: TensorFlow evaluates the Lanczos kernel's zeros
in floating point.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from tests.analysis.test_receptive_field_oracle import DECODERS
from tests.fixtures.support_oracle import axis_fields, supports

pytestmark = pytest.mark.tensorflow


def _linearised(config: dict[str, Any], dtype: str) -> Any:
    """The Keras model of a builders.functional config, linearised (its layers called in the
    listed order on the tensors their inbound nodes name)."""
    keras = pytest.importorskip("keras")
    tensors: dict[str, Any] = {}
    for entry in copy.deepcopy(config["config"]["layers"]):
        class_name, layer_config = entry["class_name"], dict(entry["config"], dtype=dtype)
        if class_name == "InputLayer":
            tensors[entry["name"]] = keras.Input(batch_shape=layer_config["batch_shape"],
                                                 dtype=dtype, name=entry["name"])
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
def test_the_oracle_is_what_keras_computes(build: Any) -> None:
    config = build()
    model = _linearised(config, "float64")
    oracle = supports(config)
    outputs = [layer[0] for layer in config["config"]["output_layers"]]
    spatial = config["config"]["layers"][0]["config"]["batch_shape"][1:-1]
    channels = config["config"]["layers"][0]["config"]["batch_shape"][-1]
    checked = 0
    for name in outputs:
        per_axis = oracle[name]
        for axis, support in enumerate(per_axis):
            period = axis_fields(support).get("period", 1)
            start = support.shape[0] // 2
            units = list(range(start, start + 2 * period + 1))
            read = np.flatnonzero(support[units].any(axis=0))
            lines = list(range(max(read[0] - 3, 0), min(read[-1] + 3, spatial[axis] - 1) + 1))
            # one input per line: ones on input line i of this axis (every position of the others)
            impulses = np.zeros((len(lines), *spatial, channels))
            for batch, line in enumerate(lines):
                index = [batch] + [slice(None)] * (len(spatial) + 1)
                index[1 + axis] = line
                impulses[tuple(index)] = 1.0
            out = model(impulses)
            out = np.asarray(out[outputs.index(name)] if isinstance(out, (list, tuple)) else out)
            for unit in units:
                index = [slice(None)] + [per_axis[other].shape[0] // 2 for other in range(len(spatial))]
                index[1 + axis] = unit
                response = np.abs(out[tuple(index)]).sum(axis=-1)
                seen = [line for line, value in zip(lines, response, strict=True) if value > 1e-9 * response.max()]
                expected = [line for line in lines if support[unit, line]]
                assert seen == expected, (name, axis, unit)
                checked += 1
    assert checked > 0
