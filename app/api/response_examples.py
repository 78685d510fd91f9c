"""Response examples for every operation of the OpenAPI document.

The JSON examples are built from what convlens itself computes for the seed's models (the
report of Example 3, the comparison of Examples 1 and 2), so they are real answers and stay
current; a test validates each against its response model. Non-JSON answers (the HTML page,
the plots, the event stream) get a short example of their format.

Example::

    add_response_examples(schema)   # fills responses[2xx].content[*].example where missing
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

CREATED_AT = "2026-01-05T09:30:00Z"
UPDATED_AT = "2026-01-05T09:30:01Z"
SHA256 = "9f2c5a0f3e1b4d6c8a7e5f3d1c2b4a6e8f0d2c4b6a8e0f2d4c6b8a0e2f4d6c8a"


@cache
def seed_report(example: str = "example3") -> dict[str, Any]:
    """The engine's report of a seed example, as ``POST /v1/analyses`` returns it."""
    from app.analysis import analyze
    from app.api.docs import seed_config

    return analyze(seed_config(example), name=example)


def architecture_example(*, config: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "arch-3f1d2c", "name": "example3_residual", "format": "json", "sha256": SHA256,
        "byte_size": 9417, "has_weights": False, "created_at": CREATED_AT,
    }
    if config:
        from app.api.docs import seed_config

        body["config"] = seed_config("example3")
    return body


def analysis_example() -> dict[str, Any]:
    return {
        "id": "demo-example3", "status": "succeeded", "name": "example3",
        "architecture": architecture_example(), "input_shape": None, "report": seed_report(),
        "error": None, "progress": 1.0, "gradient_job_id": None,
        "created_at": CREATED_AT, "updated_at": UPDATED_AT,
    }


def analysis_page_example() -> dict[str, Any]:
    return {
        "items": [{
            "id": "demo-example3", "status": "succeeded", "name": "example3", "architecture_id": "arch-3f1d2c",
            "summary": seed_report()["summary"], "created_at": CREATED_AT, "updated_at": UPDATED_AT,
        }],
        "total": 1, "limit": 50, "offset": 0,
    }


def training_run_example() -> dict[str, Any]:
    """A finished 30-step run of the seed's Example 2 on synthetic data."""
    losses = [2.31, 2.27, 2.18, 2.05, 1.93]
    return {
        "id": "run-7c41e0", "status": "succeeded", "architecture_id": "arch-8b20aa",
        "analysis_id": "demo-example2",
        "parameters": {"steps": 30, "batch_size": 16, "optimizer": "adam", "dataset": "synthetic"},
        "progress": {"steps_done": 30, "steps": 30, "fraction": 1.0, "eta_s": 0.0, "loss": 0.41,
                     "phase": None},
        "attempts": 1, "time_limit_s": 900.0, "cancel_requested": False,
        "result": {
            "status": "completed", "device": "CPU:0", "steps_completed": 30, "elapsed_s": 6.2,
            "train_elapsed_s": 2.9, "compile_s": 2.4, "median_step_time_s": 0.021, "samples_per_s": 761.9,
            "dataset": {"kind": "synthetic", "samples": None},
            "history": {"loss": losses, "accuracy": [0.12, 0.19, 0.25, 0.31, 0.44],
                        "step_time_s": [0.9, 0.03, 0.021, 0.02, 0.021],
                        "grad_global_norm": [1.8, 1.7, 1.5, 1.4, 1.3]},
            "overfit_one_batch": {"passed": True, "steps": 20, "batch_size": 8, "initial_loss": 2.3,
                                  "final_loss": 0.08, "factor": 28.8, "required_factor": 10.0},
            "verdict": {
                "loss_initial": 2.15, "loss_final": 0.43, "loss_change": -1.72, "loss_relative_change": -0.8,
                "loss_decreased": True, "overfit_one_batch_passed": True,
                "overfit_one_batch": {"passed": True, "steps": 20, "batch_size": 8, "initial_loss": 2.3,
                                      "final_loss": 0.08, "factor": 28.8, "required_factor": 10.0},
                "gradient_health": [{"step": 10, "first_to_last_ratio": 0.62, "verdict": "healthy"}],
                "gradient_health_overall": "healthy", "max_dead_fraction": 0.04, "stopped": "completed",
                "summary": "Loss went from 2.15 to 0.43 (-80%); it overfits one batch (loss down 28.8x in 20 "
                           "steps); gradients were healthy over the run.",
            },
        },
        "error": None, "events_url": "/v1/training-runs/run-7c41e0/events",
        "created_at": CREATED_AT, "updated_at": UPDATED_AT, "started_at": CREATED_AT, "finished_at": UPDATED_AT,
    }


@cache
def comparison_example() -> dict[str, Any]:
    from app.reports.compare import compare_reports

    return compare_reports(seed_report("example1"), seed_report("example2"))


def misaligned_example() -> dict[str, Any]:
    return {
        "analysis_id": "demo-example3",
        "merges": [{"layer": "add", "branches": [["conv2d_5", "max_pooling2d_1"]], "pair_count": 1,
                    "max_offset": 0.5}],
        "pair_count": 1,
    }


#: JSON examples by the response's component schema.
BY_SCHEMA = {
    "AnalysisOut": analysis_example,
    "AnalysisPage": analysis_page_example,
    "ArchitectureOut": lambda: architecture_example(config=True),
    "ArchitecturePage": lambda: {"items": [architecture_example()], "total": 1, "limit": 50, "offset": 0},
    "TrainingRunOut": training_run_example,
}

#: Examples of the other answers by path suffix and media type.
BY_PATH: dict[tuple[str, str], Any] = {
    ("/healthz", "application/json"): lambda: {"status": "ok"},
    ("/readyz", "application/json"): lambda: {
        "status": "ready",
        "checks": {"database": "ok", "migrations": {"current": "20260105_0001", "head": "20260105_0001"},
                   "executor": {"status": "ok", "executor": "local", "workers": 1, "alive": 1, "restarts": 0}},
    },
    ("/compare/{other_id}", "application/json"): comparison_example,
    ("/misaligned", "application/json"): misaligned_example,
    ("/report.html", "text/html"): lambda: "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<title>example3 - convlens report</title>...</html>",
    ("/compare/{other_id}", "text/html"): lambda: "<!DOCTYPE html>\n<html lang=\"en\">...</html>",
    ("/plots/{filename}", "image/svg+xml"): lambda: "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<svg "
    "xmlns=\"http://www.w3.org/2000/svg\" ...>...</svg>",
    ("/events", "text/event-stream"): lambda: (
        "id: 1\nevent: started\ndata: {\"attempt\": 1}\n\n"
        "id: 2\nevent: step\ndata: {\"step\": 1, \"loss\": 2.31, \"eta_s\": 4.1}\n\n"
        "id: 31\nevent: finished\ndata: {\"status\": \"succeeded\"}\n\n"
    ),
    ("/metrics", "text/plain"): lambda: "# TYPE convlens_requests_total counter\n"
    "convlens_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 12.0\n",
}


def _schema_name(media: dict[str, Any]) -> str | None:
    ref = (media.get("schema") or {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else None


def example_for(path: str, media_type: str, media: dict[str, Any]) -> Any:
    """The example of one response body, or None when convlens has none for it."""
    name = _schema_name(media)
    if media_type == "application/json" and name in BY_SCHEMA:
        return copy.deepcopy(BY_SCHEMA[name]())
    for (suffix, media_kind), build in BY_PATH.items():
        if path.endswith(suffix) and media_type == media_kind:
            return build()
    return None


def add_response_examples(schema: dict[str, Any]) -> None:
    """Give every successful response of every operation an example where it has none."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if not str(status).startswith("2"):
                    continue
                for media_type, media in (response.get("content") or {}).items():
                    if "example" in media or "examples" in media:
                        continue
                    example = example_for(path, media_type, media)
                    if example is not None:
                        media["example"] = example
