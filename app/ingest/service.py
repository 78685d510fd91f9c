"""Turning uploaded bytes (or a spooled upload file) into a parsed Keras model config.

Nothing here imports TensorFlow, Keras or h5py, and nothing executes: JSON is parsed with
limits, ``.keras`` archives are read in place (central directory plus ``config.json``),
legacy ``.h5`` files are inspected in a sandboxed child process.

Example::

    ingested = ingest_bytes(Path("vgg16.keras"), filename="vgg16.keras", settings=settings)
    ingested.format, ingested.has_weights      # ('keras', True)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from app.config import Settings
from app.errors import InvalidArchitecture, PayloadTooLarge
from app.ingest.archive import read_keras_archive
from app.ingest.detect import detect_format
from app.ingest.h5 import read_h5_model
from app.ingest.jsonparse import parse_json_bytes

MODEL_CLASS_NAMES = frozenset({"Sequential", "Functional", "Model"})
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class IngestedArchitecture:
    """A parsed (not yet validated) architecture and facts about the uploaded content."""

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


def canonical_json_sha256(value: Any) -> str:
    """SHA-256 of ``value`` as compact JSON with sorted keys.

    >>> canonical_json_sha256({"b": 1, "a": [2]}) == canonical_json_sha256({"a": [2], "b": 1})
    True
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_model_config(config: Any, *, source: str) -> dict[str, Any]:
    """Require a Keras model config object: ``{"class_name": <model>, "config": {...}}``."""
    if not isinstance(config, dict):
        raise InvalidArchitecture(
            f"The {source} must be a Keras model config object. Received: a JSON "
            f"{type(config).__name__}"
        )
    class_name = config.get("class_name")
    inner = config.get("config")
    if class_name not in MODEL_CLASS_NAMES or not isinstance(inner, dict):
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


def ingest_bytes(
    data: bytes | Path,
    *,
    filename: str | None,
    settings: Settings,
    sha256: str | None = None,
) -> IngestedArchitecture:
    """Detect the format of ``data``, check it, and parse its model config.

    ``data`` is the content itself or the path of a file the API spooled it to (large
    uploads: only the parts that are needed are read). ``sha256`` may pass a hash already
    computed while streaming (JSON is always hashed in its canonical form instead).
    Raises ``UnsupportedFormat`` (415), ``PayloadTooLarge`` (413),
    ``InvalidJSON`` or ``InvalidArchitecture`` (422, codes ``invalid_archive``,
    ``unsafe_archive``, ``archive_limit_exceeded``, ``h5_unreadable``, ``unsafe_hdf5``,
    ``hdf5_limit_exceeded``, ``invalid_architecture``). The config is not validated
    here: call :func:`app.security.validate_architecture` next.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        content = bytes(data)
        return _ingest_stream(io.BytesIO(content), len(content), None, filename, settings, sha256)
    path = Path(data)
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidArchitecture(f"The uploaded file could not be opened: {exc.strerror}",
                                  code="invalid_upload") from None
    with handle:
        return _ingest_stream(handle, size, path, filename, settings, sha256)


def _ingest_stream(stream: BinaryIO, size: int, path: Path | None, filename: str | None,
                   settings: Settings, sha256: str | None) -> IngestedArchitecture:
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"The upload is {size:,} bytes; the limit is {settings.max_upload_bytes:,}."
        )
    fmt = detect_format(stream, filename, size)
    digest = sha256 or sha256_of(stream)
    stream.seek(0)
    has_weights = False
    if fmt == "json":
        if size > settings.max_json_bytes:
            raise PayloadTooLarge(
                f"The JSON model is {size:,} bytes; the limit is {settings.max_json_bytes:,}."
            )
        config = check_model_config(parse_json_bytes(stream.read(), settings, what="model JSON"),
                                    source="model JSON")
        # JSON is identified by its canonical form: the same model sent as an object, as a
        # string or as a file, with any whitespace or key order, is stored once.
        digest = canonical_json_sha256(config)
    elif fmt == "keras":
        contents = read_keras_archive(stream, settings)
        config = check_model_config(contents.config, source=".keras archive's config.json")
        config = {key: value for key, value in config.items() if key != "compile_config"}
        version = contents.metadata.get("keras_version")
        if isinstance(version, str) and "keras_version" not in config:
            config["keras_version"] = version
        has_weights = contents.has_weights
    else:
        h5 = _read_h5(stream, path, settings)
        config = check_model_config(h5.config, source=".h5 file's model_config")
        if h5.keras_version and "keras_version" not in config:
            config["keras_version"] = h5.keras_version
        if h5.backend and "backend" not in config:
            config["backend"] = h5.backend
        has_weights = h5.has_weights
    return IngestedArchitecture(format=fmt, config=config, name=_model_name(config),
                                has_weights=has_weights, sha256=digest, byte_size=size)


def _read_h5(stream: BinaryIO, path: Path | None, settings: Settings) -> Any:
    if path is not None:
        return read_h5_model(path, settings)
    descriptor, temporary = tempfile.mkstemp(prefix="convlens-", suffix=".h5")
    try:
        with os.fdopen(descriptor, "wb") as out:
            stream.seek(0)
            while chunk := stream.read(_HASH_CHUNK):
                out.write(chunk)
        return read_h5_model(Path(temporary), settings)
    finally:
        Path(temporary).unlink(missing_ok=True)
