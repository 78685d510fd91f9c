"""Per-object checks of the safety gate: is this object reference one convlens lets Keras build?

Every dict that carries ``class_name``, ``module`` or ``registered_name`` is an object Keras
would resolve and build; :func:`check_object` accepts only exact ``(module, class_name)``
pairs from :mod:`app.security.allowlist` (and the special data objects Keras writes for
tensors, tuples and arrays). Strings that Keras resolves by name (activations, initializers,
tf.keras op names) must be known names (:func:`check_key_value`), and no string may point at
Python code outside Keras or at Keras's non-modelling APIs (:func:`check_string`). The walk
over the whole document, which calls these for every object and key, is
:func:`app.security.gate.gate_architecture`.

Example::

    >>> check_object({"module": "keras.layers", "class_name": "Conv2D", "config": {}}, "$", None)
    'layer'
    >>> check_object({"module": "keras.layers", "class_name": "Lambda", "config": {}}, "$", None)
    Traceback (most recent call last):
    ...
    app.errors.UnsafeArchitecture: ...
"""

from __future__ import annotations

import re
from typing import Any

from app.errors import UnsafeArchitecture
from app.security import allowlist as al

_SPECIAL_ALLOWED = frozenset(
    {"__keras_tensor__", "__tuple__", "__numpy__", "__tensor__", "__ellipsis__", "__slice__"}
)
#: Special objects with nothing to check beyond their class name (arrays check their dtype).
_PLAIN_SPECIALS = _SPECIAL_ALLOWED - {"__numpy__", "__tensor__"}
_NUMERIC_DTYPES = frozenset(
    """
    float16 float32 float64 bfloat16 int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool
    complex64 complex128 float8_e4m3fn float8_e5m2
    """.split()
)
_DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
_OUTSIDE_KERAS_PACKAGES = al.PYTHON_REFERENCE_PACKAGES - {"keras", "tf_keras", "tensorflow", "tf"}
_LAYERISH = frozenset({al.LAYER, al.MODEL, al.TF_OP_LAYER, al.OPERATION})
#: Keys whose string value Keras resolves as a named initializer, regularizer or constraint.
_NAMED_OBJECT_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def object_name(node: dict[str, Any]) -> str | None:
    name = node.get("name")
    if not isinstance(name, str):
        inner = node.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
    return name if isinstance(name, str) else None


def render(path: Any) -> str:
    """A location as text: ``path`` is a string, or ``(parent, key_or_index)`` pairs built
    while walking (cheap to make, rendered only when something is refused).

    >>> render(((("$", "config"), "layers"), 3))
    '$.config.layers[3]'
    """
    steps = []
    while isinstance(path, tuple):
        path, step = path
        steps.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return str(path) + "".join(reversed(steps))


def refuse(reason: str, *, layer: str | None, path: Any, received: str) -> UnsafeArchitecture:
    where = f"Layer '{layer}'" if layer else "The architecture"
    if len(received) > 300:
        received = received[:300] + "..."
    return UnsafeArchitecture(
        f"{where} is refused: {reason}. Received: {received} at {render(path)[:300]}",
        layer=layer,
        reason=reason,
    )


def check_object(node: dict[str, Any], path: Any, layer: str | None) -> str | None:
    """Check one object reference; return its allowlist category."""
    class_name = node.get("class_name")
    module = node.get("module")
    if node.get("registered_name") is None and (module is None or type(module) is str):
        # the common case, decided without building the messages of a refusal
        if type(class_name) is str and class_name not in al.LOOKUP_LAYERS:
            category = al.ALLOWED_PAIRS.get((module, class_name))
            if category is not None and category != al.TF_OP_LAYER:
                return category
            if module is None and class_name in _PLAIN_SPECIALS:
                return None
    return _check_object(node, path, layer)


def _check_object(node: dict[str, Any], path: Any, layer: str | None) -> str | None:
    class_name = node.get("class_name")
    module = node.get("module")
    registered = node.get("registered_name")
    name = object_name(node) or layer
    received = f"module={module!r}, class_name={class_name!r}"
    if registered is not None:
        received += f", registered_name={registered!r}"

    if not isinstance(class_name, str):
        raise refuse("an object reference without a string class_name", layer=name,
                      path=path, received=received)
    if module is not None and not isinstance(module, str):
        raise refuse("module must be a string", layer=name, path=path, received=received)
    if registered is not None and not isinstance(registered, str):
        raise refuse("registered_name must be a string", layer=name, path=path,
                      received=received)

    if class_name in _SPECIAL_ALLOWED:
        _check_special(node, class_name, module, registered, path, name, received)
        return None
    if class_name == "function":
        _check_function(node, module, registered, path, name, received)
        return None

    category = al.ALLOWED_PAIRS.get((module, class_name))
    if category is None:
        raise refuse(_reason_for_unknown(module, class_name), layer=name, path=path,
                      received=received)
    if registered is not None and registered != class_name and registered not in (
        al.ALLOWED_REGISTERED_NAMES.get((module, class_name), frozenset())
    ):
        raise refuse(
            f"registered_name {registered!r} would resolve a registered custom object "
            f"instead of Keras's {class_name}",
            layer=name, path=path, received=received,
        )

    inner = node.get("config")
    if category == al.TF_OP_LAYER:
        function = inner.get("function") if isinstance(inner, dict) else None
        if not isinstance(function, str) or function not in al.TF_OP_FUNCTIONS:
            raise refuse(
                f"{class_name} may only apply allowlisted TensorFlow math ops; "
                + (f"tf.{function} is not one of them" if isinstance(function, str) else
                   f"its function must name one as a string, not a JSON {type(function).__name__}"),
                layer=name, path=path, received=f"{received}, function={function!r}",
            )
    if class_name in al.LOOKUP_LAYERS and isinstance(inner, dict):
        for key in al.LOOKUP_PATH_KEYS:
            if isinstance(inner.get(key), str):
                raise refuse(
                    f"{class_name}.{key} is a file path ({inner[key]!r}); convlens only "
                    "accepts vocabularies given inline",
                    layer=name, path=((path, "config"), key), received=received,
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
                   registered: str | None, path: Any, layer: str | None, received: str) -> None:
    if module is not None or registered is not None:
        raise refuse(f"{class_name} never carries a module or registered_name",
                      layer=layer, path=path, received=received)
    if class_name in {"__numpy__", "__tensor__"}:
        inner = node.get("config")
        dtype = inner.get("dtype") if isinstance(inner, dict) else None
        if dtype not in _NUMERIC_DTYPES:
            raise refuse(f"{class_name} arrays must have a numeric dtype",
                          layer=layer, path=path, received=f"{received}, dtype={dtype!r}")


def _check_function(node: dict[str, Any], module: str | None, registered: str | None,
                    path: Any, layer: str | None, received: str) -> None:
    function = node.get("config")
    received = f"{received}, config={function!r}"[:400]
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
    raise refuse(reason, layer=layer, path=path, received=received)


def check_key_value(key: str, value: Any, path: Any, layer: str | None,
                     owner_class: str | None) -> None:
    if not isinstance(value, str):
        return
    if key in al.ACTIVATION_KEYS and value not in al.ACTIVATION_NAMES:
        raise refuse(f"{key} {value!r} is not a Keras activation", layer=layer, path=path,
                      received=f"{key}={value!r}")
    if key.endswith(_NAMED_OBJECT_SUFFIXES):
        for suffix, names, what in (
            ("_initializer", al.INITIALIZER_NAMES, "initializer"),
            ("_regularizer", al.REGULARIZER_NAMES, "regularizer"),
            ("_constraint", al.CONSTRAINT_NAMES, "constraint"),
        ):
            if key.endswith(suffix) and value not in names:
                raise refuse(f"{key} {value!r} is not a Keras {what}", layer=layer, path=path,
                              received=f"{key}={value!r}")
    if key == "function" and owner_class not in {"TFOpLambda", "SlicingOpLambda"}:
        raise refuse(f"a function reference {value!r} outside a tf.keras op layer",
                      layer=layer, path=path, received=f"{key}={value!r}")
    check_string(value, path, layer)


def check_string(value: str, path: Any, layer: str | None) -> None:
    """Refuse strings that name Python code outside Keras or Keras's non-modelling APIs."""
    if "." not in value or len(value) > 200 or not _DOTTED_NAME.match(value):
        return
    parts = value.split(".")
    if parts[0] not in al.PYTHON_REFERENCE_PACKAGES:
        return
    if parts[-1] in al.NON_MODELLING_FUNCTIONS:
        raise refuse(f"{value!r} names a Keras non-modelling API", layer=layer, path=path,
                      received=repr(value))
    if parts[0] in _OUTSIDE_KERAS_PACKAGES:
        raise refuse(f"{value!r} names Python code outside Keras", layer=layer, path=path,
                      received=repr(value))
