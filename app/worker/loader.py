"""Turn a gated architecture into a live Keras model (worker processes only).

Keras sees a config only after the gate (``app.security.gate``) sanitised it, and the
model is always built from that sanitised config: an uploaded ``.keras`` / ``.h5`` file
gives only its weights (``model.load_weights``), its own config is never deserialised, so
nothing the gate dropped from it (``compile_config``, unknown keys) reaches Keras.
Deserialisation runs with ``safe_mode=True``. Keras 2
(tf.keras / tf_keras) JSON configs are rewritten into the Keras 3 form first:
Keras 3 cannot read their top-level ``Functional``/``Sequential`` records (no
``module``) or the ``batch_input_shape`` keys on layers.

Example::

    >>> model = load_model(config, None, "json", input_shape=[32, 32, 3])  # doctest: +SKIP
    >>> model.input_shape                                                           # doctest: +SKIP
    (None, 32, 32, 3)
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import InvalidArchitecture

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

_MODEL_CLASSES = {"Sequential", "Functional", "Model"}
_MAX_MESSAGE = 600


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + " ..."


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` in the form Keras 3 deserialises.

    Keras 2 writes ``{"class_name": "Functional", ...}`` without ``module``, puts
    ``batch_input_shape`` on the first layer and on ``InputLayer``; Keras 3
    wants ``module`` on models and ``batch_shape`` on ``InputLayer`` only.
    Nested models are rewritten too. Keras 3 configs pass through unchanged.

    Example::

        >>> normalize_config({"class_name": "Model", "config": {"layers": []}})["class_name"]
        'Functional'
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise InvalidArchitecture(
            "Expected a Keras model config with 'class_name' and 'config'. "
            f"Received: {type(config).__name__} with keys "
            f"{sorted(config)[:8] if isinstance(config, dict) else '-'}"
        )
    return _normalize_model(copy.deepcopy(config))


def _normalize_model(record: dict[str, Any]) -> dict[str, Any]:
    class_name = record.get("class_name")
    if class_name in ("Functional", "Model"):
        record["class_name"] = "Functional"
        record["module"] = "keras.src.models.functional"
        record.setdefault("registered_name", None)
    elif class_name == "Sequential":
        record["module"] = "keras"
        record.setdefault("registered_name", None)
    inner = record.get("config")
    if not isinstance(inner, dict):
        return record
    layers = inner.get("layers")
    if not isinstance(layers, list):
        return record
    sequential_input: list[Any] | None = None
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            continue
        layer_config = layer.get("config")
        if layer.get("class_name") in _MODEL_CLASSES:
            _normalize_model(layer)
            continue
        if not isinstance(layer_config, dict):
            continue
        if layer.get("class_name") == "InputLayer":
            if "batch_input_shape" in layer_config:
                layer_config["batch_shape"] = layer_config.pop("batch_input_shape")
            layer_config.pop("ragged", None)
        else:
            batch_input_shape = layer_config.pop("batch_input_shape", None)
            layer_config.pop("input_shape", None)
            if index == 0 and class_name == "Sequential" and batch_input_shape is not None:
                sequential_input = list(batch_input_shape)
    if sequential_input is not None:
        layers.insert(
            0,
            {
                "module": "keras.layers",
                "class_name": "InputLayer",
                "config": {"batch_shape": sequential_input, "dtype": "float32"},
                "registered_name": None,
            },
        )
    return record


def override_input_shape(
    config: dict[str, Any], input_shape: Sequence[int | None] | Mapping[str, Sequence[int | None]]
) -> dict[str, Any]:
    """A copy of a (normalised) config whose input has ``input_shape`` (no batch dim): a list
    for a model with one input, or ``{"input_layer_name": [...]}`` for some or all inputs of a
    multi-input model.

    Layer ``build_config`` records are dropped so that every layer is built for
    the new shape (a ``Dense`` after ``Flatten`` changes size with it).

    Example::

        >>> cfg = override_input_shape(cfg, [32, 32, 3])   # doctest: +SKIP
        >>> cfg = override_input_shape(cfg, {"image": [64, 64, 3]})   # doctest: +SKIP
    """
    result = copy.deepcopy(config)
    inner = result.get("config", {})
    layers = inner.get("layers", [])
    inputs = [
        layer
        for layer in layers
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"
    ]
    if isinstance(input_shape, Mapping):
        by_name = {str(layer.get("name") or layer.get("config", {}).get("name")): layer for layer in inputs}
        if len(inputs) == 1 and len(input_shape) == 1 and result.get("class_name") == "Sequential":
            by_name = {next(iter(input_shape)): inputs[0]}  # Sequential's input has a generated name
        unknown = [name for name in input_shape if name not in by_name]
        if unknown:
            raise InvalidArchitecture(
                f"input_shape names inputs the model does not have: {unknown}; its inputs are "
                f"{sorted(by_name)}. Received: input_shape={dict(input_shape)!r}"
            )
        if result.get("class_name") == "Sequential":
            inner.pop("build_input_shape", None)
        for name, dims in input_shape.items():
            by_name[name]["config"]["batch_shape"] = _batch_shape(dims)
            by_name[name]["config"].pop("batch_input_shape", None)
    elif result.get("class_name") == "Sequential":
        shape = _batch_shape(input_shape)
        inner.pop("build_input_shape", None)
        if inputs:
            inputs[0]["config"]["batch_shape"] = shape
            inputs[0]["config"].pop("batch_input_shape", None)
        else:
            layers.insert(
                0,
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "config": {"batch_shape": shape, "dtype": "float32"},
                    "registered_name": None,
                },
            )
    else:
        if len(inputs) != 1:
            raise InvalidArchitecture(
                "input_shape as a list overrides a model with exactly one input; give it per "
                f"input name instead. Received: a model with {len(inputs)} InputLayer(s)"
            )
        inputs[0]["config"]["batch_shape"] = _batch_shape(input_shape)
        inputs[0]["config"].pop("batch_input_shape", None)
    for layer in layers:
        if isinstance(layer, dict):
            layer.pop("build_config", None)
    return result


def _batch_shape(input_shape: Sequence[int | None]) -> list[int | None]:
    return [None, *[None if dim is None else int(dim) for dim in input_shape]]


def _deserialize(config: dict[str, Any]) -> keras.Model:
    import keras
    from keras.src.saving import serialization_lib

    try:
        model = serialization_lib.deserialize_keras_object(config, safe_mode=True)
    except InvalidArchitecture:
        raise
    except Exception as exc:  # Keras raises TypeError/ValueError/KeyError/... on bad configs
        raise InvalidArchitecture(
            f"Keras could not build the model from its config. {_short(exc)}"
        ) from exc
    if not isinstance(model, keras.Model):
        raise InvalidArchitecture(
            "The config does not describe a model. Received: "
            f"class_name={config.get('class_name')!r}"
        )
    return model


def _ensure_built(model: keras.Model) -> keras.Model:
    if not model.built or not getattr(model, "inputs", None):
        raise InvalidArchitecture(
            "The model has no input shape, so it cannot be built. "
            "Give its first layer an input shape or pass input_shape. "
            f"Received: model {model.name!r} with unknown input"
        )
    return model


def _with_extension(blob_path: Path, fmt: str) -> tuple[Path, Path | None]:
    """Keras picks the loader from the file extension: give it the right one."""
    suffix = ".keras" if fmt == "keras" else ".h5"
    if blob_path.suffix == suffix:
        return blob_path, None
    tmp_dir = Path(tempfile.mkdtemp(prefix="convlens-model-"))
    target = tmp_dir / f"model{suffix}"
    try:
        os.symlink(blob_path.resolve(), target)
    except OSError:
        shutil.copyfile(blob_path, target)
    return target, tmp_dir


def _load_weights(model: keras.Model, blob_path: Path, fmt: str) -> None:
    """The weights of the uploaded file into ``model`` (built from the gated config).

    ``model.load_weights`` reads only ``model.weights.h5`` of a ``.keras`` archive and the
    weight groups of a legacy ``.h5``; the file's own config is never read.
    """
    path, tmp_dir = _with_extension(blob_path, fmt)
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise InvalidArchitecture(
            f"The uploaded weights could not be loaded. {_short(exc)}"
        ) from exc
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _copy_weights(source: keras.Model, target: keras.Model) -> None:
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        origin = by_name.get(layer.name)
        if origin is None or not origin.weights:
            continue
        values = origin.get_weights()
        expected = [tuple(weight.shape) for weight in layer.weights]
        received = [tuple(value.shape) for value in values]
        if expected != received:
            raise InvalidArchitecture(
                f"The uploaded weights of layer {layer.name!r} do not fit the requested input "
                "shape. "
                f"Expected shapes {expected}. Received: {received}"
            )
        layer.set_weights(values)


def load_model(
    config: dict[str, Any],
    blob_path: Path | None,
    fmt: str,
    *,
    input_shape: Sequence[int | None] | Mapping[str, Sequence[int | None]] | None = None,
) -> keras.Model:
    """Build the model (weights from ``blob_path`` when the upload has them).

    ``fmt`` is ``"json"``, ``"keras"`` or ``"h5"``. ``input_shape`` (no batch
    dim) rebuilds the model for another input size; uploaded weights are
    copied over layer by layer and must fit.

    Example::

        >>> load_model(cfg, None, "json").count_params()   # doctest: +SKIP
        130890
    """
    from app.worker.runtime import init_tensorflow

    init_tensorflow()
    if fmt not in ("json", "keras", "h5"):
        raise InvalidArchitecture(
            f"Unknown architecture format. Expected json, keras or h5. Received: {fmt!r}"
        )
    normalized = normalize_config(config)
    if blob_path is None or fmt == "json":
        if input_shape is not None:
            normalized = override_input_shape(normalized, input_shape)
        return _ensure_built(_deserialize(normalized))
    if not Path(blob_path).is_file():
        raise InvalidArchitecture(f"The uploaded file is missing. Received: {blob_path}")
    uploaded = _ensure_built(_deserialize(copy.deepcopy(normalized)))  # Keras edits what it reads
    _load_weights(uploaded, Path(blob_path), fmt)
    if input_shape is None:
        return uploaded
    model = _ensure_built(_deserialize(override_input_shape(normalized, input_shape)))
    _copy_weights(uploaded, model)
    return model
