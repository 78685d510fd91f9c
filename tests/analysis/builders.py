"""Small Keras-3-format configs built by hand, so engine tests need no TensorFlow.

Example::

    config = single_layer_model("Conv2D", {"filters": 4, "kernel_size": 3}, [(8, 8, 3)])
    report = analyze(config)
"""

from __future__ import annotations

from typing import Any


def tensor(layer: str, node: int = 0, index: int = 0) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, index]}}


def input_layer(name: str, shape: tuple[int | None, ...]) -> dict[str, Any]:
    return {
        "class_name": "InputLayer",
        "name": name,
        "config": {"batch_shape": [None, *shape], "name": name},
        "inbound_nodes": [],
    }


def call(
    class_name: str, name: str, config: dict[str, Any], *inputs: str, as_list: bool = False, module: str | None = None
) -> dict[str, Any]:
    """A layer entry called on the named layers' first outputs."""
    tensors = [tensor(i) for i in inputs]
    args: list[Any] = [tensors] if as_list else tensors
    entry: dict[str, Any] = {
        "class_name": class_name,
        "name": name,
        "config": dict(config, name=name),
        "inbound_nodes": [{"args": args, "kwargs": {}}],
    }
    if module is not None:
        entry["module"] = module
    return entry


def functional(
    layers: list[dict[str, Any]], inputs: list[str], outputs: list[str], name: str = "model"
) -> dict[str, Any]:
    return {
        "class_name": "Functional",
        "config": {
            "name": name,
            "layers": layers,
            "input_layers": [[i, 0, 0] for i in inputs],
            "output_layers": [[o, 0, 0] for o in outputs],
        },
    }


def single_layer_model(
    class_name: str, config: dict[str, Any], input_shapes: list[tuple[int | None, ...]], how: str = "single"
) -> dict[str, Any]:
    """A Functional model: one InputLayer per shape feeding the layer under test (named 'target')."""
    names = [f"in{i}" for i in range(len(input_shapes))]
    layers = [input_layer(n, s) for n, s in zip(names, input_shapes)]
    if class_name == "InputLayer":
        return functional(layers, names, names)
    if how == "single":
        layers.append(call(class_name, "target", config, names[0]))
    else:
        layers.append(call(class_name, "target", config, *names, as_list=how == "list"))
    return functional(layers, names, ["target"])


def sequential(
    layers: list[tuple[str, dict[str, Any]]], input_shape: tuple[int | None, ...], name: str = "seq"
) -> dict[str, Any]:
    """A Keras 3 Sequential config: [(class_name, config), ...] after an InputLayer."""
    entries: list[dict[str, Any]] = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, *input_shape], "name": f"{name}_input"}}
    ]
    for index, (class_name, config) in enumerate(layers):
        entries.append({"class_name": class_name, "config": dict({"name": f"l{index}"}, **config)})
    return {"class_name": "Sequential", "config": {"name": name, "layers": entries}}


def two_input_model(image: tuple[int | None, ...] = (32, 32, 3), mask: tuple[int | None, ...] = (32, 32, 1)
                    ) -> dict[str, Any]:
    """Two spatial inputs ("image", "mask"), a convolution each, pooled and joined in a Dense."""
    return functional([
        input_layer("image", image),
        input_layer("mask", mask),
        call("Conv2D", "image_conv", {"filters": 8, "kernel_size": 3, "strides": 2, "padding": "same"}, "image"),
        call("Conv2D", "mask_conv", {"filters": 4, "kernel_size": 5, "padding": "same"}, "mask"),
        call("GlobalAveragePooling2D", "image_pool", {}, "image_conv"),
        call("GlobalAveragePooling2D", "mask_pool", {}, "mask_conv"),
        call("Concatenate", "joined", {"axis": -1}, "image_pool", "mask_pool", as_list=True),
        call("Dense", "out", {"units": 2}, "joined"),
    ], ["image", "mask"], ["out"], name="two_inputs")
