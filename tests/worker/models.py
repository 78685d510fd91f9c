"""Keras models the worker tests measure and train (built with Keras 3 directly)."""

from __future__ import annotations

from typing import Any


def plain_sigmoid_cnn(depth: int = 20, input_shape: tuple[int, int, int] = (32, 32, 3)) -> Any:
    """``depth`` weighted layers: depth-1 sigmoid 3x3 convolutions and a softmax Dense, no skips."""
    import keras

    layers: list[Any] = [keras.Input(shape=input_shape)]
    layers += [
        keras.layers.Conv2D(16, 3, padding="same", activation="sigmoid", name=f"conv{i + 1}")
        for i in range(depth - 1)
    ]
    layers += [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax", name="head"),
    ]
    return keras.Sequential(layers, name=f"plain_sigmoid_{depth}")


def seed_example3(input_shape: tuple[int, int, int] = (128, 128, 3)) -> Any:
    """The seed's Example 3, written as the seed writes it (two residual blocks)."""
    import keras

    def residual_block(x: Any, filters: int) -> Any:
        shortcut = x
        x = keras.layers.Conv2D(filters, kernel_size=3, activation="relu", padding="same")(x)
        x = keras.layers.Conv2D(filters, kernel_size=3, activation="relu", padding="same")(x)
        return keras.layers.add([x, shortcut])

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(32, kernel_size=3, activation="relu", padding="same")(inputs)
    x = residual_block(x, 32)
    x = residual_block(x, 32)
    x = keras.layers.Conv2D(64, kernel_size=3, activation="relu", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def centre_tap_only(model: Any) -> Any:
    """Every 3x3 convolution keeps only its kernel's centre tap (made positive): each unit then
    sees exactly one input pixel, a known answer for the effective receptive field."""
    import numpy as np

    for layer in model.layers:
        if type(layer).__name__ == "Conv2D":
            kernel, bias = layer.get_weights()
            only_centre = np.zeros_like(kernel)
            only_centre[1, 1] = np.abs(kernel[1, 1]) + 0.1
            layer.set_weights([only_centre, bias])
    return model

