"""The static safety gate: nothing reaches Keras unless every object in it is allowlisted.

``validate_architecture`` walks the whole parsed config without recursion. Every dict that
carries ``class_name``, ``module`` or ``registered_name`` is an object Keras would resolve
and build; it must be an exact ``(module, class_name)`` pair from
:mod:`app.security.allowlist`. Strings that Keras resolves by name (activations,
initializers, tf.keras op names) must be known names, and no string may point at Python
code outside Keras or at Keras's non-modelling APIs. The top-level ``compile_config`` is
ignored (convlens never compiles an uploaded model).

Example::

    >>> from app.config import Settings
    >>> validate_architecture({"class_name": "Sequential", "config": {"layers": []}}, Settings())
    >>> validate_architecture({"class_name": "Lambda", "config": {}}, Settings())
    Traceback (most recent call last):
    ...
    app.errors.UnsafeArchitecture: ...
"""

from __future__ import annotations

import re
from typing import Any

from app.config import Settings
from app.errors import UnsafeArchitecture
from app.security import allowlist as al

_SPECIAL_ALLOWED = frozenset(
    {"__keras_tensor__", "__tuple__", "__numpy__", "__tensor__", "__ellipsis__", "__slice__"}
)
_NUMERIC_DTYPES = frozenset(
    """
    float16 float32 float64 bfloat16 int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool
    complex64 complex128 float8_e4m3fn float8_e5m2
    """.split()
)
_DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
_OUTSIDE_KERAS_PACKAGES = al.PYTHON_REFERENCE_PACKAGES - {"keras", "tf_keras", "tensorflow", "tf"}
_LAYERISH = frozenset({al.LAYER, al.MODEL, al.TF_OP_LAYER, al.OPERATION})


def validate_architecture(config: dict[str, Any], settings: Settings) -> None:
    """Raise :class:`UnsafeArchitecture` unless every object in ``config`` is allowlisted.

    ``settings`` is accepted for symmetry with the other gates (the allowlist is fixed).
    """
    del settings  # the allowlist does not depend on settings
    if not isinstance(config, dict):
        raise UnsafeArchitecture(
            f"The architecture must be a JSON object. Received: {type(config).__name__}",
            reason="not_an_object",
        )
    # (node, path, enclosing layer name, class of the object whose "config" this node is)
    stack: list[tuple[Any, str, str | None, str | None]] = []
    _check_object(config, "$", None)
    top_name = _object_name(config)
    top_class = config.get("class_name") if isinstance(config.get("class_name"), str) else None
    for key, value in config.items():
        if key == "compile_config":
            continue  # never used: convlens does not compile uploaded models
        _check_key_value(key, value, f"$.{key}", top_name, top_class)
        if isinstance(value, (dict, list)):
            stack.append((value, f"$.{key}", top_name, top_class if key == "config" else None))

    while stack:
        node, path, layer, parent_class = stack.pop()
        if isinstance(node, dict):
            owner = layer
            own_class = node.get("class_name")
            if "class_name" in node or "module" in node or "registered_name" in node:
                category = _check_object(node, path, layer)
                if category in _LAYERISH:
                    owner = _object_name(node) or layer
            owner_class = own_class if isinstance(own_class, str) else parent_class
            for key, value in node.items():
                child_path = f"{path}.{key}"
                _check_key_value(key, value, child_path, owner, owner_class)
                if isinstance(value, (dict, list)):
                    is_config = key == "config" and isinstance(own_class, str)
                    config_of = own_class if is_config else None
                    stack.append((value, child_path, owner, config_of))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, (dict, list)):
                    stack.append((item, f"{path}[{index}]", layer, None))
                elif isinstance(item, str):
                    _check_string(item, f"{path}[{index}]", layer)


def _object_name(node: dict[str, Any]) -> str | None:
    name = node.get("name")
    if not isinstance(name, str):
        inner = node.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
    return name if isinstance(name, str) else None


def _refuse(reason: str, *, layer: str | None, path: str, received: str) -> UnsafeArchitecture:
    where = f"Layer '{layer}'" if layer else "The architecture"
    return UnsafeArchitecture(
        f"{where} is refused: {reason}. Received: {received} at {path}",
        layer=layer,
        reason=reason,
    )


def _check_object(node: dict[str, Any], path: str, layer: str | None) -> str | None:
    """Check one object reference; return its allowlist category."""
    class_name = node.get("class_name")
    module = node.get("module")
    registered = node.get("registered_name")
    name = _object_name(node) or layer
    received = f"module={module!r}, class_name={class_name!r}"
    if registered is not None:
        received += f", registered_name={registered!r}"

    if not isinstance(class_name, str):
        raise _refuse("an object reference without a string class_name", layer=name,
                      path=path, received=received)
    if module is not None and not isinstance(module, str):
        raise _refuse("module must be a string", layer=name, path=path, received=received)
    if registered is not None and not isinstance(registered, str):
        raise _refuse("registered_name must be a string", layer=name, path=path,
                      received=received)

    if class_name in _SPECIAL_ALLOWED:
        _check_special(node, class_name, module, registered, path, name, received)
        return None
    if class_name == "function":
        _check_function(node, module, registered, path, name, received)
        return None

    category = al.ALLOWED_PAIRS.get((module, class_name))
    if category is None:
        raise _refuse(_reason_for_unknown(module, class_name), layer=name, path=path,
                      received=received)
    if registered is not None and registered != class_name and registered not in (
        al.ALLOWED_REGISTERED_NAMES.get((module, class_name), frozenset())
    ):
        raise _refuse(
            f"registered_name {registered!r} would resolve a registered custom object "
            f"instead of Keras's {class_name}",
            layer=name, path=path, received=received,
        )

    inner = node.get("config")
    if category == al.TF_OP_LAYER:
        function = inner.get("function") if isinstance(inner, dict) else None
        if function not in al.TF_OP_FUNCTIONS:
            raise _refuse(
                f"{class_name} may only apply allowlisted TensorFlow math ops; "
                f"tf.{function} is not one of them",
                layer=name, path=path, received=f"{received}, function={function!r}",
            )
    if class_name in al.LOOKUP_LAYERS and isinstance(inner, dict):
        for key in al.LOOKUP_PATH_KEYS:
            if isinstance(inner.get(key), str):
                raise _refuse(
                    f"{class_name}.{key} is a file path ({inner[key]!r}); convlens only "
                    "accepts vocabularies given inline",
                    layer=name, path=f"{path}.config.{key}", received=received,
                )
    return category


def _reason_for_unknown(module: str | None, class_name: str) -> str:
    if class_name in al.DENIED_CLASS_REASONS:
        return f"{class_name}: {al.DENIED_CLASS_REASONS[class_name]}"
    if class_name.startswith("__") and class_name.endswith("__"):
        return f"{class_name} is not a special object convlens accepts"
    package = module.split(".", 1)[0] if module else None
    if package is not None and package not in {"keras", "tf_keras"}:
        return f"module {module!r} is outside Keras"
    if class_name in al.NON_MODELLING_FUNCTIONS or (
        module and module.rsplit(".", 1)[-1] in {"saving", "saving_lib", "saving_api",
                                                 "serialization_lib", "config", "file_utils"}
    ):
        return f"{module}.{class_name} is a Keras non-modelling API"
    return (f"{(module + '.') if module else ''}{class_name} is not on convlens's allowlist of "
            "Keras modelling objects")


def _check_special(node: dict[str, Any], class_name: str, module: str | None,
                   registered: str | None, path: str, layer: str | None, received: str) -> None:
    if module is not None or registered is not None:
        raise _refuse(f"{class_name} never carries a module or registered_name",
                      layer=layer, path=path, received=received)
    if class_name in {"__numpy__", "__tensor__"}:
        inner = node.get("config")
        dtype = inner.get("dtype") if isinstance(inner, dict) else None
        if dtype not in _NUMERIC_DTYPES:
            raise _refuse(f"{class_name} arrays must have a numeric dtype",
                          layer=layer, path=path, received=f"{received}, dtype={dtype!r}")


def _check_function(node: dict[str, Any], module: str | None, registered: str | None,
                    path: str, layer: str | None, received: str) -> None:
    function = node.get("config")
    received = f"{received}, config={function!r}"
    if (
        module in al.ACTIVATION_FUNCTION_MODULES
        and isinstance(function, str)
        and function in al.ACTIVATION_NAMES
        and registered in (None, function)
    ):
        return
    qualified = f"{module}.{function}" if module else str(function)
    package = module.split(".", 1)[0] if module else None
    if isinstance(function, str) and (
        function in al.NON_MODELLING_FUNCTIONS or (registered or "") in al.NON_MODELLING_FUNCTIONS
    ):
        reason = f"{qualified} is a Keras non-modelling function"
    elif package is not None and package not in {"keras", "tf_keras"}:
        reason = f"a reference to the function {qualified}, outside Keras"
    else:
        reason = f"a reference to the Python function {qualified}, not a Keras activation"
    raise _refuse(reason, layer=layer, path=path, received=received)


def _check_key_value(key: str, value: Any, path: str, layer: str | None,
                     owner_class: str | None) -> None:
    if not isinstance(value, str):
        return
    if key in al.ACTIVATION_KEYS and value not in al.ACTIVATION_NAMES:
        raise _refuse(f"{key} {value!r} is not a Keras activation", layer=layer, path=path,
                      received=f"{key}={value!r}")
    for suffix, names, what in (
        ("_initializer", al.INITIALIZER_NAMES, "initializer"),
        ("_regularizer", al.REGULARIZER_NAMES, "regularizer"),
        ("_constraint", al.CONSTRAINT_NAMES, "constraint"),
    ):
        if key.endswith(suffix) and value not in names:
            raise _refuse(f"{key} {value!r} is not a Keras {what}", layer=layer, path=path,
                          received=f"{key}={value!r}")
    if key == "function" and owner_class not in {"TFOpLambda", "SlicingOpLambda"}:
        raise _refuse(f"a function reference {value!r} outside a tf.keras op layer",
                      layer=layer, path=path, received=f"{key}={value!r}")
    _check_string(value, path, layer)


def _check_string(value: str, path: str, layer: str | None) -> None:
    """Refuse strings that name Python code outside Keras or Keras's non-modelling APIs."""
    if len(value) > 200 or not _DOTTED_NAME.match(value):
        return
    parts = value.split(".")
    if parts[0] not in al.PYTHON_REFERENCE_PACKAGES:
        return
    if parts[-1] in al.NON_MODELLING_FUNCTIONS:
        raise _refuse(f"{value!r} names a Keras non-modelling API", layer=layer, path=path,
                      received=repr(value))
    if parts[0] in _OUTSIDE_KERAS_PACKAGES:
        raise _refuse(f"{value!r} names Python code outside Keras", layer=layer, path=path,
                      received=repr(value))
