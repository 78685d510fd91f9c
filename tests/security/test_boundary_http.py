"""The former 500s and the ingestion hardening over HTTP, on SQLite and PostgreSQL: every bad
input is a 4xx problem+json with a stable code and leaves no row, blob, dataset or upload."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from app.config import Settings
from tests.api.helpers import assert_problem, row_counts, seed_bytes, seed_config, upload

pytestmark = pytest.mark.postgres
FOREIGN = Path(__file__).resolve().parents[1] / "ingest" / "foreign"


def _leftovers(settings: Settings) -> dict[str, list[str]]:
    found = {}
    for name in ("uploads", "blobs", "datasets"):
        directory = settings.data_dir / name
        found[name] = sorted(path.name for path in directory.iterdir()) if directory.exists() else []
    return found


@pytest.fixture
def clean(any_client: Any, any_settings: Settings) -> Any:
    """The client, and a check that the test left the service as it found it."""
    before = (row_counts(any_settings), _leftovers(any_settings))

    def unchanged() -> None:
        assert (row_counts(any_settings), _leftovers(any_settings)) == before

    any_client.unchanged = unchanged
    return any_client


def _renamed(config: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The config with layer ``old`` called ``new`` (entry, config and references)."""
    return json.loads(json.dumps(config).replace(json.dumps(old), json.dumps(new)))


def _first_conv(config: dict[str, Any]) -> str:
    return next(layer["config"]["name"] for layer in config["config"]["layers"]
                if layer["class_name"] == "Conv2D")


def test_names_keras_refuses_and_invalid_unicode(clean: Any, tmp_path: Path) -> None:
    config = seed_config(1)
    conv = _first_conv(config)
    body = assert_problem(clean.post("/v1/analyses", json={"architecture": _renamed(config, conv, "block/conv")}),
                          422, "invalid_layer_name")
    assert "'/'" in body["detail"] and "block/conv" in body["detail"]
    # a lone surrogate, escaped in the JSON text, in every container
    surrogate = json.dumps(_renamed(config, conv, "conv\udc80"))
    assert "\\udc80" in surrogate
    body = assert_problem(clean.post("/v1/analyses", content=b'{"architecture": ' + surrogate.encode() + b"}",
                                     headers={"content-type": "application/json"}), 422, "invalid_json")
    assert "surrogate" in body["detail"]
    assert_problem(upload(clean, surrogate.encode(), "m.json"), 422, "invalid_json")
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(seed_bytes(1, "keras"))) as source, zipfile.ZipFile(buffer, "w") as archive:
        for info in source.infolist():
            archive.writestr(info, surrogate.encode() if info.filename == "config.json" else source.read(info))
    assert_problem(upload(clean, buffer.getvalue(), "m.keras"), 422, "invalid_json")
    h5 = tmp_path / "m.h5"
    h5.write_bytes(seed_bytes(1, "h5"))
    with h5py.File(h5, "r+") as handle:
        handle.attrs["model_config"] = surrogate
    assert_problem(upload(clean, h5.read_bytes(), "m.h5"), 422, "invalid_json")
    clean.unchanged()


def test_tf_op_function_of_any_json_type(clean: Any) -> None:
    tf_keras = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "seed"
                           / "example3.tfkeras.json").read_text())
    ops = [layer for layer in tf_keras["config"]["layers"] if layer["class_name"] == "TFOpLambda"]
    if not ops:  # the seed's tf_keras example has no op layer: add one
        ops = [{"class_name": "TFOpLambda", "name": "tf.math.add", "inbound_nodes": [],
                "config": {"name": "tf.math.add", "function": "math.add", "trainable": True}}]
        tf_keras["config"]["layers"].append(ops[0])
    for function in (["math", "add"], {"name": "math.add"}, 7, None):
        ops[0]["config"]["function"] = function
        body = assert_problem(clean.post("/v1/analyses", json={"architecture": tf_keras}), 422,
                              "unsafe_architecture")
        assert "function" in body["detail"]
    clean.unchanged()


def test_elements_under_an_unknown_key_are_refused_cheaply(clean: Any) -> None:
    body = b'{"architecture": {"class_name": "Sequential", "config": {"layers": []}}, "x": [' \
        + b"{}," * 10_000_000 + b"{}]}"
    assert len(body) > 29_000_000
    for route in ("/v1/analyses", "/v1/training-runs"):
        problem = assert_problem(clean.post(route, content=body, headers={"content-type": "application/json"}),
                                 422, "json_limit_exceeded")
        assert "values" in problem["detail"]
    clean.unchanged()


def _npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _forged_npz() -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12, 224, 224, 3)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\x00" * 64)
        archive.writestr("y.npy", header.getvalue() + b"\x00" * 64)
    return buffer.getvalue()


def test_training_runs_refuse_bad_input_with_4xx(clean: Any, any_settings: Settings) -> None:
    analysis = clean.post("/v1/analyses", json={"architecture": seed_config(3)})
    assert analysis.status_code == 201, analysis.text
    analysis_id = analysis.json()["id"]
    clean.unchanged = _unchanged_from_here(any_settings)
    deep = b'{"analysis_id": "x", "steps": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for raw, code in (
        (deep, "json_limit_exceeded"),
        (b'{"analysis_id": "x", "steps": ' + b"9" * 5000 + b"}", "json_limit_exceeded"),
        (b'{"analysis_id": "x", "steps": 1e999}', "invalid_json"),
        (b'{"analysis_id": "\\ud800"}', "invalid_json"),
        (b"[1, 2]", "invalid_json"),
    ):
        assert_problem(clean.post("/v1/training-runs", content=raw, headers={"content-type": "application/json"}),
                       422, code)
    for shape in ([100_000, 100_000, 1], [0, 0, 0], [-1, 32, 3], [32, 32, 3.5], "big"):
        problem = assert_problem(clean.post("/v1/training-runs", json={"analysis_id": analysis_id,
                                                                        "input_shape": shape}),
                                 422, "invalid_input_shape")
        assert problem["title"] == "The input shape is not acceptable"
    for shape in ("100000x100000x1", "[1, 2", "0,0,0"):
        assert_problem(_form(clean, "/v1/training-runs", analysis_id=analysis_id, input_shape=shape),
                       422, "invalid_input_shape")
    forged = clean.post("/v1/training-runs", data={"analysis_id": analysis_id, "dataset": "npz"},
                        files={"dataset_file": ("data.npz", _forged_npz(), "application/octet-stream")})
    assert "(1000000000000, 224, 224, 3)" in assert_problem(forged, 422, "dataset_limit_exceeded")["detail"]
    pickled = _npz_bytes(x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    assert_problem(clean.post("/v1/training-runs", data={"analysis_id": analysis_id, "dataset": "npz"},
                              files={"dataset_file": ("data.npz", pickled, "application/octet-stream")}),
                   422, "unsafe_dataset")
    clean.unchanged()
    # the typed form works where a person types it
    created = _form(clean, "/v1/training-runs", analysis_id=analysis_id, input_shape="32,32,3", steps="2")
    assert created.status_code == 202, created.text
    assert created.json()["parameters"]["input_shape"] == [32, 32, 3]


def _form(client: Any, route: str, **fields: str) -> Any:
    """A multipart body of text fields only (what an HTML form or curl -F sends)."""
    body = _multipart([(name, None, value.encode()) for name, value in fields.items()])
    return client.post(route, content=body, headers={"content-type": "multipart/form-data; boundary=b0undary"})


def _unchanged_from_here(settings: Settings) -> Any:
    before = (row_counts(settings), _leftovers(settings))

    def unchanged() -> None:
        assert (row_counts(settings), _leftovers(settings)) == before

    return unchanged


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary", close: bool = True) -> bytes:
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(chunks) + (f"--{boundary}--\r\n".encode() if close else b"")


def test_multipart_limits_and_hints(clean: Any) -> None:
    headers = {"content-type": "multipart/form-data; boundary=b0undary"}
    same_name = _multipart([("name", None, b"x")] * 200_000)
    assert_problem(clean.post("/v1/analyses", content=same_name, headers=headers), 400, "invalid_multipart")
    many = _multipart([(f"field{index}", None, b"x") for index in range(20)])
    problem = assert_problem(clean.post("/v1/analyses", content=many, headers=headers), 400,
                             "invalid_multipart")
    assert "more than 16 parts" in problem["detail"]
    twice = _multipart([("file", "m.json", seed_bytes(1, "json")), ("name", None, b"a"), ("name", None, b"b")])
    assert_problem(clean.post("/v1/analyses", content=twice, headers=headers), 400, "invalid_multipart")
    open_ended = _multipart([("file", "m.json", seed_bytes(1, "json"))], close=False)
    problem = assert_problem(clean.post("/v1/analyses", content=open_ended, headers=headers), 400,
                             "invalid_multipart")
    assert "closing boundary" in problem["detail"]
    wrong = clean.post("/v1/analyses", files={"model": ("m.keras", seed_bytes(1, "keras"), "application/zip")})
    problem = assert_problem(wrong, 422, "wrong_file_field")
    assert "'file'" in problem["detail"] and problem["expected_field"] == "file"
    wrong = clean.post("/v1/training-runs", data={"analysis_id": "x"},
                       files={"file": ("data.npz", _npz_bytes(x=np.zeros(2), y=np.zeros(2)), "application/zip")})
    assert assert_problem(wrong, 422, "wrong_file_field")["expected_field"] == "dataset_file"
    for filename, kind in (("model.pt", "pytorch"), ("model.onnx", "onnx"), ("saved_model.zip", "savedmodel"),
                           ("model.tflite", "tflite")):
        problem = assert_problem(upload(clean, (FOREIGN / filename).read_bytes(), filename), 415,
                                 "unsupported_format")
        assert problem["detected_format"] == kind and "Keras" in problem["detail"], problem
    clean.unchanged()
    ok = upload(clean, seed_bytes(1, "keras"), "m.keras", input_shape="64,64,3")
    assert ok.status_code == 201, ok.text
    assert ok.json()["input_shape"] == [64, 64, 3]
    assert ok.json()["report"]["summary"]["input_shapes"] == [[None, 64, 64, 3]]


def test_keras_weights_with_an_external_link_are_refused_before_storage(clean: Any, tmp_path: Path) -> None:
    weights = tmp_path / "weights.h5"
    with zipfile.ZipFile(io.BytesIO(seed_bytes(2, "keras"))) as source:
        members = [(info.filename, source.read(info)) for info in source.infolist()]
    weights.write_bytes(dict(members)["model.weights.h5"])
    with h5py.File(weights, "r+") as handle:
        handle["layers/leak"] = h5py.ExternalLink("/etc/hostname", "/")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, weights.read_bytes() if name == "model.weights.h5" else data)
    problem = assert_problem(upload(clean, buffer.getvalue(), "m.keras"), 422, "unsafe_hdf5")
    assert "model.weights.h5" in problem["detail"] and "external link" in problem["detail"]
    clean.unchanged()
