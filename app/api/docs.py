"""OpenAPI pieces: request bodies with working examples built from the seed's three models."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

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
