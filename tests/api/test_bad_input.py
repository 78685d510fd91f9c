"""Bad input of every kind gets a 4xx problem+json with a stable code, never a 500, and leaves
no half-written rows behind."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from tests.api.helpers import assert_problem, row_counts, seed_bytes, seed_config, upload

EMPTY = {"architectures": 0, "jobs": 0, "job_events": 0}


def _json(client, raw: bytes):
    return client.post("/v1/analyses", content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2, 3]", "invalid_json"),
        (b'{"architecture": 5}', "validation_error"),
        (b'{"architecture": {"class_name": "Sequential", "config": {"layers": []}}, "input_shape": "big"}',
         "invalid_input_shape"),
        (b'{"architecture": {"class_name": "Sequential", "config": {}}, "surprise": 1}', "validation_error"),
        (b'{"architecture": "not a model"}', "invalid_json"),
        (b'{"architecture": {"class_name": "Conv2D", "config": {}}}', "invalid_architecture"),
        (b'{"architecture": {"class_name": "Sequential", "config": {"layers": "nope"}}}', "invalid_architecture"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
    ],
)
def test_malformed_json_and_wrong_types(any_client, any_settings, raw: bytes, code: str) -> None:
    body = assert_problem(_json(any_client, raw), 422)
    assert body["code"] == code, body
    assert row_counts(any_settings) == EMPTY


def test_wrong_layer_config_is_422_with_what_was_received(client, settings) -> None:
    config = seed_config(1)
    layers = config["config"]["layers"]
    conv = next(layer for layer in layers if layer["class_name"] == "Conv2D")
    conv["config"]["kernel_size"] = "three"
    body = assert_problem(client.post("/v1/analyses", json={"architecture": config}), 422)
    assert "three" in body["detail"]
    assert row_counts(settings) == EMPTY


def test_bad_input_shape_values(client, settings) -> None:
    for shape in ([0, 10, 3], [-1, 5, 5], [10**9, 1, 1], [], [1, 2, 3, 4, 5]):
        response = client.post("/v1/analyses", json={"architecture": seed_config(1), "input_shape": shape})
        assert_problem(response, 422)
    assert_problem(upload(client, seed_bytes(1, "keras"), "m.keras", input_shape="[1, 2"), 422)
    assert row_counts(settings) == EMPTY


def test_unknown_formats_get_415(any_client, any_settings) -> None:
    assert_problem(upload(any_client, b"GIF89a\x00\x00 not a model", "m.gif"), 415, "unsupported_format")
    assert_problem(upload(any_client, b"\x00\x01\x02\x03" * 100, "model.keras"), 415, "unsupported_format")
    # content and extension disagree
    assert_problem(upload(any_client, seed_bytes(1, "keras"), "model.h5"), 415, "unsupported_format")
    assert_problem(upload(any_client, seed_bytes(1, "h5"), "model.keras"), 415, "unsupported_format")
    response = any_client.post("/v1/analyses", content=b"x", headers={"content-type": "text/plain"})
    assert_problem(response, 415, "unsupported_format")
    assert row_counts(any_settings) == EMPTY
    assert (
        not list((any_settings.data_dir / "uploads").glob("*"))
        if (any_settings.data_dir / "uploads").exists()
        else True
    )


def test_truncated_archives(any_client, any_settings) -> None:
    keras = seed_bytes(3, "keras")
    for cut in (len(keras) // 2, 200, 30):
        assert_problem(upload(any_client, keras[:cut], "model.keras"), 422)
    h5 = seed_bytes(3, "h5")
    assert_problem(upload(any_client, h5[: len(h5) // 3], "model.h5"), 422)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    assert_problem(upload(any_client, buffer.getvalue(), "model.keras"), 422)
    assert row_counts(any_settings) == EMPTY
    uploads = any_settings.data_dir / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def test_oversized_bodies_get_413(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, max_json_bytes=10_000, max_upload_bytes=50_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        big = {"architecture": seed_config(1), "name": "x" * 20_000}
        assert_problem(client.post("/v1/analyses", json=big), 413, "payload_too_large")
        assert_problem(upload(client, b"\x89HDF\r\n\x1a\n" + b"\x00" * 60_000, "m.h5"), 413, "payload_too_large")

        # A chunked body without Content-Length is counted while it streams in.
        def chunks():
            for _ in range(100):
                yield b" " * 1000

        response = client.post("/v1/analyses", content=chunks(), headers={"content-type": "application/json"})
        assert_problem(response, 413, "payload_too_large")
        assert row_counts(settings) == EMPTY
        assert client.get("/healthz").status_code == 200
        ok = client.post("/v1/analyses", json={"architecture": seed_config(2)})
        assert ok.status_code == 201


def test_unknown_routes_and_methods_are_problems(client) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "not_found")
    assert_problem(client.put("/v1/analyses"), 405, "method_not_allowed")
    assert_problem(client.get("/v1/analyses/does-not-exist"), 404, "not_found")
    assert_problem(client.get("/v1/analyses", params={"limit": 0}), 422, "validation_error")


def _after_upsampling(*layers: dict) -> dict:
    from tests.analysis.builders import call, functional, input_layer

    chain = [input_layer("x", (16, 16, 3)), call("UpSampling2D", "up", {"size": [2, 2]}, "x")]
    previous = "up"
    for class_name, name, config in layers:
        chain.append(call(class_name, name, config, previous))
        previous = name
    return functional(chain, ["x"], [previous])


_FIELD_BOMBS = {
    "a 10^9-tap kernel after an upsampling": _after_upsampling(
        ("Conv2D", "wide", {"filters": 1, "kernel_size": [10**9, 10**9], "padding": "same"})),
    "a 10^9 pool after an upsampling": _after_upsampling(
        ("MaxPooling2D", "wide", {"pool_size": [10**9, 10**9], "strides": [1, 1], "padding": "same"})),
    "a transposed convolution of stride 10^6": _after_upsampling(
        ("Conv2DTranspose", "wide", {"filters": 1, "kernel_size": [3, 3], "strides": [10**6, 1],
                                     "padding": "same"})),
    "an upsampling by 10^9": _after_upsampling(("UpSampling2D", "wide", {"size": [10**9, 1]})),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(_FIELD_BOMBS))
def test_a_receptive_field_that_would_read_billions_of_units_is_refused_at_once(
        client, settings, case: str) -> None:
    """Following unit fields through an upsampling builds, per output unit, the input units it
    reads: these configs asked for billions (minutes and 5 GB per request before). They are
    refused with 422 resource_limit_exceeded, naming the layer, before anything is built."""
    response = client.post("/v1/analyses", json={"architecture": _FIELD_BOMBS[case]})
    body = assert_problem(response, 422, "resource_limit_exceeded")
    assert "'wide'" in body["detail"] and body["limit"] == 1 << 16, body
    assert row_counts(settings) == EMPTY
    assert client.get("/healthz").status_code == 200
