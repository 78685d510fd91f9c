"""Reading Keras model configs (Keras 3 and tf.keras 2.x) into a :class:`ModelGraph`.

Both formats are read without TensorFlow:

- Keras 3: ``inbound_nodes`` are ``{"args": [...], "kwargs": {...}}`` where
  tensors appear as ``{"class_name": "__keras_tensor__", "config":
  {"keras_history": [layer, node_index, tensor_index]}}``.
- tf.keras 2.x: ``inbound_nodes`` are nested lists
  ``[[layer, node_index, tensor_index, kwargs], ...]`` (or a single
  ``[layer, node_index, tensor_index, kwargs]`` for ``TFOpLambda``), input
  shapes are ``batch_input_shape``.

Node indices of a nested model are shifted by one where Keras keeps the
model's own construction call as node 0 (tf.keras for every functional model,
Keras 3 for ``output_layers`` of a nested Functional); the parser undoes that.

Example::

    >>> graph = build_graph({"class_name": "Sequential", "config": {"layers": [
    ...     {"class_name": "InputLayer", "config": {"batch_shape": [None, 8]}},
    ...     {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}})
    >>> [layer.name for layer in graph.layers if layer.listed]
    ['d']
"""

from __future__ import annotations

from typing import Any

from app.analysis.graph import LayerCall, LayerNode, ModelGraph, Shape, TensorRef
from app.analysis.rules import is_operation
from app.errors import InvalidArchitecture

MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
_CONSTANT_VALUE = "_CONSTANT_VALUE"
_NOTHING: dict[str, Any] = {}
"""The empty default of a lookup that is only read (never stored, never written): one dict
instead of a new one per layer and per tensor."""


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(message: str) -> InvalidArchitecture:
    return InvalidArchitecture(message)


def is_model_config(entry: dict[str, Any]) -> bool:
    """True when a layer entry is itself a model (Sequential/Functional or any config with layers)."""
    config = entry.get("config")
    if entry.get("class_name") in MODEL_CLASSES:
        return True
    return (
        isinstance(config, dict)
        and isinstance(config.get("layers"), list)
        and ("input_layers" in config or "output_layers" in config)
    )


def parse_shape(value: Any, what: str) -> Shape:
    """A shape list from a config as a tuple; raises InvalidArchitecture on junk.

    >>> parse_shape([None, 32, 32, 3], "batch_shape")
    (None, 32, 32, 3)
    """
    if isinstance(value, dict) and "value" in value:  # tf.TensorShape serialisation
        value = value["value"]
    if not isinstance(value, (list, tuple)):
        raise _fail(f"{what} must be a list of dimensions. Received: {what}={_short(value)}")
    dims: list[int | None] = []
    for dim in value:
        if dim is None:
            dims.append(None)
        elif isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            if isinstance(dim, float) and dim.is_integer() and dim >= 0:
                dims.append(int(dim))
                continue
            raise _fail(f"{what} must contain non-negative ints or null. Received: {what}={_short(value)}")
        else:
            dims.append(dim)
    return tuple(dims)


def _entry_name(entry: dict[str, Any], position: int) -> str:
    name = entry.get("name")
    if name is None and isinstance(entry.get("config"), dict):
        name = entry["config"].get("name")
    if name is None:
        return f"{str(entry.get('class_name', 'layer')).lower()}_{position}"
    if not isinstance(name, str):
        raise _fail(f"layer names must be strings. Received: name={_short(name)}")
    return name


def _check_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _fail(f"{where}: each layer must be an object. Received: {_short(entry)}")
    class_name = entry.get("class_name")
    if not isinstance(class_name, str) or not class_name:
        raise _fail(f"{where}: a layer has no class_name. Received: {_short(entry)}")
    config = entry.get("config", _NOTHING)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise _fail(f"{where}: {class_name}'s config must be an object. Received: config={_short(config)}")
    return entry


def _input_shape_of_input_layer(config: dict[str, Any], name: str) -> Shape | None:
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return parse_shape(config[key], f"InputLayer '{name}': {key}")
    if config.get("shape") is not None:
        return (None, *parse_shape(config["shape"], f"InputLayer '{name}': shape"))
    if config.get("input_shape") is not None:
        return (None, *parse_shape(config["input_shape"], f"InputLayer '{name}': input_shape"))
    return None


# -- tensor references ---------------------------------------------------------------------


def _is_ref_list(value: Any) -> bool:
    """A tf.keras tensor reference: [layer, node_index, tensor_index(, kwargs)]."""
    return (
        isinstance(value, list)
        and 3 <= len(value) <= 4
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
        and not isinstance(value[1], bool)
        and (len(value) == 3 or isinstance(value[3], dict))
    )


def _history_ref(value: Any, where: str) -> TensorRef:
    history = value.get("config", _NOTHING).get("keras_history") if isinstance(value, dict) else None
    if (
        type(history) is list
        and len(history) == 3
        and type(history[0]) is str
        and type(history[1]) is int
        and type(history[2]) is int
    ):  # the usual, plain JSON case
        return TensorRef(history[0], history[1], history[2])
    if (
        not isinstance(history, list)
        or len(history) != 3
        or not isinstance(history[0], str)
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in history[1:])
    ):
        raise _fail(
            f"{where}: a tensor reference needs keras_history [layer, node_index, tensor_index]. "
            f"Received: {_short(value)}"
        )
    return TensorRef(history[0], history[1], history[2])


def _is_keras3_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _collect_keras3(value: Any, call: LayerCall, where: str, key: str) -> Any:
    """Walk a Keras 3 argument structure, moving tensors into ``call.inputs``."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            call.inputs.append(_history_ref(value, where))
            return None
        if any(_is_keras3_tensor(v) for v in value.values()):
            for sub_key, item in value.items():
                _collect_keras3(item, call, where, f"{key}.{sub_key}")
            return None
    elif isinstance(value, list):
        for v in value:  # a loop, not any(<generator>): a tensor is a dict, so one test
            if isinstance(v, (list, dict)):
                for item in value:
                    _collect_keras3(item, call, where, key)
                return None
    call.constants[key] = value
    return None


def _parse_keras3_node(node: dict[str, Any], where: str) -> LayerCall:
    call = LayerCall()
    args = node.get("args", [])
    kwargs = node.get("kwargs") or _NOTHING
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise _fail(f"{where}: inbound node args/kwargs malformed. Received: {_short(node)}")
    inputs = call.inputs
    for position, arg in enumerate(args):
        if type(arg) is dict and arg.get("class_name") == "__keras_tensor__":
            inputs.append(_history_ref(arg, where))  # the usual argument: one tensor
            continue
        if type(arg) is list and arg:  # a merge's list of tensors: what _collect_keras3 does
            for item in arg:
                if type(item) is not dict or item.get("class_name") != "__keras_tensor__":
                    break
            else:
                for item in arg:
                    inputs.append(_history_ref(item, where))
                continue
        _collect_keras3(arg, call, where, f"args[{position}]")
    for key, value in kwargs.items():
        before = len(call.inputs)
        _collect_keras3(value, call, where, key)
        if len(call.inputs) == before + 1 and _is_keras3_tensor(value):
            call.tensor_kwargs[key] = before
    return call


def _collect_tf_kwargs(kwargs: dict[str, Any], call: LayerCall) -> None:
    for key, value in kwargs.items():
        if key == "name":
            continue
        if _is_ref_list(value):
            call.tensor_kwargs[key] = len(call.inputs)
            call.inputs.append(TensorRef(value[0], value[1], value[2]))
        elif isinstance(value, list) and value and all(_is_ref_list(v) for v in value):
            for item in value:
                call.inputs.append(TensorRef(item[0], item[1], item[2]))
        else:
            call.constants.setdefault(key, value)


def _parse_tf_node(node: Any, where: str) -> LayerCall:
    call = LayerCall()
    refs: list[Any]
    if _is_ref_list(node):
        refs = [node]
    elif isinstance(node, list):
        refs = []
        stack = list(reversed(node))
        while stack:  # flatten nested structures of references
            item = stack.pop()
            if _is_ref_list(item):
                refs.append(item)
            elif isinstance(item, list):
                stack.extend(reversed(item))
            else:
                raise _fail(f"{where}: unreadable inbound node. Received: {_short(node)}")
    elif isinstance(node, dict):
        return _parse_keras3_node(node, where)
    else:
        raise _fail(f"{where}: unreadable inbound node. Received: {_short(node)}")
    seen_kwargs = False
    for position, ref in enumerate(refs):
        if ref[0] == _CONSTANT_VALUE:
            call.constants[f"args[{position}]"] = ref[2]
        else:
            call.inputs.append(TensorRef(ref[0], ref[1], ref[2]))
        if len(ref) == 4 and ref[3] and not seen_kwargs:
            seen_kwargs = True
            _collect_tf_kwargs(ref[3], call)
    return call


def _parse_calls(entry: dict[str, Any], name: str) -> list[LayerCall]:
    nodes = entry.get("inbound_nodes", [])
    if nodes is None:
        return []
    where = f"{entry['class_name']} '{name}'"
    if not isinstance(nodes, list):
        raise _fail(f"{where}: inbound_nodes must be a list. Received: {_short(nodes)}")
    if _is_ref_list(nodes):  # a single reference written without the outer list
        nodes = [nodes]
    calls: list[LayerCall] = []
    for node in nodes:
        if isinstance(node, dict):
            calls.append(_parse_keras3_node(node, where))
        else:
            calls.append(_parse_tf_node(node, where))
    return calls


def _parse_refs(value: Any, what: str) -> list[TensorRef]:
    if value is None:
        return []
    if _is_ref_list(value):
        return [TensorRef(value[0], value[1], value[2])]
    if isinstance(value, dict):  # Keras 3 may write a dict of named inputs
        value = list(value.values())
    if not isinstance(value, list):
        raise _fail(f"{what} must be a list of [layer, node, tensor]. Received: {_short(value)}")
    refs: list[TensorRef] = []
    for item in value:
        if _is_ref_list(item):
            refs.append(TensorRef(item[0], item[1], item[2]))
        elif _is_keras3_tensor(item):
            refs.append(_history_ref(item, what))
        elif isinstance(item, (list, dict)):
            refs.extend(_parse_refs(item, what))
        else:
            raise _fail(f"{what} must be a list of [layer, node, tensor]. Received: {_short(value)}")
    return refs


# -- models --------------------------------------------------------------------------------


def _detect_format(top: dict[str, Any], config: dict[str, Any]) -> str:
    version = top.get("keras_version")
    if isinstance(version, str) and version.startswith("2."):
        return "tf_keras"
    layers = config.get("layers") or []
    for entry in layers[:4] if isinstance(layers, list) else []:
        if not isinstance(entry, dict):
            continue
        nodes = entry.get("inbound_nodes")
        if isinstance(nodes, list) and nodes and isinstance(nodes[0], list):
            return "tf_keras"
        layer_config = entry.get("config")
        if isinstance(layer_config, dict) and (
            "batch_input_shape" in layer_config or isinstance(layer_config.get("dtype"), str)
        ):
            return "tf_keras"
    return "keras3"


def _parse_model(entry: dict[str, Any], fmt: str, depth: int, path: str) -> ModelGraph:
    if depth > 64:
        raise _fail(f"models are nested more than 64 deep at '{path}'")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise _fail(f"model config must be an object. Received: config={_short(config)}")
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise _fail(f"model '{path}' has no layers list. Received: layers={_short(layers)}")
    name = config.get("name") or entry.get("name") or "model"
    if not isinstance(name, str):
        raise _fail(f"model names must be strings. Received: name={_short(name)}")
    class_name = entry.get("class_name", "Functional")
    is_sequential = class_name == "Sequential" or ("input_layers" not in config and "output_layers" not in config)
    if is_sequential:
        graph = _parse_sequential(config, name, fmt, depth, path)
    else:
        graph = _parse_functional(config, name, class_name, fmt, depth, path)
    graph.trainable = config.get("trainable", True) is not False
    return graph


def _layer_node(entry: dict[str, Any], name: str, fmt: str, depth: int, path: str) -> LayerNode:
    config = entry.get("config") or {}
    module = entry.get("module")
    # (name, class_name, config, module), positional: see LayerResult in the engine's result_for
    node = LayerNode(name, entry["class_name"], config, module if isinstance(module, str) else None)
    if is_operation(node.module):
        node.operation = True
        node.listed = False  # Keras 3 functional ops are not in model.layers
    if is_model_config(entry):
        node.subgraph = _parse_model(entry, fmt, depth + 1, f"{path}/{name}")
    return node


def _parse_sequential(config: dict[str, Any], name: str, fmt: str, depth: int, path: str) -> ModelGraph:
    entries = config["layers"]
    nodes: list[LayerNode] = []
    seen: set[str] = set()
    for position, raw in enumerate(entries):
        entry = _check_entry(raw, f"Sequential '{name}'")
        layer_name = _entry_name(entry, position)
        if layer_name in seen:
            raise _fail(f"Sequential '{name}': two layers are named '{layer_name}'")
        seen.add(layer_name)
        nodes.append(_layer_node(entry, layer_name, fmt, depth, path))

    input_shape: Shape | None = None
    if nodes and nodes[0].class_name == "InputLayer":
        input_node = nodes[0]
        input_node.listed = False
        input_shape = _input_shape_of_input_layer(input_node.config, input_node.name)
        body = nodes[1:]
    else:
        body = nodes
        declared = None
        first = body[0] if body else None
        if first is not None:
            for key in ("batch_input_shape", "batch_shape"):
                if first.config.get(key) is not None:
                    declared = parse_shape(first.config[key], f"{first.class_name} '{first.name}': {key}")
                    break
            else:
                if first.config.get("input_shape") is not None:
                    declared = (
                        None,
                        *parse_shape(first.config["input_shape"], f"'{first.name}': input_shape"),
                    )
        if declared is None and config.get("build_input_shape") is not None:
            declared = parse_shape(config["build_input_shape"], f"Sequential '{name}': build_input_shape")
        input_shape = declared
        input_name = f"{first.name}_input" if first is not None else f"{name}_input"
        input_node = LayerNode(
            name=input_name,
            class_name="InputLayer",
            config={"batch_shape": list(input_shape) if input_shape is not None else None},
            listed=False,
        )
        nodes = [input_node, *body]
    previous = TensorRef(input_node.name, 0, 0)
    for node in body:
        node.calls = [LayerCall(inputs=[previous])]
        previous = TensorRef(node.name, 0, 0)
    return ModelGraph(
        name=name,
        class_name="Sequential",
        layers=nodes,
        inputs=[TensorRef(input_node.name, 0, 0)],
        outputs=[previous],
        input_shapes=[input_shape],
        format=fmt,
    )


def _node_offset(node: LayerNode, fmt: str, for_model_io: bool) -> int:
    """How many leading construction nodes Keras counts for a nested model.

    tf.keras counts one for every functional model built on an InputLayer
    (Sequential with an input shape included), in every reference; Keras 3
    only in ``input_layers``/``output_layers`` and only for Functional.
    """
    sub = node.subgraph
    if sub is None:
        return 0
    if fmt == "tf_keras":
        # Sequential counts the construction node only when built on an input shape
        return 1 if sub.class_name != "Sequential" or sub.input_shapes[0] is not None else 0
    if for_model_io and sub.class_name != "Sequential":
        return 1
    return 0


def _resolve(ref: TensorRef, by_name: dict[str, LayerNode], fmt: str, io: bool, where: str) -> TensorRef:
    """The reference with its node index as this graph counts calls (the conventions of Keras
    versions differ for inputs and nested models); raises for a layer or call that does not
    exist. Its layer name becomes the layer's own string object (equal, the same text): every
    later lookup by that name (the walk, the prediction, the findings: tens of thousands on a
    large graph) then matches on identity, without reading both strings to compare them."""
    node = by_name.get(ref.layer)
    if node is None:
        raise _fail(f"{where} refers to a layer that does not exist. Received: '{ref.layer}'")
    ref.layer = node.name
    if node.class_name == "InputLayer" and not node.calls:
        if ref.node_index != 0:
            return TensorRef(ref.layer, 0, ref.tensor_index)
        return ref
    index = ref.node_index
    if node.subgraph is not None:
        index -= _node_offset(node, fmt, io)
    count = len(node.calls)
    if not 0 <= index < count:
        # tolerate the other convention before giving up
        for candidate in (ref.node_index, ref.node_index - 1):
            if 0 <= candidate < count:
                index = candidate
                break
        else:
            raise _fail(f"{where} refers to call {ref.node_index} of '{ref.layer}', which is called {count} time(s)")
    return ref if index == ref.node_index else TensorRef(ref.layer, index, ref.tensor_index)


def _parse_functional(
    config: dict[str, Any], name: str, class_name: str, fmt: str, depth: int, path: str
) -> ModelGraph:
    nodes: list[LayerNode] = []
    by_name: dict[str, LayerNode] = {}
    where_model = f"model '{name}'"
    for position, raw in enumerate(config["layers"]):
        entry = _check_entry(raw, where_model)
        layer_name = _entry_name(entry, position)
        if layer_name in by_name:
            raise _fail(f"model '{name}': two layers are named '{layer_name}'")
        node = _layer_node(entry, layer_name, fmt, depth, path)
        node.calls = _parse_calls(entry, layer_name)
        nodes.append(node)
        by_name[layer_name] = node
    for node in nodes:
        for call in node.calls:
            refs = call.inputs
            for position, ref in enumerate(refs):
                target = by_name.get(ref.layer)
                if target is not None and target.subgraph is None and (
                    0 <= ref.node_index < len(target.calls) if target.calls
                    else ref.node_index == 0 and target.class_name == "InputLayer"
                ):
                    # Names a call that exists, as written (what _resolve keeps): only the
                    # name becomes the layer's own string object (see _resolve).
                    ref.layer = target.name
                    continue
                refs[position] = _resolve(ref, by_name, fmt, False, f"{node.class_name} '{node.name}'")
    inputs = [
        _resolve(r, by_name, fmt, True, f"model '{name}' input_layers")
        for r in _parse_refs(config.get("input_layers"), f"model '{name}' input_layers")
    ]
    outputs = [
        _resolve(r, by_name, fmt, True, f"model '{name}' output_layers")
        for r in _parse_refs(config.get("output_layers"), f"model '{name}' output_layers")
    ]
    if not outputs:
        raise _fail(f"model '{name}' declares no output_layers. Received: {_short(config.get('output_layers'))}")
    if not inputs:
        inputs = [TensorRef(n.name, 0, 0) for n in nodes if n.class_name == "InputLayer"]
    input_shapes: list[Shape | None] = []
    for ref in inputs:
        node = by_name[ref.layer]
        if node.class_name != "InputLayer":
            raise _fail(f"model '{name}': input '{ref.layer}' is a {node.class_name}, not an InputLayer")
        input_shapes.append(_input_shape_of_input_layer(node.config, node.name))
    return ModelGraph(
        name=name,
        class_name="Functional" if class_name in ("Model", "Functional") else class_name,
        layers=nodes,
        inputs=inputs,
        outputs=outputs,
        input_shapes=input_shapes,
        format=fmt,
    )


def build_graph(config: Any) -> ModelGraph:
    """Parse a Keras model config (``json.loads(model.to_json())``) into a ModelGraph.

    Raises :class:`app.errors.InvalidArchitecture` for anything it cannot read.

    >>> build_graph({"class_name": "Dense"})
    Traceback (most recent call last):
    ...
    app.errors.InvalidArchitecture: expected a model config (Sequential or Functional) ...
    """
    if not isinstance(config, dict):
        raise _fail(f"expected a Keras model config object. Received: {type(config).__name__}")
    top = config
    if "model_config" in top and isinstance(top["model_config"], dict):
        top = top["model_config"]
    if "class_name" not in top and isinstance(top.get("layers"), list):
        top = {"class_name": "Functional" if "output_layers" in top else "Sequential", "config": top}
    inner = top.get("config")
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        raise _fail(
            "expected a model config (Sequential or Functional) with a layers list. "
            f"Received: class_name={_short(top.get('class_name'))}"
        )
    fmt = _detect_format(top, inner)
    return _parse_model(top, fmt, 0, str(inner.get("name") or "model"))
