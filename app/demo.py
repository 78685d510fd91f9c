"""Demo records for the embedded service, so that every example on the docs page works
when tried: the seed's three models analysed under fixed ids, a disposable analysis for the
DELETE examples, and (when workers run) a short training run.

Created idempotently at start-up (once, before the HTTP processes start), only without API
keys (auth_mode=none) and only when ``settings.demo_data`` is on; the analyses go through the
same pipeline as a request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from app import pipeline
from app.analyses import repository as analyses
from app.analyses import service as analyses_service
from app.api.docs import seed_config
from app.config import Settings
from app.db import Dispatch, session_scope
from app.models import DEFAULT_TENANT, Job
from app.training import repository as training_runs
from app.training import service as training
from app.training.schemas import TrainingRunCreate

log = logging.getLogger("convlens.demo")

DEMO_ANALYSES = {
    "demo-example1": "example1",
    "demo-example2": "example2",
    "demo-example3": "example3",
}
DISPOSABLE_ANALYSIS = "demo-disposable"
DEMO_RUN_NAME = "demo-training-example2"


def _config(example: str, rename: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(json.dumps(seed_config(example)))
    if rename:
        config["config"]["name"] = rename
    return config


def _analyse(settings: Settings, analysis_id: str, config: dict[str, Any], name: str) -> None:
    request = pipeline.AnalysisRequest(architecture=pipeline.prepare_config(config, settings),
                                       input_shape=None, name=name, measure_gradients=False)
    with session_scope(settings) as session:
        analyses_service.create(session, request, settings=settings, tenant_id=DEFAULT_TENANT,
                                analysis_id=analysis_id)


def _wanted() -> dict[str, tuple[str, str | None]]:
    return {**{k: (v, None) for k, v in DEMO_ANALYSES.items()},
            DISPOSABLE_ANALYSIS: ("example1", "example1_disposable")}


def seed_demo_data(settings: Settings, dispatch: Dispatch | None) -> dict[str, str]:
    """Create the demo records that are missing; returns the ids the docs examples use.

    ``dispatch`` sends the demo training run to a worker; without workers there is none.
    """
    if not settings.demo_data or settings.auth_mode != "none":
        return {}
    wanted = _wanted()
    with session_scope(settings) as session:
        present = {row.id for row in analyses.with_ids(session, DEFAULT_TENANT, list(wanted))}
    for analysis_id, (example, rename) in wanted.items():
        if analysis_id not in present:
            try:
                _analyse(settings, analysis_id, _config(example, rename), rename or example)
            except Exception:  # noqa: BLE001 - a demo must never stop the service
                log.exception("could not create the demo analysis %s", analysis_id)
    ids = demo_ids(settings)
    if "run_id" not in ids and dispatch is not None and "demo-example2" in DEMO_ANALYSES:
        run = _start_demo_run(settings, dispatch)
        if run is not None:
            ids["run_id"] = run.id
    return ids


def demo_ids(settings: Settings) -> dict[str, str]:
    """The ids of the demo records that exist (read only: every HTTP process asks)."""
    if not settings.demo_data or settings.auth_mode != "none":
        return {}
    ids: dict[str, str] = {}
    with session_scope(settings) as session:
        rows = {row.id: row for row in analyses.with_ids(session, DEFAULT_TENANT, list(_wanted()))}
        if "demo-example3" in rows:
            ids["analysis_id"] = "demo-example3"
            ids["architecture_id"] = rows["demo-example3"].architecture_id or ""
        if DISPOSABLE_ANALYSIS in rows:
            ids["disposable_analysis_id"] = DISPOSABLE_ANALYSIS
            ids["disposable_architecture_id"] = rows[DISPOSABLE_ANALYSIS].architecture_id or ""
        run = training_runs.named(session, DEFAULT_TENANT, DEMO_RUN_NAME)
        if run is not None:
            ids["run_id"] = run.id
    return ids


def _start_demo_run(settings: Settings, dispatch: Dispatch) -> Job | None:
    try:
        with session_scope(settings, dispatch) as session:
            run = training.create(
                session, settings, tenant_id=DEFAULT_TENANT,
                request=TrainingRunCreate(analysis_id="demo-example2", steps=30, batch_size=16,
                                          overfit_steps=20, probe_every=10),
            )
            run.name = DEMO_RUN_NAME
        return run
    except Exception:  # noqa: BLE001
        log.exception("could not start the demo training run")
        return None


def apply_examples(schema: dict[str, Any], ids: dict[str, str]) -> None:
    """Put the demo ids into the path parameters' examples on the docs page."""
    if not ids:
        return
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            disposable = method == "delete"
            for parameter in operation.get("parameters", []):
                name = parameter.get("name")
                value: str | None = None
                if name == "analysis_id":
                    if disposable:
                        value = ids.get("disposable_analysis_id")
                    elif path.endswith("/compare/{other_id}"):
                        value = "demo-example1"
                    else:
                        value = ids.get("analysis_id")
                elif name == "other_id":
                    value = "demo-example2"
                elif name == "architecture_id":
                    value = ids.get("disposable_architecture_id" if disposable else "architecture_id")
                elif name == "run_id":
                    value = ids.get("run_id")
                if value:
                    parameter["example"] = value
                    parameter.setdefault("schema", {})["example"] = value
    operation = schema["paths"].get("/v1/training-runs", {}).get("post")
    if operation is not None and "requestBody" not in operation:
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("TrainingRunCreate", TrainingRunCreate.model_json_schema())
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/TrainingRunCreate"}},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {
                        "dataset_file": {"type": "string", "format": "binary",
                                         "description": ".npz with arrays x and y"}}},
                },
            },
        }
    body = (operation or {}).get("requestBody", {})
    content = body.get("content", {}).get("application/json")
    if content is not None and "analysis_id" in ids:
        content["examples"] = {
            "seed_example3": {
                "summary": "50 steps of the seed's Example 3 on synthetic data",
                "value": {"analysis_id": ids["analysis_id"], "steps": 50, "batch_size": 16,
                          "input_shape": [32, 32, 3]},
            }
        }
