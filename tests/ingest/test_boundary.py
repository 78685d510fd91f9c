"""The ingestion side of the trust boundary, in process: the input_shape validator, the strict
parser's newer rules, .npz headers, the .keras weights member, the HDF5 inspection bound and
the formats of other frameworks."""

from __future__ import annotations

import io
import json
import random
import threading
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from app.config import Settings
from app.errors import (
    InvalidArchitecture,
    InvalidDataset,
    InvalidInputShape,
    InvalidJSON,
    PayloadTooLarge,
    ServiceBusy,
    UnsupportedFormat,
)
from app.ingest import h5 as h5_module
from app.ingest import ingest_bytes, parse_input_shape, parse_json_bytes
from app.ingest.npz import inspect_npz

SETTINGS = Settings()
SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
FOREIGN = Path(__file__).resolve().parent / "foreign"


# -- input_shape ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ([224, 224, 3], [224, 224, 3]),
    ((32, 32, 3), [32, 32, 3]),
    ([None, None, 3], [None, None, 3]),
    ("[224, 224, 3]", [224, 224, 3]),
    ("224,224,3", [224, 224, 3]),
    (" 224, 224, 3 ", [224, 224, 3]),
    ("224x224x3", [224, 224, 3]),
    ("(224, 224, 3)", [224, 224, 3]),
    ("None,None,3", [None, None, 3]),
    ("16", [16]),
    ({"image": [64, 64, 3], "mask": [64, 64, 1]}, {"image": [64, 64, 3], "mask": [64, 64, 1]}),
    ('{"image": [64, 64, 3]}', {"image": [64, 64, 3]}),
    ("image=64x64x3;mask=64,64,1", {"image": [64, 64, 3], "mask": [64, 64, 1]}),
    (" image = 64,64,3 ; ", {"image": [64, 64, 3]}),
    ([8, 16, 16, 16, 1], [8, 16, 16, 16, 1]),  # ConvLSTM3D: time and three spatial axes
    (None, None),
    ("  ", None),
])
def test_input_shape_forms(value: Any, expected: Any) -> None:
    assert parse_input_shape(value, SETTINGS) == expected


@pytest.mark.parametrize("value", [
    [100_000, 100_000, 1],  # 10**10 elements: the worker would allocate 745 GiB a batch of 20
    [0, 0, 0], [-1, 5, 5], [10**9, 1, 1], [], [1, 2, 3, 4, 5, 6], [True, 2], [1.5, 2],
    ["224", 224], "big", "224;224;3", "[1, 2", "{'image': [1]}", '{"": [3]}', '{"a/b": [3]}',
    {"image": "224,224,3"}, {}, 5, "1" * 5000, "¹", "2²4,224,3", "٣,٣",
    "=64,64,3", "image=", "image=64,64,3;mask", "a/b=3", "image=0,1,1",
])
def test_input_shape_refusals(value: Any) -> None:
    with pytest.raises(InvalidInputShape) as info:
        parse_input_shape(value, SETTINGS)
    problem = info.value.to_problem()
    assert (problem["status"], problem["code"]) == (422, "invalid_input_shape")
    assert problem["title"] == "The input shape is not acceptable"
    assert "Received:" in problem["detail"]


def test_input_shape_limits_follow_settings() -> None:
    small = Settings(max_input_dim=64, max_input_rank=3, max_input_elements=1000)
    assert parse_input_shape("10x10x10", small) == [10, 10, 10]
    for value in ("65,1", "1,1,1,1", "11x10x10"):
        with pytest.raises(InvalidInputShape):
            parse_input_shape(value, small)


# -- the strict parser ------------------------------------------------------------------------

def test_element_count_is_refused_before_parsing() -> None:
    body = b'{"architecture": {}, "unknown": [' + b"{}," * 200_000 + b"{}]}"
    with pytest.raises(InvalidJSON) as info:
        parse_json_bytes(body, Settings(max_json_elements=100_000))
    assert info.value.code == "json_limit_exceeded" and "values" in info.value.detail
    # the count is taken outside strings: commas inside a string do not count
    text = b'{"a": "' + b"," * 300_000 + b'"}'
    assert parse_json_bytes(text, Settings(max_json_elements=100_000)) == {"a": "," * 300_000}


@pytest.mark.parametrize(("data", "code", "words"), [
    (b'{"name": "\\ud800"}', "invalid_json", "surrogate"),
    (b'{"name": "\\udc00\\ud800"}', "invalid_json", "surrogate"),
    (b'{"n": 18446744073709551616}', "json_limit_exceeded", "64 bits"),
    (b'{"n": -9223372036854775809}', "json_limit_exceeded", "64 bits"),
    (b'{"a": {"b": 1, "b": 2}}', "json_limit_exceeded", "'b' appears twice"),
    (b'[1e999]', "invalid_json", "infinity"),
])
def test_parser_refusals(data: bytes, code: str, words: str) -> None:
    with pytest.raises(InvalidJSON) as info:
        parse_json_bytes(data, SETTINGS)
    assert info.value.code == code and words in info.value.detail, info.value.detail


def test_parser_accepts_what_json_allows() -> None:
    assert parse_json_bytes(b'{"n": 18446744073709551615, "m": -9223372036854775808, '
                            b'"s": "\\ud83d\\ude00 \\u00e9", "k": "a:b,c{"}', SETTINGS) == {
        "n": 2**64 - 1, "m": -(2**63), "s": "\U0001f600 é", "k": "a:b,c{"}
    assert parse_json_bytes("\ufeff[1]".encode(), SETTINGS) == [1]


@pytest.mark.parametrize(("data", "words"), [
    # no backslash, no bracket in a string: depth and keys are read from the skeleton
    (b'{"a": 1, "b": {"c": [1, {"d": "x:y", "d": 2}]}}', "'d' appears twice"),
    (b'{"a": {"k": "1:2:3", "l": [{"m": 1}]}, "a": 1}', "'a' appears twice"),
    (b'{"": [], "": []}', "'' appears twice"),
    (b"[" * 129 + b"]" * 129, "nests 129 levels deep"),
    # a bracket in a string, or a backslash: the walk of the parsed value decides
    (b'{"a": "[", "a": 1}', "'a' appears twice"),
    (b'{"a": "\\"", "a": 1}', "'a' appears twice"),
    (b'{"a": 1, "\\u0061": {"x": ":"}}', "'a' appears twice"),
    (b'{"a": 1, "a": "\\u003a"}', "'a' appears twice"),  # the kept value's colon is escaped
    (b'{"s": "\\"]\\"", "b": ' + b"[" * 128 + b"]" * 128 + b', "t": "\\"[\\""}', "nests 129 levels deep"),
    (b'{"a": "' + b"]" * 5 + b'", "b": ' + b"[" * 128 + b"]" * 128 + b"}", "nests 129 levels deep"),
    (b'{"s": "]", "b": ' + b"[" * 128 + b"]" * 128 + b', "t": "["}', "nests 129 levels deep"),
])
def test_parser_structure_refusals(data: bytes, words: str) -> None:
    with pytest.raises(InvalidJSON) as info:
        parse_json_bytes(data, SETTINGS)
    assert info.value.code == "json_limit_exceeded" and words in info.value.detail, info.value.detail


def test_parser_structure_accepts() -> None:
    assert parse_json_bytes(b'{"a": "x:y", "b": "::", "c": {"a": 1}}', SETTINGS) == {
        "a": "x:y", "b": "::", "c": {"a": 1}}
    assert parse_json_bytes(b'{"a": "\\u003a", "b": "]]"}', SETTINGS) == {"a": ":", "b": "]]"}
    deepest = b'{"s": "[[", "a": ' + b"[" * 127 + b"]" * 127 + b"}"
    assert parse_json_bytes(deepest, SETTINGS)["s"] == "[["
    assert parse_json_bytes(b"[" * 128 + b"]" * 128, SETTINGS) is not None


def test_parser_number_runs_joined_in_the_skeleton_are_checked_exactly() -> None:
    """The skeleton joins number characters that other bytes separate (``"1x2"``, ``e`` in
    words): a long run there sends the document to the exact checks, which accept it."""
    text = b'{"k": "' + b"1x" * 40 + b'", "e": "' + b"e " * 40 + b'", "n": [1, 2.5e-3]}'
    assert parse_json_bytes(text, SETTINGS) == {"k": "1x" * 40, "e": "e " * 40, "n": [1, 0.0025]}
    with pytest.raises(InvalidJSON, match="a number with 65 characters"):
        parse_json_bytes(b'{"k": "' + b"1x" * 40 + b'", "n": ' + b"7" * 65 + b"}", SETTINGS)


def _random_document(rng: random.Random, depth: int) -> str:
    """JSON text with keys from a small set (duplicates are frequent) and strings that hold
    brackets, colons, quotes and non-ASCII now and then."""
    roll = rng.random()
    odd = rng.random() < 0.05  # a string that holds a bracket or needs an escape
    if depth == 0 or roll < 0.3:
        return json.dumps(rng.choice(["[", "}", 'q"', "é"] if odd else [1, -2.5, None, True, "x", "a:b", ""]))
    if roll < 0.6:
        return "[" + ", ".join(_random_document(rng, depth - 1) for _ in range(rng.randrange(4))) + "]"
    keys = ["[", "{", 'q"', "é"] if odd else ["a", "b", "c", "d", "e", ":", "k,"]
    pairs = (f"{json.dumps(rng.choice(keys))}: {_random_document(rng, depth - 1)}"
             for _ in range(rng.randrange(4)))
    return "{" + ", ".join(pairs) + "}"


def _reference(text: str, max_depth: int) -> Any:
    """What the parser must answer, from the standard library: the value, or the refusal."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        duplicates.extend(key for index, key in enumerate(keys) if key in keys[:index])
        return dict(items)

    def depth(value: Any) -> int:
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        return 0 if children is None else 1 + max(map(depth, children), default=0)

    value = json.loads(text, object_pairs_hook=pairs)
    if depth(value) > max_depth:
        return f"nests {depth(value)} levels deep"
    return f"the key {duplicates[0]!r} appears twice" if duplicates else value


def test_parser_structure_agrees_with_the_standard_library() -> None:
    """Random documents: the skeleton and the walk of the parsed value answer alike."""
    rng = random.Random(20261130)
    settings = Settings(max_json_depth=5)
    for _ in range(3000):
        text = _random_document(rng, 6)
        expected = _reference(text, settings.max_json_depth)
        for data in (text.encode(), json.dumps(json.loads(text), ensure_ascii=False).encode()):
            if data != text.encode():
                expected = _reference(data.decode(), settings.max_json_depth)
            try:
                got = parse_json_bytes(data, settings)
            except InvalidJSON as exc:
                assert isinstance(expected, str) and expected in exc.detail, (data, exc.detail)
            else:
                assert got == expected, data


# -- .npz datasets ----------------------------------------------------------------------------

def _npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def _forged_npz(path: Path, shape: tuple[int, ...]) -> Path:
    """An .npz whose x.npy header claims ``shape`` over a few bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": shape})
    y = io.BytesIO()
    np.save(y, np.zeros(4, dtype="float32"))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\x00" * 16)
        archive.writestr("y.npy", y.getvalue())
    return path


def test_npz_headers_are_read_not_the_arrays(tmp_path: Path) -> None:
    path = _npz(tmp_path / "ok.npz", x=np.zeros((4, 8, 8, 3), "float32"), y=np.arange(4))
    summary = inspect_npz(path, SETTINGS)
    assert summary.arrays == {"x": ((4, 8, 8, 3), "float32"), "y": ((4,), "int64")}


@pytest.mark.parametrize(("build", "code"), [
    (lambda p: _forged_npz(p, (10**12,)), "dataset_limit_exceeded"),
    (lambda p: _forged_npz(p, (10**6, 1000, 1000)), "dataset_limit_exceeded"),
    (lambda p: _forged_npz(p, (5,)), "invalid_dataset"),  # 20 bytes claimed over 16
    (lambda p: _npz(p, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1)), "unsafe_dataset"),
    (lambda p: _npz(p, x=np.array(["a", "b"]), y=np.zeros(2)), "invalid_dataset"),
    (lambda p: _npz(p, x=np.zeros((3, 2)), y=np.zeros(4)), "invalid_dataset"),
    (lambda p: _npz(p, features=np.zeros(3)), "invalid_dataset"),
    (lambda p: _npz(p, **{f"a{i}": np.zeros(1) for i in range(20)}), "dataset_limit_exceeded"),
])
def test_npz_refusals(tmp_path: Path, build: Any, code: str) -> None:
    path = build(tmp_path / "data.npz")
    with pytest.raises(InvalidDataset) as info:
        inspect_npz(path, SETTINGS)
    assert (info.value.status, info.value.code) == (422, code), info.value.detail


def test_npz_size_is_a_413(tmp_path: Path) -> None:
    path = _npz(tmp_path / "big.npz", x=np.zeros(1000), y=np.zeros(1000))
    with pytest.raises(PayloadTooLarge):
        inspect_npz(path, Settings(max_npz_bytes=1000))


# -- the .keras weights member ----------------------------------------------------------------

def _keras_with_weights(mutate: Any, tmp_path: Path, compression: int = zipfile.ZIP_STORED) -> bytes:
    """The seed's real .keras archive with its model.weights.h5 changed by ``mutate``."""
    source = SEED / "example1.keras"
    weights = tmp_path / "weights.h5"
    with zipfile.ZipFile(source) as archive:
        weights.write_bytes(archive.read("model.weights.h5"))
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with h5py.File(weights, "r+") as handle:
        mutate(handle)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, weights.read_bytes() if name == "model.weights.h5" else data)
    return buffer.getvalue()


def _external_link(handle: h5py.File) -> None:
    handle["layers/leak"] = h5py.ExternalLink("/etc/hostname", "/")


def _external_storage(handle: h5py.File) -> None:
    handle.create_dataset("layers/leak", shape=(16,), dtype="uint8", external=[("/etc/hostname", 0, 16)])


def _virtual(handle: h5py.File) -> None:
    layout = h5py.VirtualLayout(shape=(16,), dtype="uint8")
    layout[:] = h5py.VirtualSource("/etc/hostname", "data", shape=(16,))
    handle.create_virtual_dataset("layers/leak", layout)


def _shape_bomb(handle: h5py.File) -> None:
    handle.create_dataset("layers/bomb", shape=(2**36,), dtype="float32", chunks=(1024,))


@pytest.mark.parametrize(("mutate", "code"), [
    (_external_link, "unsafe_hdf5"), (_external_storage, "unsafe_hdf5"), (_virtual, "unsafe_hdf5"),
    (_shape_bomb, "hdf5_limit_exceeded"),
])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_keras_weights_member_is_inspected_like_an_h5(mutate: Any, code: str, compression: int,
                                                      tmp_path: Path) -> None:
    data = _keras_with_weights(mutate, tmp_path, compression)
    with pytest.raises(InvalidArchitecture) as info:
        ingest_bytes(data, filename="model.keras", settings=SETTINGS)
    assert info.value.code == code
    assert "model.weights.h5" in info.value.detail


def test_benign_weights_pass_in_both_compressions(tmp_path: Path) -> None:
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        data = _keras_with_weights(lambda handle: None, tmp_path, compression)
        ingested = ingest_bytes(data, filename="model.keras", settings=SETTINGS)
        assert ingested.has_weights and ingested.format == "keras"


def test_hdf5_children_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every slot taken, an inspection waits at most child_timeout_s, then 503; at most
    max_concurrent_hdf5_inspections children run at once."""
    settings = Settings(max_concurrent_hdf5_inspections=1, child_timeout_s=0.2)
    slots = h5_module.inspection_slots(settings)
    assert slots.acquire(timeout=5)
    try:
        with pytest.raises(ServiceBusy) as info:
            ingest_bytes(SEED / "example1.h5", filename="example1.h5", settings=settings)
        assert (info.value.status, info.value.code) == (503, "inspection_busy")
    finally:
        slots.release()

    running, peak, lock = [0], [0], threading.Lock()
    original = h5_module.subprocess.run

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(h5_module.subprocess, "run", counted)
    two = Settings(max_concurrent_hdf5_inspections=2, child_timeout_s=60)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(
        ingest_bytes(SEED / "example2.h5", filename="example2.h5", settings=two))) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 5 and 1 <= peak[0] <= 2, peak


# -- other frameworks' files ------------------------------------------------------------------

@pytest.mark.parametrize(("filename", "kind", "words"), [
    ("model.pt", "pytorch", "PyTorch"),
    ("legacy.pt", "pytorch", "PyTorch"),
    ("model.onnx", "onnx", "ONNX"),
    ("saved_model.zip", "savedmodel", "SavedModel"),
    ("saved_model.tar.gz", "savedmodel", "SavedModel"),
    ("model.tflite", "tflite", "TensorFlow Lite"),
])
def test_other_frameworks_are_named_with_how_to_export(filename: str, kind: str, words: str) -> None:
    data = (FOREIGN / filename).read_bytes()
    for name in (filename, "model.keras", "model.h5", None):  # whatever the client calls it
        with pytest.raises(UnsupportedFormat) as info:
            ingest_bytes(data, filename=name, settings=SETTINGS)
        problem = info.value.to_problem()
        assert problem["status"] == 415 and problem["detected_format"] == kind
        assert words in problem["detail"] and "Keras" in problem["detail"]
        assert "model.save(" in problem["detail"] or "to_json" in problem["detail"]


def test_a_real_keras_archive_is_not_mistaken_for_another_format() -> None:
    for fmt in ("keras", "h5", "json"):
        data = (SEED / f"example1.{fmt}").read_bytes()
        assert ingest_bytes(data, filename=f"m.{fmt}", settings=SETTINGS).format == fmt
    assert json.loads((SEED / "example1.json").read_text())["class_name"]


def test_an_architecture_is_identified_by_its_sanitised_form() -> None:
    """What the gate drops does not make another architecture: the same model with a
    compile_config, unknown settings or another key order is stored once."""
    from app.ingest import ingest_config

    config = json.loads((SEED / "example1.json").read_text())
    noisy = json.loads(json.dumps(config))
    noisy["compile_config"] = {"optimizer": "adam", "loss": "mse"}
    noisy["config"]["layers"][1]["config"]["a_setting_nobody_reads"] = [1, 2, 3]
    reordered = dict(reversed(list(config.items())))
    identities = {ingest_config(value, SETTINGS).sha256 for value in (config, noisy, reordered)}
    assert len(identities) == 1
    as_file = ingest_bytes(json.dumps(noisy, indent=2).encode(), filename="m.json", settings=SETTINGS)
    assert as_file.sha256 in identities and "compile_config" not in as_file.config
