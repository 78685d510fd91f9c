"""The safety gate: one default-deny walk over everything Keras would see.

``gate_architecture(config, settings)`` walks a model config once and returns the sanitised
copy that is stored, hashed and later handed to Keras. In that one pass it

1. **keeps only what is needed**: at every level a key survives only if the analysis or Keras
   reads it: the model's own record (``class_name``, ``module``, ``config``, ...), each
   model config (``layers``, ``input_layers``, ...), each layer entry (``name``,
   ``inbound_nodes``, ``build_config``, ...) and, inside every object's ``config``, the
   arguments that object's constructor accepts in Keras 3 or tf_keras
   (``app/security/config_keys.json``, generated from the two libraries by
   ``python -m tests.security.generate_config_keys``). ``compile_config`` (at any level:
   Keras would rebuild optimizers, losses and metrics from it) is dropped unread. Any other
   key is dropped too, after a look inside: an unknown key that carries an object reference
   (an attempt to smuggle one past the allowlist) is refused instead;
2. **checks every object reference that remains** against the allowlist
   (:mod:`app.security.validator`): layers, models, initializers, ..., activation
   functions, the special data objects Keras writes (tensors, tuples, arrays), and inside
   the inbound nodes of a layer only tensors and constants;
3. **checks names** the way Keras does: a layer or model name must be a string, and in a
   Keras 3 document it may not contain ``/`` (``Operation.__init__``; tf.keras 2 allows it);
4. **applies the static limits**: layers (nested models included), nesting of models and
   wrappers, single-layer sizes, declared input sizes, containers in the document.

Nothing here imports Keras: the walk is plain Python over dicts and lists, and it never
executes or imports anything named in the config.

Example::

    >>> from app.config import Settings
    >>> dense = {"class_name": "Dense", "config": {"name": "d", "units": 2, "sneaky": 1}}
    >>> config = {"class_name": "Sequential", "config": {"name": "m", "layers": [dense]},
    ...           "compile_config": {"loss": {"class_name": "function", "module": "os"}}}
    >>> sanitised = gate_architecture(config, Settings())
    >>> sanitised["config"]["layers"][0]["config"], "compile_config" in sanitised
    ({'name': 'd', 'units': 2}, False)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from app.config import Settings
from app.errors import InvalidArchitecture, ResourceLimitExceeded
from app.security import allowlist as al
from app.security import limits
from app.security.validator import check_key_value, check_object, check_string, object_name, refuse, render

__all__ = ["gate_architecture", "accepted_config_keys"]

_KEYS_FILE = Path(__file__).with_name("config_keys.json")


def _load_keys() -> dict[str, dict[str, frozenset[str]]]:
    table = json.loads(_KEYS_FILE.read_text(encoding="utf-8"))["keys"]
    return {category: {name: frozenset(keys) for name, keys in classes.items()}
            for category, classes in table.items()}


#: category -> class_name -> the config keys its constructor accepts (Keras 3 or tf_keras).
CONFIG_KEYS: dict[str, dict[str, frozenset[str]]] = _load_keys()

#: Keys every layer-like config may carry (``Layer.__init__`` / ``Operation.__init__``).
_BASE_LAYER_KEYS = frozenset({"name", "trainable", "dtype"})
#: The config of a Sequential / Functional model (Keras 3 and tf_keras ``get_config``).
MODEL_CONFIG_KEYS = frozenset(
    {"name", "trainable", "dtype", "layers", "input_layers", "output_layers", "build_input_shape"}
)
#: The model record at the top of the document.
TOP_KEYS = frozenset(
    {"class_name", "module", "registered_name", "config", "build_config", "keras_version", "backend"}
)
#: A layer entry in a model's ``layers`` list.
ENTRY_KEYS = frozenset(
    {"class_name", "module", "registered_name", "config", "name", "inbound_nodes", "build_config",
     "shared_object_id"}
)
#: Any other object (an initializer, a wrapped layer, a dtype policy, ...).
OBJECT_KEYS = frozenset(
    {"class_name", "module", "registered_name", "config", "build_config", "shared_object_id"}
)
#: Dropped wherever they appear, without looking inside: Keras rebuilds optimizers, losses and
#: metrics from them (``compile_from_config``), and convlens never compiles an uploaded model.
STRIPPED_KEYS = frozenset({"compile_config"})
#: ``build_config`` holds the shapes ``build()`` is called with.
BUILD_CONFIG_KEYS = frozenset({"input_shape", "shapes_dict"})
#: One call of a layer in Keras 3 (tf_keras writes lists instead).
NODE_KEYS = frozenset({"args", "kwargs"})
#: The special data objects Keras writes: their object keys and their config keys.
SPECIAL_OBJECT_KEYS = frozenset({"class_name", "config", "items"})
SPECIAL_CONFIG_KEYS: dict[str, frozenset[str]] = {
    "__keras_tensor__": frozenset({"shape", "dtype", "keras_history"}),
    "__tuple__": frozenset({"value"}),
    "__numpy__": frozenset({"value", "dtype"}),
    "__tensor__": frozenset({"value", "dtype"}),
    "__ellipsis__": frozenset(),
    "__slice__": frozenset({"start", "stop", "step"}),
}
_LAYERISH = frozenset({al.LAYER, al.MODEL, al.TF_OP_LAYER, al.OPERATION})
#: Categories whose configs :meth:`_Walk.layer_config` walks once per content (not models:
#: their configs hold the layers).
_MEMO_CATEGORIES = _LAYERISH - {al.MODEL}
_REFERENCE_KEYS = ("class_name", "module", "registered_name")

# roles of an object in the document
_TOP, _ENTRY, _NESTED = "top", "entry", "nested"
#: JSON scalars: an object whose values are these (and whose ``config`` holds only these) is
#: a leaf of the walk (a dtype policy, an initializer, a regularizer).
_SCALARS = frozenset({str, int, float, bool, type(None)})
#: Values that need no check of their own (strings may name code; containers hold more).
_PLAIN_NUMBERS = frozenset({int, float, bool, type(None)})
#: Leaves larger than this are walked every time (the memo is for the small repeated ones).
_LEAF_MAX_KEYS = 32


def _leaf_key(node: dict[str, Any]) -> bytes | None:
    """The exact content of a leaf object (its JSON, which tells ``1``, ``1.0`` and ``true``
    apart and keeps key order), or ``None`` when ``node`` holds containers beyond ``config``.

    >>> _leaf_key({"class_name": "Zeros", "config": {}})
    b'{"class_name":"Zeros","config":{}}'
    >>> _leaf_key({"class_name": "Constant", "config": {"value": [1]}}) is None
    True
    """
    config = node.get("config")
    if type(config) is dict and (len(config) > _LEAF_MAX_KEYS
                                 or not _SCALARS.issuperset(map(type, config.values()))):
        return None
    if len(node) > _LEAF_MAX_KEYS:
        return None
    # every value a scalar, but for a config that is a container
    containers = len(node) - sum(map(_SCALARS.__contains__, map(type, node.values())))
    if containers > (type(config) is dict or type(config) is list):
        return None
    return orjson.dumps(node)


def _accepted_keys(category: str | None, class_name: str) -> frozenset[str]:
    if category == al.MODEL:
        return MODEL_CONFIG_KEYS
    keys = CONFIG_KEYS.get(category or "", {}).get(class_name, frozenset())
    return keys | _BASE_LAYER_KEYS if category in _LAYERISH else keys


#: ``accepted_config_keys`` of every class in ``CONFIG_KEYS``, computed once (the walk asks
#: for every object of the document).
_ACCEPTED: dict[tuple[str | None, str], frozenset[str]] = {
    (category, class_name): _accepted_keys(category, class_name)
    for category, classes in CONFIG_KEYS.items() for class_name in classes
}


def accepted_config_keys(category: str | None, class_name: str) -> frozenset[str]:
    """The config keys the gate keeps for one allowlisted class.

    >>> "filters" in accepted_config_keys("layer", "Conv2D")
    True
    >>> "compile_config" in accepted_config_keys("model", "Functional")
    False
    """
    keys = _ACCEPTED.get((category, class_name))
    return keys if keys is not None else _accepted_keys(category, class_name)


def _is_reference(node: dict[str, Any]) -> bool:
    return "class_name" in node or "module" in node or "registered_name" in node


def _check_name(value: Any, class_name: str, path: Any, keras3: bool) -> None:
    """Keras 3 refuses names that are not strings or contain '/' (``Operation.__init__``);
    tf.keras 2 accepts '/' (its DenseNet and MobileNetV3 use it), so only a document in the
    Keras 3 form is held to that. ``class_name`` names the object in a refusal."""
    if value is None or (type(value) is dict and _is_reference(value)):
        return  # an object where a name belongs: the walk refuses it as an object
    if not isinstance(value, str):  # (the messages are built only when they are raised)
        raise InvalidArchitecture(
            f"{class_name} name must be a string. Received: name={str(value)[:100]!r} at {render(path)}",
            code="invalid_layer_name",
        )
    if keras3 and "/" in value:
        raise InvalidArchitecture(
            f"{class_name} name {value[:200]!r} contains '/', which Keras refuses in layer and model names "
            f"(it separates name scopes). Rename it. Received: name={value[:200]!r} at {render(path)}",
            code="invalid_layer_name",
        )


class _Walk:
    """One walk: the sanitised copy, and the counters of the static limits."""

    def __init__(self, settings: Settings, *, keras3: bool) -> None:
        self.settings = settings
        self.keras3 = keras3
        self.layers = 0
        self.containers = 0
        self.max_depth = settings.max_json_depth + 8  # the parser refuses deeper documents
        self.max_containers = settings.max_json_elements  # (read for every container)
        #: leaf objects already let through, by content: a model repeats the same dtype
        #: policy and initializers in every layer, and a leaf's sanitised form depends on its
        #: content alone (its place only names it in a refusal, and refusals are not kept).
        self.leaves: dict[bytes, dict[str, Any]] = {}
        #: layer configs already walked, by content without the name (:meth:`layer_config`):
        #: the sanitised JSON with the name null, and the containers it counted.
        self.configs: dict[tuple[str, str, int, bytes], tuple[bytes, int]] = {}

    # -- generic values ------------------------------------------------------------------

    def value(self, value: Any, path: Any, owner: str | None, depth: int, nesting: int,
              *, in_node: bool = False) -> Any:
        kind = type(value)
        if kind is dict:
            if _is_reference(value):
                return self.object(value, path, owner, _NESTED, depth + 1, nesting, in_node=in_node)
            return self.mapping(value, path, owner, None, depth + 1, nesting, in_node=in_node)
        if kind is list:
            if _PLAIN_NUMBERS.issuperset(map(type, value)):  # a shape, a stride: nothing to check
                self._count(depth + 1, path)
                return value.copy()
            return self.sequence(value, path, owner, depth + 1, nesting, in_node=in_node)
        if kind is str:
            check_string(value, path, owner)
        return value

    def sequence(self, items: list[Any], path: Any, owner: str | None, depth: int, nesting: int,
                 *, in_node: bool = False) -> list[Any]:
        """A list that holds more than numbers (:meth:`value` copies those itself)."""
        self._count(depth, path)
        out = []
        for index, item in enumerate(items):
            kind = type(item)
            if kind is dict or kind is list:
                out.append(self.value(item, (path, index), owner, depth, nesting, in_node=in_node))
            else:
                if kind is str:
                    check_string(item, (path, index), owner)
                out.append(item)
        return out

    def mapping(self, node: dict[str, Any], path: Any, owner: str | None, owner_class: str | None,
                depth: int, nesting: int, *, in_node: bool = False) -> dict[str, Any]:
        """A plain dict (no object reference): every key kept, every value checked."""
        self._count(depth, path)
        out = {}
        for key, item in node.items():
            child = (path, key)
            if isinstance(item, str):  # (check_key_value looks at strings only)
                check_key_value(key, item, child, owner, owner_class)
            kind = type(item)
            out[key] = (self.value(item, child, owner, depth, nesting, in_node=in_node)
                        if kind is dict or kind is list else item)
        return out

    def _count(self, depth: int, path: Any) -> None:
        self.containers += 1
        if self.containers > self.max_containers:
            raise ResourceLimitExceeded(
                f"The architecture holds more than {self.settings.max_json_elements:,} JSON "
                "containers. Received: a larger document",
                extra={"limit": "max_json_elements", "value": self.containers},
            )
        if depth > self.max_depth:
            raise ResourceLimitExceeded(
                f"The architecture nests more than {self.max_depth} levels deep. Received: "
                f"depth {depth} at {render(path)[:300]}",
                extra={"limit": "max_json_depth", "value": depth},
            )

    # -- dropped keys --------------------------------------------------------------------

    def dropped(self, value: Any, path: Any, owner: str | None, key: str, depth: int) -> None:
        """A key nothing reads: it goes, but not if it tries to carry an object past the gate.

        The whole value is checked like a kept one (a disallowed object or a code-like string
        is refused with its own reason), and any remaining reference to a class or a function
        is refused as well: it has no business under a key Keras does not accept.
        """
        check_key_value(key, value, path, owner, None)
        stack: list[tuple[Any, Any, int]] = [(value, path, depth + 1)]
        while stack:
            item, where, level = stack.pop()
            kind = type(item)
            if kind is dict:
                self._count(level, where)
                if _is_reference(item):
                    category = check_object(item, where, owner)
                    class_name = item.get("class_name")
                    if category is not None or class_name == "function":
                        raise refuse(
                            f"{key!r} is not a setting this object accepts, and it carries a "
                            f"reference to {item.get('module') or ''}{'.' if item.get('module') else ''}"
                            f"{class_name}; convlens drops unknown settings but refuses objects "
                            "hidden in them",
                            layer=owner, path=where, received=f"{key}={str(value)[:200]}",
                        )
                for child_key, child in item.items():
                    check_key_value(child_key, child, (where, child_key), owner, None)
                    stack.append((child, (where, child_key), level + 1))
            elif kind is list:
                self._count(level, where)
                stack.extend((child, (where, index), level + 1) for index, child in enumerate(item))
            elif kind is str:
                check_string(item, where, owner)

    # -- objects -------------------------------------------------------------------------

    def object(self, node: dict[str, Any], path: Any, owner: str | None, role: str, depth: int,
               nesting: int, *, in_node: bool = False) -> dict[str, Any]:
        if in_node and node.get("class_name") == "__keras_tensor__":
            tensor = self.keras_tensor(node, path, owner, depth)
            if tensor is not None:
                return tensor
        if role == _NESTED and not in_node:
            key = _leaf_key(node)
            if key is not None:
                kept = self.leaves.get(key)
                containers = self.containers + 1 + (type(node.get("config")) is dict)
                if (kept is not None and depth + 1 <= self.max_depth
                        and containers <= self.max_containers):
                    self.containers = containers
                    return {name: dict(item) if type(item) is dict else item
                            for name, item in kept.items()}
                out = self._object(node, path, owner, role, depth, nesting, in_node=False)
                class_name = node["class_name"]
                if (check_object(node, path, owner) not in _LAYERISH
                        and class_name not in limits.WRAPPER_CLASSES
                        and class_name not in SPECIAL_CONFIG_KEYS):
                    self.leaves[key] = out
                    return {name: dict(item) if type(item) is dict else item
                            for name, item in out.items()}
                return out
        return self._object(node, path, owner, role, depth, nesting, in_node=in_node)

    def _object(self, node: dict[str, Any], path: Any, owner: str | None, role: str, depth: int,
                nesting: int, *, in_node: bool = False) -> dict[str, Any]:
        self._count(depth, path)
        category = check_object(node, path, owner)
        class_name: str = node["class_name"]
        if class_name in SPECIAL_CONFIG_KEYS:
            return self.special(node, class_name, path, owner, depth, nesting)
        if in_node:
            raise refuse(
                "a layer call may pass only tensors and constants, not a reference to "
                f"{class_name}", layer=owner, path=path,
                received=f"module={node.get('module')!r}, class_name={class_name!r}",
            )
        if class_name == "function":  # an activation, checked by check_object
            return {key: node[key] for key in ("module", "class_name", "config", "registered_name")
                    if key in node}
        layerish = category in _LAYERISH
        if layerish:
            name = object_name(node)
            _check_name(node.get("name"), class_name, (path, "name"), self.keras3)
            owner = name or owner
            if role != _TOP:
                self.layers += 1
                if self.layers > self.settings.max_layers:
                    raise limits.layer_count_exceeded(self.layers, self.settings)
        if category == al.MODEL or class_name in limits.WRAPPER_CLASSES:
            nesting += 1
            if nesting > self.settings.max_nesting_depth + 1:  # the top model is level 1
                raise limits.nesting_exceeded(nesting - 1, owner, self.settings)
        allowed = TOP_KEYS if role == _TOP else ENTRY_KEYS if role == _ENTRY else OBJECT_KEYS
        out: dict[str, Any] = {}
        for key, item in node.items():  # (a key's location is made only where it is used)
            if key in STRIPPED_KEYS:
                continue
            if key not in allowed:
                self.dropped(item, (path, key), owner, key, depth)
            elif key == "config":
                out[key] = self.config(item, class_name, category, (path, key), owner, depth,
                                       nesting)
            elif key == "inbound_nodes":
                out[key] = self.nodes(item, (path, key), owner, depth, nesting)
            elif key == "build_config":
                out[key] = self.build_config(item, (path, key), owner, depth, nesting)
            elif type(item) is dict or type(item) is list:
                # class_name / module / ... are strings: anything else is dropped after a look
                self.dropped(item, (path, key), owner, key, depth)
            else:
                out[key] = item
        return out

    def keras_tensor(self, node: dict[str, Any], path: Any, owner: str | None,
                     depth: int) -> dict[str, Any] | None:
        """A layer call's tensor in the form Keras 3 writes it (``{"class_name":
        "__keras_tensor__", "config": {"shape": [...], "dtype": "float32", "keras_history":
        [name, 0, 0]}}``), sanitised with exactly the checks and counts of the general walk
        (:meth:`_object`, then :meth:`special`) without its dispatch: a functional model has
        one or more per layer. ``None`` for any other form, or when a limit would be reached
        here: the general walk then takes it (and refuses it with its own message).
        """
        if (len(node) != 2 or next(iter(node)) != "class_name" or "config" not in node
                or node["class_name"] != "__keras_tensor__"):
            return None  # (the general walk keeps the keys in the order they came)
        config = node["config"]
        if type(config) is not dict or depth + 2 > self.max_depth:
            return None
        allowed = SPECIAL_CONFIG_KEYS["__keras_tensor__"]
        containers = 2  # the tensor and its config
        strings: list[tuple[str, Any]] = []
        inner: dict[str, Any] = {}
        for key, item in config.items():
            if key not in allowed:
                return None
            kind = type(item)
            if kind is list:
                containers += 1
                if not _PLAIN_NUMBERS.issuperset(map(type, item)):
                    for index, element in enumerate(item):
                        element_kind = type(element)
                        if element_kind is str:
                            if "." in element:  # check_string looks at dotted names only
                                strings.append((element, (((path, "config"), key), index)))
                        elif element_kind not in _PLAIN_NUMBERS:
                            return None
                inner[key] = item.copy()
            elif kind is str:
                if "." in item:
                    strings.append((item, ((path, "config"), key)))
                inner[key] = item
            elif kind in _PLAIN_NUMBERS:
                inner[key] = item
            else:
                return None
        if self.containers + containers > self.max_containers:
            return None
        # check_object is not called: on a node of exactly class_name "__keras_tensor__" and
        # config (no module, no registered_name) it returns None without a look
        for value, where in strings:
            check_string(value, where, owner)
        self.containers += containers
        return {"class_name": node["class_name"], "config": inner}

    def special(self, node: dict[str, Any], class_name: str, path: Any, owner: str | None,
                depth: int, nesting: int) -> dict[str, Any]:
        """Tensors, tuples, arrays, slices: data Keras writes with a ``class_name``."""
        allowed = SPECIAL_CONFIG_KEYS[class_name]
        out: dict[str, Any] = {}
        for key, item in node.items():
            child = (path, key)
            if key not in SPECIAL_OBJECT_KEYS:
                self.dropped(item, child, owner, key, depth)
            elif key == "config" and type(item) is dict:
                self._count(depth + 1, child)
                inner: dict[str, Any] = {}
                for inner_key, inner_item in item.items():
                    if inner_key in allowed:
                        inner[inner_key] = self.value(inner_item, (child, inner_key), owner,
                                                      depth + 1, nesting, in_node=True)
                    else:
                        self.dropped(inner_item, (child, inner_key), owner, inner_key, depth + 1)
                out[key] = inner
            else:
                out[key] = self.value(item, child, owner, depth, nesting, in_node=True)
        return out

    def config(self, config: Any, class_name: str, category: str | None, path: Any,
               owner: str | None, depth: int, nesting: int) -> Any:
        if type(config) is not dict:
            return self.value(config, path, owner, depth, nesting)
        name = config.get("name")
        if category in _MEMO_CATEGORIES and type(name) is str:
            return self.layer_config(config, name, class_name, category, path, owner, depth, nesting)
        return self._config(config, class_name, category, path, owner, depth, nesting)

    def layer_config(self, config: dict[str, Any], name: str, class_name: str, category: str,
                     path: Any, owner: str | None, depth: int, nesting: int) -> dict[str, Any]:
        """A layer's config, walked once per content: a model repeats the same config under
        other names (ResNet50: 177 layers, 25 configs), and what the walk keeps and counts
        depends on the content, the class and the depth alone, the name apart.

        The name is checked every time, as the walk checks it (:func:`_check_name` and
        ``check_key_value``); the rest of a repeated config is the sanitised copy of the first
        one (a new object: parsed from its JSON, so no two layers share a container) with this
        name, and its containers are counted again. Only configs whose walk let through no
        nested layer are kept (a wrapper's or a cell's counts and nesting depend on more), and
        only when the copy reads back equal (``orjson`` writes NaN as null; the strict parser
        refuses NaN before a body gets here, so null in a key always was null). Anything
        else, and a config that would pass a limit here, takes the general walk, which refuses
        it with its own message.
        """
        try:
            key = (class_name, category, depth, orjson.dumps({**config, "name": None}))
        except orjson.JSONEncodeError:  # (a TypeError)
            key = None  # not plain JSON (a key that is not a string): the general walk decides
        kept = self.configs.get(key) if key is not None else None
        if kept is not None:
            sanitised, containers = kept
            if self.containers + containers <= self.max_containers:
                _check_name(name, class_name, (path, "name"), self.keras3)
                check_key_value("name", name, (path, "name"), owner, class_name)
                self.containers += containers
                out: dict[str, Any] = orjson.loads(sanitised)
                out["name"] = name
                return out
        containers, layers = self.containers, self.layers
        out = self._config(config, class_name, category, path, owner, depth, nesting)
        if key is not None and self.layers == layers and out.get("name") == name:
            unnamed = {**out, "name": None}
            sanitised = orjson.dumps(unnamed)
            if orjson.loads(sanitised) == unnamed:
                self.configs[key] = (sanitised, self.containers - containers)
        return out

    def _config(self, config: dict[str, Any], class_name: str, category: str | None, path: Any,
                owner: str | None, depth: int, nesting: int) -> dict[str, Any]:
        self._count(depth + 1, path)
        allowed = accepted_config_keys(category, class_name)
        is_model = category == al.MODEL
        if category in _LAYERISH:
            _check_name(config.get("name"), class_name, (path, "name"), self.keras3)
            layer = str(config.get("name") or owner or class_name)
            if not is_model:
                limits.check_layer_size(class_name, layer, config, self.settings)
            for key in limits.INPUT_SHAPE_KEYS if class_name == "InputLayer" else (
                    "batch_input_shape", "input_shape", "build_input_shape"):
                if key in config:
                    limits.check_declared_input(class_name, layer, key, config[key], self.settings)
        out: dict[str, Any] = {}
        for key, item in config.items():  # (a key's location is made only where it is used)
            if key not in allowed:
                self.dropped(item, (path, key), owner, key, depth + 1)
                continue
            if isinstance(item, str):  # (check_key_value looks at strings only)
                check_key_value(key, item, (path, key), owner, class_name)
            kind = type(item)
            if is_model and key == "layers" and kind is list:
                out[key] = self.layer_entries(item, (path, key), owner, depth + 1, nesting)
            elif is_model and key in ("input_layers", "output_layers"):
                out[key] = self.value(item, (path, key), owner, depth + 1, nesting, in_node=True)
            elif kind is dict or kind is list:
                out[key] = self.value(item, (path, key), owner, depth + 1, nesting)
            else:
                out[key] = item
        return out

    def layer_entries(self, entries: list[Any], path: Any, owner: str | None, depth: int,
                      nesting: int) -> list[Any]:
        self._count(depth, path)
        out = []
        for index, entry in enumerate(entries):
            child = (path, index)
            if type(entry) is dict and _is_reference(entry):  # (no memo applies to entries)
                out.append(self._object(entry, child, owner, _ENTRY, depth + 1, nesting))
            else:  # not a layer: the engine says what is wrong with it
                out.append(self.value(entry, child, owner, depth, nesting))
        return out

    def nodes(self, nodes: Any, path: Any, owner: str | None, depth: int, nesting: int) -> Any:
        """``inbound_nodes``: Keras 3 ``{"args", "kwargs"}`` records or tf_keras lists."""
        if type(nodes) is not list:
            return self.value(nodes, path, owner, depth, nesting, in_node=True)
        self._count(depth + 1, path)
        out = []
        for index, node in enumerate(nodes):
            child = (path, index)
            if type(node) is dict and not _is_reference(node):
                record = self.call_record(node, child, owner, depth + 2)
                if record is None:
                    self._count(depth + 2, child)
                    record = {}
                    for key, item in node.items():
                        if key in NODE_KEYS:
                            record[key] = self.value(item, (child, key), owner, depth + 2, nesting,
                                                     in_node=True)
                        else:
                            self.dropped(item, (child, key), owner, key, depth + 2)
                out.append(record)
            else:
                out.append(self.value(node, child, owner, depth + 1, nesting, in_node=True))
        return out

    def call_record(self, node: dict[str, Any], path: Any, owner: str | None,
                    depth: int) -> dict[str, Any] | None:
        """One layer call in the form Keras 3 writes it (``{"args": [<tensor>], "kwargs":
        {"mask": null}}``; a merge layer's ``args`` holds a list of tensors), sanitised with
        exactly the checks and counts of the general walk (:meth:`nodes`, :meth:`sequence`,
        :meth:`mapping`) without its dispatch, the tensors by :meth:`keras_tensor`: a
        functional model has one or more per layer. ``None`` for any other form (arguments
        other than tensors and numbers, a keyword argument that is not a scalar), or when a
        limit would be reached here: the general walk then takes the whole record again (what
        ran here only checked, and the count is put back), and refuses it with its own message.

        The checks run in the general walk's order (the tensors, then the keyword arguments),
        and its counts before each of them never exceed the ones here, so a refusal raised
        here is the one the general walk raises first.
        """
        if len(node) != 2 or next(iter(node)) != "args":
            return None  # (the general walk keeps the keys in the order they came)
        args = node["args"]
        kwargs = node.get("kwargs")
        if (type(args) is not list or type(kwargs) is not dict
                or (kwargs and (_is_reference(kwargs)  # (most calls pass no keyword argument)
                                or not _SCALARS.issuperset(map(type, kwargs.values()))))
                or depth + 1 > self.max_depth
                or self.containers + 3 > self.max_containers):
            return None
        counted = self.containers
        self.containers += 3  # the record, its args and its kwargs
        where = (path, "args")
        out: list[Any] = []
        for index, item in enumerate(args):
            kind = type(item)
            if kind in _PLAIN_NUMBERS:
                out.append(item)
                continue
            tensor: list[Any] | dict[str, Any] | None
            if kind is list:  # the inputs of a merge layer
                tensor = self.tensor_list(item, (where, index), owner, depth + 2)
            elif kind is dict and item.get("class_name") == "__keras_tensor__":  # as object()
                tensor = self.keras_tensor(item, (where, index), owner, depth + 2)
            else:
                tensor = None
            if tensor is None:
                self.containers = counted
                return None
            out.append(tensor)
        where = (path, "kwargs")
        for key, item in kwargs.items():
            if isinstance(item, str):  # (check_key_value looks at strings only)
                check_key_value(key, item, (where, key), owner, None)
        return {"args": out, "kwargs": dict(kwargs)}

    def tensor_list(self, items: list[Any], path: Any, owner: str | None,
                    depth: int) -> list[Any] | None:
        """A list of layer-call tensors at ``depth`` (:meth:`call_record`), or ``None``."""
        if depth > self.max_depth or self.containers + 1 > self.max_containers:
            return None
        self.containers += 1
        out = []
        for index, item in enumerate(items):
            tensor = (self.keras_tensor(item, (path, index), owner, depth + 1)
                      if type(item) is dict and item.get("class_name") == "__keras_tensor__"
                      else None)
            if tensor is None:
                return None
            out.append(tensor)
        return out

    def build_config(self, build: Any, path: Any, owner: str | None, depth: int, nesting: int) -> Any:
        if type(build) is not dict:
            return self.value(build, path, owner, depth, nesting, in_node=True)
        self._count(depth + 1, path)
        out: dict[str, Any] = {}
        for key, item in build.items():
            if key in BUILD_CONFIG_KEYS:
                out[key] = self.value(item, (path, key), owner, depth + 1, nesting, in_node=True)
            else:
                self.dropped(item, (path, key), owner, key, depth + 1)
        return out


def _require_model(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise InvalidArchitecture(
            f"The architecture must be a Keras model config object. Received: a JSON "
            f"{type(config).__name__}"
        )
    if _is_reference(config):
        check_object(config, "$", None)  # a code-bearing top object is unsafe before anything
    class_name = config.get("class_name")
    if not isinstance(class_name, str) or class_name not in al.MODEL_CLASSES or not isinstance(
            config.get("config"), dict):
        raise InvalidArchitecture(
            "The architecture is not a Keras model config: it needs class_name Sequential, "
            "Functional or Model and a config object (as written by model.to_json()). "
            f"Received: class_name={str(config.get('class_name'))[:100]!r}, keys "
            f"{sorted(str(key) for key in config)[:12]}"
        )
    return config


def gate_architecture(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The sanitised copy of ``config``, or a 422 saying what was refused and where.

    Raises :class:`~app.errors.UnsafeArchitecture` (an object or name convlens will not let
    Keras build), :class:`~app.errors.ResourceLimitExceeded` (a static limit) or
    :class:`~app.errors.InvalidArchitecture` (not a model config; a name Keras refuses).
    ``config`` itself is not modified. Idempotent: gating the result again returns it
    unchanged.
    """
    model = _require_model(config)
    version = model.get("keras_version")
    keras3 = "module" in model or (isinstance(version, str) and version.startswith("3."))
    return _Walk(settings, keras3=keras3).object(model, "$", None, _TOP, 0, 0)
