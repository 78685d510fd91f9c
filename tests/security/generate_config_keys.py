"""Write ``app/security/config_keys.json``: the config keys each allowlisted class accepts.

The gate (``app.security.gate``) keeps, in the config of every object it lets through, only
the keys that object's constructor accepts in Keras 3 or tf_keras; everything else is dropped
before the config is stored or handed to Keras. This script reads those keys from the two
libraries themselves (``inspect.signature`` of each ``__init__`` along the class's MRO, as
far as ``**kwargs`` is passed up, plus the keyword arguments the base ``Layer`` pops from
``**kwargs`` by name), so the table follows Keras instead of being kept by hand.

Run (imports TensorFlow; never imported by the service)::

    python -m tests.security.generate_config_keys            # rewrite the stored table
    python -m tests.security.generate_config_keys OUT.json   # write elsewhere (freshness test)

``test_stored_config_keys_are_fresh`` (marked ``tensorflow``) regenerates the table and
compares it with the stored one, so a Keras upgrade that adds or renames an argument fails
the suite until the table is regenerated.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "app" / "security" / "config_keys.json"


def _constructor_keys(cls: type) -> set[str]:
    """Names ``cls(**config)`` accepts: ``__init__`` parameters up the MRO while ``**kwargs``
    carries on to the parent."""
    keys: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            break
        passes_on = False
        for parameter in parameters:
            if parameter.name == "self" or parameter.kind is parameter.VAR_POSITIONAL:
                continue
            if parameter.kind is parameter.VAR_KEYWORD:
                passes_on = True
                continue
            keys.add(parameter.name)
        if not passes_on:
            break
    return keys


def _popped_kwargs(cls: type) -> set[str]:
    """Keyword arguments a base class takes out of ``**kwargs`` by name (``kwargs.pop("x")``,
    tf_keras's ``allowed_kwargs = {...}``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            continue
        names |= set(re.findall(r"kwargs\.pop\(\s*[\"'](\w+)[\"']", source))
        allowed = re.search(r"allowed_kwargs\s*=\s*\{([^}]*)\}", source)
        if allowed:
            names |= set(re.findall(r"[\"'](\w+)[\"']", allowed.group(1)))
    return names


def _accepted(cls: type) -> list[str]:
    return sorted(_constructor_keys(cls) | _popped_kwargs(cls))


def _find(candidates: list[tuple[str, str]]) -> list[type]:
    found = []
    for module_name, attribute in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        value = getattr(module, attribute, None)
        if inspect.isclass(value):
            found.append(value)
    return found


def generate() -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tf_keras

    from app.security import allowlist as al

    families: dict[str, tuple[frozenset[str], list[str]]] = {
        al.LAYER: (al.LAYER_CLASSES, ["keras.layers", "tf_keras.layers"]),
        al.INITIALIZER: (al.INITIALIZER_CLASSES, ["keras.initializers", "tf_keras.initializers"]),
        al.REGULARIZER: (al.REGULARIZER_CLASSES, ["keras.regularizers", "tf_keras.regularizers"]),
        al.CONSTRAINT: (al.CONSTRAINT_CLASSES, ["keras.constraints", "tf_keras.constraints"]),
        al.DTYPE_POLICY: (al.DTYPE_POLICY_CLASSES, ["keras.dtype_policies", "keras.mixed_precision",
                                                    "tf_keras.mixed_precision"]),
    }
    table: dict[str, dict[str, list[str]]] = {}
    missing: list[str] = []
    for category, (classes, modules) in families.items():
        for name in sorted(classes):
            found = _find([(module, name) for module in modules])
            if not found:
                missing.append(f"{category}:{name}")
                continue
            keys: set[str] = set()
            for cls in found:
                keys |= set(_accepted(cls))
            table.setdefault(category, {})[name] = sorted(keys)
    # Layers published outside keras.layers, and the symbolic operations of Keras 3.
    extra_layers = {
        "LayerScale": ["keras.src.applications.convnext", "tf_keras.src.applications.convnext"],
        "CustomScaleLayer": ["keras.src.applications.inception_resnet_v2",
                             "tf_keras.src.applications.inception_resnet_v2"],
    }
    for name, modules in extra_layers.items():
        keys = set()
        for cls in _find([(module, name) for module in modules]):
            keys |= set(_accepted(cls))
        table[al.LAYER][name] = sorted(keys)
    tf_op = _find([("tf_keras.src.layers.core.tf_op_layer", "TFOpLambda"),
                   ("tf_keras.src.layers.core.tf_op_layer", "SlicingOpLambda")])
    table[al.TF_OP_LAYER] = {cls.__name__: _accepted(cls) for cls in tf_op}
    table[al.OPERATION] = {}
    for module, names in al.KERAS_OPERATIONS.items():
        for name in sorted(names):
            found = _find([(module, name)])
            if not found:
                missing.append(f"{al.OPERATION}:{module}.{name}")
                continue
            keys = set(table[al.OPERATION].get(name, [])) | set(_accepted(found[0]))
            table[al.OPERATION][name] = sorted(keys)
    table[al.SEED_GENERATOR] = {"SeedGenerator": _accepted(keras.random.SeedGenerator)}
    return {
        "generated_by": "python -m tests.security.generate_config_keys",
        "keras_version": keras.__version__,
        "tf_keras_version": tf_keras.__version__,
        "absent_from_both_libraries": sorted(missing),
        "keys": {category: dict(sorted(classes.items())) for category, classes in sorted(table.items())},
    }


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else STORED
    out.write_text(json.dumps(generate(), indent=1, sort_keys=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv))
