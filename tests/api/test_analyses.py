"""POST /v1/analyses with the seed's three models in all three formats, on SQLite and PostgreSQL,
checked layer by layer against what Keras itself reported (tests/fixtures/seed/*.expected.json)."""

from __future__ import annotations

import json

import pytest

from tests.api.helpers import (
    FORMATS,
    SEED_TOTALS,
    assert_problem,
    row_counts,
    seed_bytes,
    seed_config,
    seed_expected,
    upload,
)


def _post(client, example: int, fmt: str):
    if fmt == "json":
        return client.post("/v1/analyses", json={"architecture": seed_config(example), "name": f"ex{example}"})
    return upload(client, seed_bytes(example, fmt), f"example{example}.{fmt}", name=f"ex{example}")


def _assert_matches_keras(report: dict, example: int) -> None:
    expected = seed_expected(example)
    layers = report["layers"]
    assert [layer["name"] for layer in layers] == [layer["name"] for layer in expected["layers"]]
    for got, want in zip(layers, expected["layers"], strict=True):
        assert got["class_name"] == want["class_name"]
        assert got["output_shape"] == want["output_shape"], got["name"]
        assert got["params"] == want["params"], got["name"]
        assert got["trainable_params"] == want["trainable_params"], got["name"]
    assert report["summary"]["total_params"] == expected["totals"]["params"] == SEED_TOTALS[example]
    assert report["summary"]["trainable_params"] == expected["totals"]["trainable_params"]
    assert report["summary"]["output_shapes"] == expected["output_shapes"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("example", [1, 2, 3])
def test_seed_examples_match_keras(any_client, example: int, fmt: str) -> None:
    response = _post(any_client, example, fmt)
    assert response.status_code == 201, response.text[:1000]
    body = response.json()
    assert response.headers["location"] == f"/v1/analyses/{body['id']}"
    assert body["status"] == "succeeded"
    assert body["architecture"]["format"] == fmt
    _assert_matches_keras(body["report"], example)

    again = any_client.get(response.headers["location"])
    assert again.status_code == 200
    stored = again.json()
    assert stored["status"] == "succeeded"
    assert stored["error"] is None
    _assert_matches_keras(stored["report"], example)
    assert set(stored) >= {"id", "status", "architecture", "report", "error", "created_at", "updated_at"}


def test_same_content_is_stored_once(client, settings) -> None:
    first = _post(client, 3, "keras").json()
    second = _post(client, 3, "keras").json()
    assert first["id"] != second["id"]
    assert first["architecture"]["id"] == second["architecture"]["id"]
    assert row_counts(settings)["architectures"] == 1
    arch = client.get(f"/v1/architectures/{first['architecture']['id']}").json()
    assert arch["sha256"] == first["architecture"]["sha256"]
    assert arch["byte_size"] == len(seed_bytes(3, "keras"))
    assert arch["config"]["class_name"] in {"Functional", "Model"}
    blobs = list((settings.data_dir / "blobs").iterdir())
    assert len(blobs) == 1
    # JSON sent as an object and as the string to_json() returns is the same content.
    a = client.post("/v1/analyses", json={"architecture": seed_config(1)}).json()
    b = client.post("/v1/analyses", json={"architecture": json.dumps(seed_config(1))}).json()
    assert a["architecture"]["sha256"] == b["architecture"]["sha256"]


def test_input_shape_override_recomputes_shapes(client) -> None:
    body = client.post("/v1/analyses", json={"architecture": seed_config(1), "input_shape": [64, 64, 3]}).json()
    assert body["input_shape"] == [64, 64, 3]
    assert body["report"]["layers"][-1]["output_shape"] == [None, 32, 32, 64]
    assert body["report"]["summary"]["total_params"] == SEED_TOTALS[1]
    multipart = upload(client, seed_bytes(1, "h5"), "m.h5", input_shape="[32, 32, 3]").json()
    assert multipart["report"]["layers"][-1]["output_shape"] == [None, 16, 16, 64]


def test_list_filter_paginate_delete(any_client) -> None:
    ids = [_post(any_client, n, "json").json()["id"] for n in (1, 2, 3)]
    page = any_client.get("/v1/analyses", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = any_client.get("/v1/analyses", params={"limit": 2, "offset": 2}).json()
    assert {i["id"] for i in page["items"] + rest["items"]} == set(ids)
    named = any_client.get("/v1/analyses", params={"name": "ex2"}).json()
    assert [i["id"] for i in named["items"]] == [ids[1]]
    assert named["items"][0]["summary"]["total_params"] == SEED_TOTALS[2]
    assert any_client.get("/v1/analyses", params={"status": "failed"}).json()["total"] == 0
    assert_problem(any_client.get("/v1/analyses", params={"status": "bogus"}), 422, "validation_error")

    assert any_client.delete(f"/v1/analyses/{ids[0]}").status_code == 204
    assert_problem(any_client.get(f"/v1/analyses/{ids[0]}"), 404, "not_found")
    arch_id = any_client.get(f"/v1/analyses/{ids[1]}").json()["architecture"]["id"]
    assert any_client.delete(f"/v1/architectures/{arch_id}").status_code == 204
    assert_problem(any_client.get(f"/v1/analyses/{ids[1]}"), 404, "not_found")
    assert_problem(any_client.delete(f"/v1/architectures/{arch_id}"), 404, "not_found")
    assert any_client.get("/v1/analyses").json()["total"] == 1


def test_health_and_readiness(any_client) -> None:
    assert any_client.get("/healthz").json() == {"status": "ok"}
    ready = any_client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["migrations"]["current"] == checks["migrations"]["head"]


def test_openapi_examples_are_the_seed_models_and_work(client) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/analyses"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json"}  # uploads: POST /v1/analyses/upload
    upload = schema["paths"]["/v1/analyses/upload"]["post"]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data"}
    examples = body["application/json"]["examples"]
    assert {"example1", "example2", "example3"} <= set(examples)
    for key, example in examples.items():
        response = client.post("/v1/analyses", json=example["value"])
        assert response.status_code == 201, (key, response.text[:300])
    assert client.get("/docs").status_code == 200


def test_every_docs_example_works_when_tried(tmp_path) -> None:
    """The docs page's examples (path ids and bodies) answer 2xx on the embedded service."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, demo_data=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        schema = client.get("/openapi.json").json()
        tried = 0
        deletes = []
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                params = operation.get("parameters", [])
                url = path
                if path.startswith("/v1/training-runs"):
                    continue  # needs a worker: test_training_docs_examples_work_when_tried
                for param in params:
                    if param["in"] == "path":
                        example = param.get("example") or param.get("schema", {}).get("example")
                        if example is None:
                            examples = param.get("schema", {}).get("examples") or param.get("examples")
                            example = examples[0] if isinstance(examples, list) else None
                        assert example is not None, (method, path, param["name"])
                        url = url.replace("{" + param["name"] + "}", str(example))
                assert "{" not in url, url
                if method == "delete":
                    deletes.append(url)
                    continue
                content = operation.get("requestBody", {}).get("content", {})
                if "multipart/form-data" in content:  # the upload operation: a file as a person picks one
                    seed = seed_bytes(3, "keras")
                    response = client.request(method.upper(), url, files={"file": ("example3.keras", seed)})
                    assert 200 <= response.status_code < 300, (method, url, response.status_code, response.text[:300])
                    tried += 1
                    continue
                body = content.get("application/json", {})
                examples = list(body.get("examples", {}).values())
                payloads = [e["value"] for e in examples] or [None]
                for payload in payloads:
                    response = client.request(method.upper(), url, json=payload)
                    assert 200 <= response.status_code < 300, (method, url, response.status_code, response.text[:300])
                    tried += 1
        for url in sorted(deletes, key=lambda u: "architectures" in u):
            response = client.delete(url)
            assert response.status_code == 204, (url, response.text[:300])
            tried += 1
        assert tried >= 15
        # The demo analyses survive the DELETE examples; the compare example is the seed's 1 vs 2.
        compare = client.get("/v1/analyses/demo-example1/compare/demo-example2")
        assert compare.status_code == 200


@pytest.mark.tensorflow
@pytest.mark.slow
def test_training_docs_examples_work_when_tried(tmp_path) -> None:
    """With a local worker, the demo training run finishes and the training examples work."""
    import time

    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, demo_data=True, local_workers=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        schema = client.get("/openapi.json").json()
        param = schema["paths"]["/v1/training-runs/{run_id}"]["get"]["parameters"][0]
        run_id = param["example"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            run = client.get(f"/v1/training-runs/{run_id}").json()
            if run["status"] in {"succeeded", "failed", "cancelled"}:
                break
            time.sleep(1)
        assert run["status"] == "succeeded", run
        events = client.get(f"/v1/training-runs/{run_id}/events")
        assert events.status_code == 200 and "data:" in events.text
        body = schema["paths"]["/v1/training-runs"]["post"]["requestBody"]["content"]["application/json"]
        for example in body["examples"].values():
            created = client.post("/v1/training-runs", json=example["value"])
            assert created.status_code in (201, 202), created.text[:300]
            cancel = client.post(f"/v1/training-runs/{created.json()['id']}/cancel")
            assert cancel.status_code in (200, 202), cancel.text[:300]


def test_large_upload_is_stored_byte_for_byte(client, settings) -> None:
    """A multi-megabyte .keras streams through the parser in many chunks; the stored blob and
    its sha256 are exactly the uploaded bytes."""
    import hashlib
    import io
    import os
    import zipfile

    original = seed_bytes(3, "keras")
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item.filename))
        target.writestr("assets/padding.bin", os.urandom(6 * 1024 * 1024 + 12345),
                        compress_type=zipfile.ZIP_STORED)
    data = buffer.getvalue()
    response = upload(client, data, "big.keras")
    assert response.status_code == 201, response.text[:300]
    architecture = response.json()["architecture"]
    assert architecture["sha256"] == hashlib.sha256(data).hexdigest()
    assert architecture["byte_size"] == len(data)
    blob = settings.data_dir / "blobs" / f"{architecture['sha256']}.keras"
    assert blob.read_bytes() == data


def test_input_shape_per_input_of_a_two_input_model(client) -> None:
    from tests.analysis.builders import two_input_model

    body = client.post("/v1/analyses", json={
        "architecture": two_input_model(), "input_shape": {"image": [64, 48, 3], "mask": [20, 24, 1]},
    })
    assert body.status_code == 201, body.text
    created = body.json()
    assert created["input_shape"] == {"image": [64, 48, 3], "mask": [20, 24, 1]}
    assert created["report"]["summary"]["input_shapes"] == [[None, 64, 48, 3], [None, 20, 24, 1]]
    layers = {layer["name"]: layer for layer in created["report"]["layers"]}
    assert layers["image_conv"]["output_shape"] == [None, 32, 24, 8]
    assert client.get(f"/v1/analyses/{created['id']}").json()["input_shape"] == created["input_shape"]
    problem = assert_problem(client.post("/v1/analyses", json={
        "architecture": two_input_model(), "input_shape": {"picture": [64, 64, 3]}}), 422, "invalid_input_shape")
    assert "['image', 'mask']" in problem["detail"]
    problem = assert_problem(client.post("/v1/analyses", json={
        "architecture": two_input_model(), "input_shape": [64, 64, 3]}), 422)
    assert "per input" in problem["detail"]


def test_densenet201_at_4096_px_is_analysed_not_refused(client) -> None:
    """Activation memory limits the jobs that allocate it, not the static report: the old
    64 GiB limit refused this with resource_limit_exceeded."""
    from app.config import Settings
    from tests.fixtures.load import FIXTURES_DIR, load_config

    config = load_config(FIXTURES_DIR / "large" / "densenet201.json.gz")
    response = client.post("/v1/analyses", json={"architecture": config, "input_shape": [4096, 4096, 3]})
    assert response.status_code == 201, response.text
    report = response.json()["report"]
    assert report["summary"]["input_shapes"] == [[None, 4096, 4096, 3]]
    assert report["summary"]["activation_bytes"] > Settings().max_activation_bytes
    assert report["receptive_field"]["axes"][0]["size"] > 2048
