"""Demo records for the embedded service, so that every example on the docs page works
when tried: the seed's three models analysed under fixed ids, a disposable analysis for the
DELETE examples, and (when workers run) a short training run.

Created idempotently at start-up, only without API keys (auth_mode=none) and only when
``settings.demo_data`` is on.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from typing import Any

from sqlalchemy import select

from app.api.docs import seed_config
from app.config import Settings
from app.db import session_scope
from app.models import DEFAULT_TENANT, Job

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


def _analyse(settings: Settings, pool: concurrent.futures.Executor, analysis_id: str,
             config: dict[str, Any], name: str) -> None:
    from app.analyses import service
    from app.ingest import ingest_config

    validated = service.validate_ingested(ingest_config(config, settings), settings, None)
    with session_scope(settings) as session:
        service.create(session, settings, pool, tenant_id=DEFAULT_TENANT, architecture=validated,
                       input_shape=None, name=name, measure_gradients=False, analysis_id=analysis_id)


def seed_demo_data(settings: Settings, pool: concurrent.futures.Executor, executor: Any) -> dict[str, str]:
    """Create the demo records that are missing; returns the ids the docs examples use."""
    if not settings.demo_data or settings.auth_mode != "none":
        return {}
    wanted = {**{k: (v, None) for k, v in DEMO_ANALYSES.items()},
              DISPOSABLE_ANALYSIS: ("example1", "example1_disposable")}
    with session_scope(settings) as session:
        present = set(session.scalars(select(Job.id).where(Job.id.in_(list(wanted)))))
    for analysis_id, (example, rename) in wanted.items():
        if analysis_id not in present:
            try:
                _analyse(settings, pool, analysis_id, _config(example, rename), rename or example)
            except Exception:  # noqa: BLE001 - a demo must never stop the service
                log.exception("could not create the demo analysis %s", analysis_id)
    ids: dict[str, str] = {}
    with session_scope(settings) as session:
        rows = {row.id: row for row in session.scalars(select(Job).where(Job.id.in_(list(wanted))))}
        if "demo-example3" in rows:
            ids["analysis_id"] = "demo-example3"
            ids["architecture_id"] = rows["demo-example3"].architecture_id or ""
        if DISPOSABLE_ANALYSIS in rows:
            ids["disposable_analysis_id"] = DISPOSABLE_ANALYSIS
            ids["disposable_architecture_id"] = rows[DISPOSABLE_ANALYSIS].architecture_id or ""
        run = session.scalar(select(Job).where(Job.kind == "training", Job.name == DEMO_RUN_NAME))
    if run is None and executor is not None and "demo-example2" in DEMO_ANALYSES:
        run = _start_demo_run(settings, executor)
    if run is not None:
        ids["run_id"] = run.id
    return ids


def _start_demo_run(settings: Settings, executor: Any) -> Job | None:
    try:
        from app.training import service as training
        from app.training.schemas import TrainingRunCreate

        with session_scope(settings) as session:
            run = training.create(
                session, settings, tenant_id=DEFAULT_TENANT,
                request=TrainingRunCreate(analysis_id="demo-example2", steps=30, batch_size=16,
                                          overfit_steps=20, probe_every=10),
            )
            run.name = DEMO_RUN_NAME
        executor.dispatch(run.id)
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
        from app.training.schemas import TrainingRunCreate

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
