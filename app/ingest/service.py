"""Ingestion: from uploaded bytes (or a spooled upload file) to a gated, sanitised model config.

Nothing here imports TensorFlow, Keras or h5py, and nothing executes: JSON is parsed with
limits, ``.keras`` archives are read in place (central directory plus ``config.json``) and
their weights member is inspected like an ``.h5`` upload, legacy ``.h5`` files are inspected
in a sandboxed child process. Every path ends in the one gate
(:func:`app.security.gate.gate_architecture`): what comes out is the sanitised config that is
stored, hashed and later handed to Keras.

- :func:`read_architecture`: detect the format and read the model config (not yet gated);
- :func:`ingest_bytes`: read, gate and hash (what the service calls for files);
- :func:`ingest_config`: gate and hash a model config that arrived already parsed (the
  ``architecture`` object of a JSON request body).

Example::

    ingested = ingest_bytes(Path("vgg16.keras"), filename="vgg16.keras", settings=settings)
    ingested.format, ingested.has_weights      # ('keras', True)
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from app.config import Settings
from app.errors import InvalidArchitecture, PayloadTooLarge
from app.ingest.archive import read_keras_archive
from app.ingest.detect import detect_format
from app.ingest.h5 import inspect_archive_weights, read_h5_model
from app.ingest.jsonparse import parse_json_bytes

MODEL_CLASS_NAMES = frozenset({"Sequential", "Functional", "Model"})
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class IngestedArchitecture:
    """An architecture and facts about the uploaded content.

    After :func:`ingest_bytes` / :func:`ingest_config`, ``config`` is the gated, sanitised
    config and ``sha256`` identifies the architecture: for JSON the hash of that config's
    canonical form, for files the hash of the file (its weights are part of what was sent).
    """

    format: Literal["json", "keras", "h5"]
    config: dict[str, Any]
    name: str | None
    has_weights: bool
    sha256: str
    byte_size: int


def sha256_of(stream: BinaryIO) -> str:
    """Streaming SHA-256 of a seekable stream (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact JSON with sorted keys (UTF-8): the form an architecture is identified by.

    >>> canonical_json({"b": 1, "a": [2, "é"]})
    b'{"a":[2,"\\xc3\\xa9"],"b":1}'
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def canonical_json_sha256(value: Any) -> str:
    """SHA-256 of ``value`` in its canonical form.

    >>> canonical_json_sha256({"b": 1, "a": [2]}) == canonical_json_sha256({"a": [2], "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(value)).hexdigest()


def check_model_config(config: Any, *, source: str) -> dict[str, Any]:
    """Require a Keras model config object: ``{"class_name": <model>, "config": {...}}``."""
    if not isinstance(config, dict):
        raise InvalidArchitecture(
            f"The {source} must be a Keras model config object. Received: a JSON "
            f"{type(config).__name__}"
        )
    class_name = config.get("class_name")
    inner = config.get("config")
    if not isinstance(class_name, str) or class_name not in MODEL_CLASS_NAMES or not isinstance(inner, dict):
        keys = sorted(str(key) for key in config)[:12]
        raise InvalidArchitecture(
            f"The {source} is not a Keras model config: it needs class_name Sequential, "
            "Functional or Model and a config object (as written by model.to_json()). "
            f"Received: class_name={repr(class_name)[:100]}, config of type "
            f"{type(inner).__name__}, keys {keys}"
        )
    layers = inner.get("layers")
    if layers is not None and not isinstance(layers, list):
        raise InvalidArchitecture(
            f"The {source}'s config.layers must be a list. Received: {type(layers).__name__}"
        )
    return config


def _model_name(config: dict[str, Any]) -> str | None:
    name = config["config"].get("name")
    return name[:300] if isinstance(name, str) else None


def ingest_config(config: Any, settings: Settings, *, source: str = "architecture",
                  byte_size: int | None = None) -> IngestedArchitecture:
    """Gate an already-parsed JSON model config and identify it by its sanitised form.

    The same model sent as an object, as a string or as a file, with any whitespace, key
    order or keys convlens drops, is the same architecture.
    """
    from app.security.gate import gate_architecture

    sanitised = gate_architecture(check_model_config(config, source=source), settings)
    canonical = canonical_json(sanitised)
    return IngestedArchitecture(format="json", config=sanitised, name=_model_name(sanitised),
                                has_weights=False, sha256=hashlib.sha256(canonical).hexdigest(),
                                byte_size=len(canonical) if byte_size is None else byte_size)


def ingest_bytes(
    data: bytes | Path,
    *,
    filename: str | None,
    settings: Settings,
    sha256: str | None = None,
) -> IngestedArchitecture:
    """Detect, read, inspect and gate ``data``: the sanitised config and its identity.

    ``data`` is the content itself or the path of a file the API spooled it to (large
    uploads: only the parts that are needed are read). ``sha256`` may pass a hash already
    computed while streaming (JSON is always identified by its sanitised canonical form).
    Raises ``UnsupportedFormat`` (415), ``PayloadTooLarge`` (413), ``InvalidJSON``,
    ``InvalidArchitecture`` (422, codes ``invalid_archive``, ``unsafe_archive``,
    ``archive_limit_exceeded``, ``h5_unreadable``, ``unsafe_hdf5``, ``hdf5_limit_exceeded``,
    ``invalid_architecture``, ``invalid_layer_name``), ``UnsafeArchitecture`` and
    ``ResourceLimitExceeded`` (422) from the gate.
    """
    from app.security.gate import gate_architecture

    raw = read_architecture(data, filename=filename, settings=settings, sha256=sha256)
    if raw.format == "json":
        return ingest_config(raw.config, settings, source="model JSON", byte_size=raw.byte_size)
    return replace(raw, config=gate_architecture(raw.config, settings))


def read_architecture(
    data: bytes | Path,
    *,
    filename: str | None,
    settings: Settings,
    sha256: str | None = None,
) -> IngestedArchitecture:
    """Detect the format of ``data`` and read its model config, *without* the gate.

    Archives and HDF5 files are fully inspected (weights included); the config is checked
    to be a model config but not yet gated. Callers that store or build it must pass it
    through :func:`app.security.gate.gate_architecture` (:func:`ingest_bytes` does).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        content = bytes(data)
        return _read_stream(io.BytesIO(content), len(content), None, filename, settings, sha256)
    path = Path(data)
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidArchitecture(f"The uploaded file could not be opened: {exc.strerror}",
                                  code="invalid_upload") from None
    with handle:
        return _read_stream(handle, size, path, filename, settings, sha256)


def _read_stream(stream: BinaryIO, size: int, path: Path | None, filename: str | None,
                 settings: Settings, sha256: str | None) -> IngestedArchitecture:
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"The upload is {size:,} bytes; the limit is {settings.max_upload_bytes:,}."
        )
    fmt = detect_format(stream, filename, size)
    stream.seek(0)
    has_weights = False
    if fmt == "json":
        if size > settings.max_json_bytes:
            raise PayloadTooLarge(
                f"The JSON model is {size:,} bytes; the limit is {settings.max_json_bytes:,}."
            )
        config = check_model_config(parse_json_bytes(stream.read(), settings, what="model JSON"),
                                    source="model JSON")
        return IngestedArchitecture(format="json", config=config, name=_model_name(config),
                                    has_weights=False, sha256=sha256 or "", byte_size=size)
    digest = sha256 or sha256_of(stream)
    stream.seek(0)
    if fmt == "keras":
        contents = read_keras_archive(stream, settings)
        config = check_model_config(contents.config, source=".keras archive's config.json")
        version = contents.metadata.get("keras_version")
        if isinstance(version, str) and "keras_version" not in config:
            config["keras_version"] = version
        if contents.hdf5_members:
            _with_file(stream, path, ".keras",
                       lambda file: inspect_archive_weights(file, contents.hdf5_members, settings))
        has_weights = contents.has_weights
    else:
        h5 = _with_file(stream, path, ".h5", lambda file: read_h5_model(file, settings))
        config = check_model_config(h5.config, source=".h5 file's model_config")
        if h5.keras_version and "keras_version" not in config:
            config["keras_version"] = h5.keras_version
        if h5.backend and "backend" not in config:
            config["backend"] = h5.backend
        has_weights = h5.has_weights
    return IngestedArchitecture(format=fmt, config=config, name=_model_name(config),
                                has_weights=has_weights, sha256=digest, byte_size=size)


def _with_file(stream: BinaryIO, path: Path | None, suffix: str, use: Any) -> Any:
    """Call ``use(path)`` on the content as a file: the spooled upload, or a temporary copy."""
    if path is not None:
        return use(path)
    descriptor, temporary = tempfile.mkstemp(prefix="convlens-", suffix=suffix)
    try:
        with os.fdopen(descriptor, "wb") as out:
            stream.seek(0)
            while chunk := stream.read(_HASH_CHUNK):
                out.write(chunk)
        return use(Path(temporary))
    finally:
        Path(temporary).unlink(missing_ok=True)
