"""OpenAPI pieces: request bodies with working examples built from the seed's three models."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

EXAMPLES_DIR = Path(__file__).parent / "examples"

SEED_EXAMPLES = {
    "example1": ("Seed example 1: satellite feature extractor (Sequential, 256x256x3)", [256, 256, 3]),
    "example2": ("Seed example 2: OCR digits, 5x5 first kernel (Sequential, 28x28x1)", [28, 28, 1]),
    "example3": ("Seed example 3: residual blocks (Functional, 128x128x3)", [128, 128, 3]),
}


@lru_cache(maxsize=8)
def seed_config(name: str) -> dict[str, Any]:
    """The Keras 3 ``model.to_json()`` of a seed example, as shipped with convlens."""
    data: dict[str, Any] = json.loads((EXAMPLES_DIR / f"seed_{name}.json").read_text())
    return data


def analysis_request_body() -> dict[str, Any]:
    examples = {
        key: {"summary": summary, "value": {"architecture": seed_config(key), "name": key}}
        for key, (summary, _shape) in SEED_EXAMPLES.items()
    }
    examples["example1_at_128"] = {
        "summary": "Seed example 1 re-analysed at 128x128 (input_shape override)",
        "value": {"architecture": seed_config("example1"), "input_shape": [128, 128, 3],
                  "name": "example1 at 128"},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/AnalysisCreate"},
                    "examples": examples,
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary",
                                     "description": "A .keras archive, a legacy .h5 file or a .json model config"},
                            "input_shape": {"type": "string", "description": "JSON list, e.g. [224, 224, 3]"},
                            "name": {"type": "string", "maxLength": 300},
                            "measure_gradients": {"type": "boolean"},
                        },
                    }
                },
            },
        }
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad request", 401: "Missing or unknown API key", 404: "Not found (or another tenant's)",
        409: "Conflict", 413: "Body too large", 415: "Unsupported format",
        422: "Invalid or unsafe input", 429: "Rate limited",
    }
    return {
        status: {
            "description": descriptions.get(status, "Error"),
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


_PROBLEM_DESCRIPTIONS = {
    "400": "Bad request",
    "401": "Missing or unknown API key",
    "404": "Not found (or owned by another tenant)",
    "409": "Conflict with the resource's state",
    "413": "Body too large",
    "415": "Unsupported media type or file format",
    "422": "Invalid or unsafe input",
    "429": "Rate limited",
}


def document_problems(schema: dict[str, Any]) -> None:
    """Every operation documents its errors as application/problem+json (RFC 9457)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = Problem.model_json_schema()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = ["422"]
            if path.startswith("/v1/"):
                statuses += ["401", "429"]
                if "{" in path:
                    statuses.append("404")
                if "requestBody" in operation or method in {"post", "put", "patch"}:
                    statuses += ["400", "413", "415"]
            for status in statuses:
                operation["responses"][status] = {
                    "description": _PROBLEM_DESCRIPTIONS[status], "content": problem
                }
