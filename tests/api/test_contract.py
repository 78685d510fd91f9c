"""The OpenAPI document as a contract: clean operation ids, one request body type per
operation, every report field typed (no open bag under the report), and an example for every
operation's answer that validates against its own response model."""

from __future__ import annotations

from typing import Any

import pytest

from app.analyses.schemas import AnalysisOut, AnalysisPage
from app.analysis.schema import Report
from app.architectures.schemas import ArchitectureOut, ArchitecturePage
from app.training.results import TrainingResult
from app.training.schemas import TrainingRunOut

RESPONSE_MODELS = {
    "AnalysisOut": AnalysisOut, "AnalysisPage": AnalysisPage, "ArchitectureOut": ArchitectureOut,
    "ArchitecturePage": ArchitecturePage, "TrainingRunOut": TrainingRunOut,
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(tmp_path_factory.mktemp("contract")))) as client:
        return client.get("/openapi.json").json()  # type: ignore[no-any-return]


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, operations in schema["paths"].items()
            for method, operation in operations.items() if isinstance(operation, dict)]


def test_operation_ids_are_the_route_names(schema: dict[str, Any]) -> None:
    ids = {(method, path): operation["operationId"] for method, path, operation in _operations(schema)}
    assert len(set(ids.values())) == len(ids)
    assert all("_v1_" not in value and not value.endswith(("_get", "_post", "_delete")) for value in ids.values())
    assert ids[("post", "/v1/analyses")] == "create_analysis"
    assert ids[("post", "/v1/analyses/upload")] == "upload_analysis"
    assert ids[("get", "/v1/analyses/{analysis_id}")] == "get_analysis"
    assert ids[("get", "/v1/analyses")] == "list_analyses"
    assert ids[("post", "/v1/training-runs/upload")] == "upload_training_run"


def test_each_operation_documents_one_request_body_type(schema: dict[str, Any]) -> None:
    bodies = {(method, path): sorted((operation.get("requestBody") or {}).get("content", {}))
              for method, path, operation in _operations(schema)}
    assert all(len(types) <= 1 for types in bodies.values()), bodies
    assert bodies[("post", "/v1/analyses")] == ["application/json"]
    assert bodies[("post", "/v1/analyses/upload")] == ["multipart/form-data"]
    assert bodies[("post", "/v1/training-runs")] == ["application/json"]
    assert bodies[("post", "/v1/training-runs/upload")] == ["multipart/form-data"]


def _reachable(schema: dict[str, Any], name: str) -> set[str]:
    components = schema["components"]["schemas"]
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str):
                    pending.append(ref.rsplit("/", 1)[-1])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(components[current])
    return seen


def _number_map(spec: dict[str, Any]) -> bool:
    """A JSON object whose values are all numbers (or null): typed, keyed by layer name."""
    values = spec.get("additionalProperties")
    options = values.get("anyOf", [values]) if isinstance(values, dict) else []
    return bool(options) and all(o.get("type") in ("number", "null") for o in options)


def test_every_report_field_is_typed_and_described(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    report = components["AnalysisOut"]["properties"]["report"]
    assert {"$ref": "#/components/schemas/Report"} in report["anyOf"]
    reachable = _reachable(schema, "Report")
    assert {"Summary", "Layer", "LayerField", "FieldAxis", "StagesFinding", "StagesDetails",
            "PredictedGradientFlow", "MeasuredGradientFlow", "Coverage"} <= reachable
    undescribed = []
    for name in reachable:
        definition = components[name]
        assert definition.get("additionalProperties") is False, f"{name} is an open object"
        assert definition.get("type") == "object" and definition["properties"], name
        for field, spec in definition["properties"].items():
            if isinstance(spec, dict) and "additionalProperties" in spec:
                # closed, or a map from names to numbers (gradient_flow's per_layer)
                assert spec["additionalProperties"] is False or _number_map(spec), (
                    f"{name}.{field} is an open object")
            if "description" not in spec and name in {"Summary", "Layer", "FieldAxis", "ReceptiveFieldSummary"}:
                undescribed.append(f"{name}.{field}")
    assert undescribed == []
    assert "input pixels" in components["FieldAxis"]["properties"]["size"]["description"].lower()
    assert components["LayerField"]["properties"].keys() >= {"axes", "global"}  # the JSON names
    assert set(components["Report"]["properties"]) == set(Report.model_fields)


def test_training_result_is_typed(schema: dict[str, Any]) -> None:
    result = schema["components"]["schemas"]["TrainingRunOut"]["properties"]["result"]
    assert {"$ref": "#/components/schemas/TrainingResult"} in result["anyOf"]
    verdict = schema["components"]["schemas"]["TrainingVerdict"]["properties"]
    assert {"summary", "loss_decreased", "overfit_one_batch_passed"} <= set(verdict)


def test_every_operation_answer_has_an_example_valid_against_its_model(schema: dict[str, Any]) -> None:
    without = []
    for method, path, operation in _operations(schema):
        successes = {status: response for status, response in operation["responses"].items()
                     if status.startswith("2")}
        examples = 0
        for status, response in successes.items():
            for media_type, media in (response.get("content") or {}).items():
                if "example" not in media:
                    continue
                examples += 1
                name = ((media.get("schema") or {}).get("$ref") or "").rsplit("/", 1)[-1]
                if media_type == "application/json" and name in RESPONSE_MODELS:
                    model = RESPONSE_MODELS[name].model_validate(media["example"])
                    if name == "AnalysisOut":
                        Report.model_validate(media["example"]["report"])
                    if name == "TrainingRunOut":
                        TrainingResult.model_validate(media["example"]["result"])
                    assert model is not None
        if examples == 0 and successes and set(successes) != {"204"}:
            without.append(f"{method.upper()} {path}")
    assert without == []
