"""The FastAPI application factory.

Example::

    app = create_app(Settings(data_dir=Path("/tmp/convlens")))
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app import __version__
from app.api import problems
from app.api.contract import add_documented_models, one_body_type_per_operation, operation_id
from app.api.docs_ui import install_docs
from app.api.limits import BodySizeLimitMiddleware
from app.config import Settings, get_settings
from app.observability.metrics import MetricsMiddleware, metrics_router

log = logging.getLogger("convlens.api")

DESCRIPTION = """
convlens tells you how to interpret a convolutional network's architecture: every layer's
output shape, parameters, MACs/FLOPs and memory exactly as Keras counts them, receptive
fields per axis (size, effective stride, effective padding), gradient flow predicted from
the architecture and measured with TensorFlow, and findings in words.

Send a Keras model as JSON (`model.to_json()`) or upload a `.keras` / legacy `.h5` file.
Errors are RFC 9457 `application/problem+json` with a stable `code`.
"""


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


def _limit_for(settings: Settings):  # type: ignore[no-untyped-def]
    def limit(scope: dict[str, Any]) -> int:
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type in (b"multipart/form-data", b"application/octet-stream"):
            return settings.max_upload_bytes + 64 * 1024
        return settings.max_json_bytes

    return limit


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app import db

        if settings.auto_migrate:
            db.upgrade(settings)
        else:
            db.ensure_default_tenant(settings)
        app.state.analysis_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="analysis"
        )
        executor = _start_executor(settings)
        app.state.executor = executor
        from app.api.demo import seed_demo_data

        workers_run = settings.executor == "celery" or settings.local_workers > 0
        app.state.demo_ids = seed_demo_data(
            settings, app.state.analysis_pool, executor if workers_run else None
        )
        app.openapi_schema = None  # rebuilt with the demo ids as examples
        try:
            yield
        finally:
            if executor is not None:
                executor.stop()
            app.state.analysis_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="convlens",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,  # create_analysis, not create_analysis_v1_analyses_post
        docs_url=None,  # served from local assets by install_docs below, not from a CDN
        redoc_url=None,
        openapi_tags=[
            {"name": "analyses", "description": "Static analyses and measured gradient flow"},
            {"name": "architectures", "description": "Uploaded architectures (stored once per content)"},
            {"name": "health", "description": "Liveness and readiness"},
        ],
    )
    app.state.settings = settings
    app.state.executor = None
    app.state.demo_ids = {}
    if settings.rate_limit_per_minute > 0:
        from app.api.ratelimit import TenantRateLimiter

        app.state.rate_limiter = TenantRateLimiter(settings.rate_limit_per_minute)
    problems.install(app)
    app.add_middleware(BodySizeLimitMiddleware, limit_for=_limit_for(settings))
    app.add_middleware(MetricsMiddleware)

    from app.analyses.endpoints import router as analyses_router
    from app.api.health import router as health_router
    from app.architectures.endpoints import router as architectures_router

    app.include_router(health_router)
    app.include_router(analyses_router)
    app.include_router(architectures_router)
    app.include_router(metrics_router)
    # Other domains register their routers here.
    from app.reports.endpoints import router as reports_router

    app.include_router(reports_router)
    from app.training.endpoints import router as training_router

    app.include_router(training_router)

    install_docs(app)
    _install_problem_schema(app)
    return app


def _start_executor(settings: Settings) -> Any:
    """The job executor (local worker subprocesses or Celery), if the jobs package provides one."""
    try:
        from app.jobs import create_executor  # type: ignore[attr-defined]
    except ImportError:
        log.warning("no job executor available: queued jobs will wait")
        return None
    executor = create_executor(settings)
    executor.start()
    return executor


def _install_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema()
        from app.analyses.schemas import AnalysisCreate

        components.setdefault("AnalysisCreate", AnalysisCreate.model_json_schema())
        from app.training.schemas import TrainingRunCreate

        components.setdefault("TrainingRunCreate", TrainingRunCreate.model_json_schema())
        _document_problems(schema)
        from app.api.response_examples import add_response_examples

        add_response_examples(schema)
        from app.api.demo import apply_examples

        apply_examples(schema, getattr(app.state, "demo_ids", {}))
        one_body_type_per_operation(schema)
        add_documented_models(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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


def _document_problems(schema: dict[str, Any]) -> None:
    """Every operation documents its errors as application/problem+json (RFC 9457)."""
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
