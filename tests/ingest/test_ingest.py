"""Ingestion: format detection, strict JSON, .keras archives read in place, sandboxed .h5."""

from __future__ import annotations

import hashlib
import io
import json
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import h5py
import pytest

from app.config import Settings
from app.errors import InvalidArchitecture, InvalidJSON, PayloadTooLarge, UnsupportedFormat
from app.ingest import detect_format, ingest_bytes, json_depth, parse_json_bytes

SETTINGS = Settings()
MODEL = {"class_name": "Sequential", "config": {"name": "tiny", "layers": [
    {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}}
MODEL_BYTES = json.dumps(MODEL).encode()


def _keras_archive(config: bytes = MODEL_BYTES, extra: list[tuple[str, bytes]] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", b'{"keras_version": "3.15.1"}')
        archive.writestr("config.json", config)
        for name, payload in extra:
            archive.writestr(name, payload)
    return buffer.getvalue()


def _weights_h5(**datasets: Any) -> bytes:
    """A real HDF5 file (as Keras writes model.weights.h5: groups and float datasets)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for name, data in (datasets or {"layers/d/vars/0": [[1.0, 2.0]]}).items():
            handle.create_dataset(name, data=data)
    return buffer.getvalue()


def _h5_model(path: Path, *, userblock: int = 0, weights: bool = True) -> Path:
    kwargs = {"userblock_size": userblock} if userblock else {}
    with h5py.File(path, "w", **kwargs) as handle:
        handle.attrs["model_config"] = MODEL_BYTES.decode()
        handle.attrs["keras_version"] = "3.15.1"
        if weights:
            handle.create_dataset("model_weights/d/kernel", data=[[1.0, 2.0]])
    return path


# -- detection ---------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "filename", "expected"), [
    (b'  \n{"a": 1}', "m.json", "json"),
    (b'\xef\xbb\xbf{"a": 1}', None, "json"),
    (b"PK\x03\x04rest", "m.keras", "keras"),
    (b"\x89HDF\r\n\x1a\nrest", "m.h5", "h5"),
    (b"\x89HDF\r\n\x1a\nrest", "m.HDF5", "h5"),
    (b"not json at all", None, "json"),  # text without a filename: the JSON parser explains
])
def test_detect_format(data: bytes, filename: str | None, expected: str) -> None:
    assert detect_format(data, filename) == expected


@pytest.mark.parametrize(("data", "filename", "words"), [
    (b"PK\x03\x04rest", "m.h5", "'.h5' says a legacy HDF5"),
    (b'{"a": 1}', "m.keras", "content is Keras model JSON"),
    (b'{"a": 1}', "m.txt", "'*.txt' are not accepted"),
    (b"\x80\x04\x95junk", "m.json", "pickle"),
    (b"\x80\x04\x95junk", None, "pickle"),
    (b"", "m.json", "empty"),
    (b"[1, 2]", "m.json", "JSON array"),
])
def test_detect_format_refuses(data: bytes, filename: str | None, words: str) -> None:
    with pytest.raises(UnsupportedFormat, match="(?s)" + words.replace(".", r"\.")
                       .replace("*", r"\*").replace("(", r"\(")) as info:
        detect_format(data, filename)
    assert info.value.status == 415


def test_hdf5_signature_after_a_user_block(tmp_path: Path) -> None:
    path = _h5_model(tmp_path / "m.h5", userblock=1024)
    assert path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n"
    ingested = ingest_bytes(path, filename="m.h5", settings=SETTINGS)
    assert ingested.format == "h5" and ingested.config == MODEL | {"keras_version": "3.15.1"}


# -- JSON ----------------------------------------------------------------------------------

#: These inputs take milliseconds to read in linear time and hours in quadratic time: a
#: ceiling this generous catches the second on the busiest machine and never the first
#: (the speed itself is measured in bench/, not here).
LINEAR_TIME_CEILING_S = 30.0


def test_json_depth_is_linear_and_ignores_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [[1]]}') == 3
    start = time.perf_counter()
    assert json_depth(b"[" * 1_000_000) == 1_000_000
    assert time.perf_counter() - start < LINEAR_TIME_CEILING_S


@pytest.mark.parametrize(("data", "code"), [
    (b"[" * 100_000 + b"]" * 100_000, "json_limit_exceeded"),
    (b'{"n": ' + b"7" * 10_000 + b"}", "json_limit_exceeded"),
    (b'{"n": 1.' + b"5" * 100 + b"}", "json_limit_exceeded"),
    (b'{"n": NaN}', "json_limit_exceeded"),
    (b'{"n": -Infinity}', "json_limit_exceeded"),
    (b'{"a": 1, "a": 2}', "json_limit_exceeded"),
    (b'{"a": "\xff"}', "invalid_json"),
    (b'{"a": ', "invalid_json"),
    (b'"' + b'\\"' * 200_000, "invalid_json"),  # unterminated string of escapes: still linear
])
def test_json_refusals(data: bytes, code: str) -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidJSON) as info:
        parse_json_bytes(data, SETTINGS)
    assert info.value.code == code and info.value.status == 422
    assert time.perf_counter() - start < LINEAR_TIME_CEILING_S


def test_json_size_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_json_bytes(b" " * 101, Settings(max_json_bytes=100))


def test_json_accepts_what_keras_writes() -> None:
    assert parse_json_bytes(b'{"x": [1, -2.5e-3, null, true, "\\u00e9"]}', SETTINGS) == {
        "x": [1, -0.0025, None, True, "é"]}


@pytest.mark.parametrize(("config", "words"), [
    (b'{"weights": []}', "class_name=None"),
    (b'{"class_name": "Dense", "config": {}}', "class_name='Dense'"),
    (b'{"class_name": "Sequential", "config": []}', "config of type list"),
    (b'{"class_name": "Sequential", "config": {"layers": 3}}', "must be a list"),
])
def test_model_shape_checks(config: bytes, words: str) -> None:
    with pytest.raises(InvalidArchitecture, match=words) as info:
        ingest_bytes(config, filename="m.json", settings=SETTINGS)
    assert info.value.code == "invalid_architecture"


def test_json_ingest_result() -> None:
    spaced = json.dumps(MODEL, indent=4).encode()
    a = ingest_bytes(MODEL_BYTES, filename="m.json", settings=SETTINGS)
    b = ingest_bytes(spaced, filename=None, settings=SETTINGS)
    assert (a.format, a.name, a.has_weights, a.byte_size) == ("json", "tiny", False,
                                                              len(MODEL_BYTES))
    assert a.sha256 == b.sha256  # canonical JSON identity
    assert a.config == MODEL


# -- .keras -----------------------------------------------------------------------------------

def test_keras_archive_reads_config_and_metadata() -> None:
    data = _keras_archive(
        json.dumps(MODEL | {"compile_config": {"loss": "mse"}}).encode(),
        extra=[("model.weights.h5", _weights_h5())])
    ingested = ingest_bytes(data, filename="m.keras", settings=SETTINGS)
    assert ingested.format == "keras" and ingested.has_weights
    assert "compile_config" not in ingested.config
    assert ingested.config["keras_version"] == "3.15.1"
    assert ingested.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("extra", "settings", "code"), [
    ([("../x", b"")], SETTINGS, "unsafe_archive"),
    ([("/abs", b"")], SETTINGS, "unsafe_archive"),
    ([("a\\b", b"")], SETTINGS, "unsafe_archive"),
    ([("config.json", MODEL_BYTES)], SETTINGS, "unsafe_archive"),
    ([(f"f{i}", b"") for i in range(10)], Settings(max_archive_members=8),
     "archive_limit_exceeded"),
    ([("big", b"x" * 5000)], Settings(max_archive_uncompressed_bytes=4000),
     "archive_limit_exceeded"),
])
def test_keras_archive_refusals(extra, settings: Settings, code: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = _keras_archive(extra=extra)
    with pytest.raises(InvalidArchitecture) as info:
        ingest_bytes(data, filename="m.keras", settings=settings)
    assert info.value.code == code, info.value.detail


def test_keras_config_size_limit_counts_decompressed_bytes() -> None:
    with pytest.raises(InvalidArchitecture, match="config.json is") as info:
        ingest_bytes(_keras_archive(MODEL_BYTES + b" " * 2000), filename="m.keras",
                     settings=Settings(max_archive_config_bytes=1000))
    assert info.value.code == "archive_limit_exceeded"


def test_large_keras_upload_is_read_in_place(tmp_path: Path) -> None:
    """A 64 MB archive: the API process reads the central directory and config.json; the
    weights are inspected in place by the HDF5 child (never copied, never in this process)."""
    import numpy as np

    weights = tmp_path / "weights.h5"
    with h5py.File(weights, "w") as handle:
        handle.create_dataset("layers/d/vars/0", data=np.ones((4096, 4096), dtype="float32"))
    path = tmp_path / "big.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", b'{"keras_version": "3.15.1"}')
        archive.writestr("config.json", MODEL_BYTES)
        archive.write(weights, "model.weights.h5")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        ingested = ingest_bytes(path, filename="big.keras", settings=SETTINGS, sha256=digest)
        with_hash = ingest_bytes(path, filename="big.keras", settings=SETTINGS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ingested.has_weights and ingested.byte_size == path.stat().st_size
    assert with_hash.sha256 == digest
    assert peak < 16 * 1024 * 1024, f"peak Python allocation {peak:,} bytes"


def test_truncated_and_garbage_archives() -> None:
    whole = _keras_archive()
    for data in (whole[: len(whole) // 2], b"PK\x03\x04" + b"\x00" * 100):
        with pytest.raises(InvalidArchitecture) as info:
            ingest_bytes(data, filename="m.keras", settings=SETTINGS)
        assert info.value.code == "invalid_archive"


# -- legacy .h5 -------------------------------------------------------------------------------

def test_h5_model_config_and_weights(tmp_path: Path) -> None:
    with_weights = ingest_bytes(_h5_model(tmp_path / "a.h5"), filename="a.h5", settings=SETTINGS)
    without = ingest_bytes(_h5_model(tmp_path / "b.h5", weights=False).read_bytes(),
                           filename=None, settings=SETTINGS)
    assert with_weights.has_weights and not without.has_weights
    assert with_weights.config["config"] == MODEL["config"]


def test_h5_hard_link_cycle_terminates(tmp_path: Path) -> None:
    path = _h5_model(tmp_path / "cycle.h5")
    with h5py.File(path, "r+") as handle:
        handle["model_weights/loop"] = handle["/"]
    assert ingest_bytes(path, filename="cycle.h5", settings=SETTINGS).format == "h5"


@pytest.mark.parametrize("overrides", [{"child_timeout_s": 0.01}, {"child_memory_bytes": 8 << 20}])
def test_h5_child_failures_are_422(tmp_path: Path, overrides: dict) -> None:
    path = _h5_model(tmp_path / "m.h5")
    with pytest.raises(InvalidArchitecture) as info:
        ingest_bytes(path, filename="m.h5", settings=Settings(**overrides))
    assert info.value.code == "h5_unreadable" and info.value.status == 422


def test_h5_oversized_model_config(tmp_path: Path) -> None:
    path = _h5_model(tmp_path / "m.h5")
    with pytest.raises(InvalidArchitecture) as info:
        ingest_bytes(path, filename="m.h5", settings=Settings(max_archive_config_bytes=10))
    assert info.value.code == "hdf5_limit_exceeded"
