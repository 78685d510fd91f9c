"""The composition root: the FastAPI application with its routers, middleware and start-up.

Nothing imports this module but the entry points (``convlens serve``, uvicorn, tests): the
domains sit below it and the toolkit (``app.api``) below them.

Example::

    app = create_app(Settings(data_dir=Path("/tmp/convlens")))   # migrations, workers, demo data
    uvicorn --factory app.main:create_app                         # the same, from the environment
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app import __version__, db
from app.analyses.effective_field import EffectiveFieldCreate
from app.analyses.endpoints import router as analyses_router
from app.api import problems
from app.api.contract import add_documented_models, one_body_type_per_operation, operation_id
from app.api.docs import document_problems
from app.api.docs_ui import install_docs
from app.api.health import router as health_router
from app.api.limits import BodySizeLimitMiddleware, body_limit_for
from app.api.response_examples import add_response_examples
from app.api.units import shutdown_threads
from app.architectures.endpoints import router as architectures_router
from app.config import Settings, get_settings
from app.demo import apply_examples, demo_ids, seed_demo_data
from app.gcpause import freeze_long_lived
from app.observability.metrics import MetricsMiddleware, metrics_router
from app.pipeline import AnalysisCreate
from app.reports.endpoints import router as reports_router
from app.training.endpoints import router as training_router
from app.training.schemas import TrainingRunCreate

log = logging.getLogger("convlens.api")

DESCRIPTION = """
convlens tells you how to interpret a convolutional network's architecture: every layer's
output shape, parameters, MACs/FLOPs and memory exactly as Keras counts them, receptive
fields per axis (size, effective stride, effective padding), gradient flow predicted from
the architecture and measured with TensorFlow, and findings in words.

Send a Keras model as JSON (`model.to_json()`) or upload a `.keras` / legacy `.h5` file.
Errors are RFC 9457 `application/problem+json` with a stable `code`.
"""

#: Environment variable naming the socket of ``convlens serve``'s dispatch relay.
DISPATCH_SOCKET_ENV = "CONVLENS_DISPATCH_SOCKET"


def create_app(settings: Settings | None = None, *, standalone: bool = True,
               executor: Any = None) -> FastAPI:
    """The application.

    ``standalone`` (the default, and what tests use): its start-up migrates the database,
    starts the job executor (local workers and the reconciler) and creates the demo data.
    Otherwise it is an HTTP process of ``convlens serve``, which did all that once before
    starting it; jobs are then handed to ``executor`` (the executor itself, or a
    :class:`app.relay.RelayClient` to it), whose health ``/readyz`` reports.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = None
        checkpointer = db.WalCheckpointer(settings)
        if standalone:
            if settings.auto_migrate:
                db.upgrade(settings)
            else:
                db.ensure_default_tenant(settings)
            started = _start_executor(settings)
            checkpointer.start()
            app.state.dispatch = started.dispatch
            app.state.executor = started
            workers_run = settings.executor == "celery" or settings.local_workers > 0
            app.state.demo_ids = seed_demo_data(settings, app.state.dispatch if workers_run else None)
        else:
            app.state.demo_ids = demo_ids(settings)
        app.openapi_schema = None  # rebuilt with the demo ids as examples
        try:
            yield
        finally:
            shutdown_threads(app.state)
            checkpointer.stop()
            if started is not None:
                started.stop()

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
    app.state.executor = executor
    app.state.dispatch = executor.dispatch if executor is not None else None
    app.state.demo_ids = {}
    if settings.rate_limit_per_minute > 0 and settings.auth_mode != "none":
        # tenant quotas; the embedded default (one local user, no keys) is not rate-limited:
        # a platform batch-analysing a model zoo from this machine must not meet 429s
        from app.api.ratelimit import TenantRateLimiter

        app.state.rate_limiter = TenantRateLimiter(settings.rate_limit_per_minute)
    problems.install(app)
    app.add_middleware(BodySizeLimitMiddleware, limit_for=body_limit_for(settings), settings=settings)
    app.add_middleware(MetricsMiddleware)

    app.include_router(health_router)
    app.include_router(analyses_router)
    app.include_router(architectures_router)
    app.include_router(metrics_router)
    app.include_router(reports_router)
    app.include_router(training_router)

    install_docs(app)
    _install_openapi(app)
    return app


def create_worker_app() -> FastAPI:
    """One HTTP process of ``convlens serve`` (uvicorn factory ``app.main:create_worker_app``):
    settings from the environment, jobs sent to the serve process's dispatch relay."""
    from app.observability import configure_logging
    from app.relay import RelayClient

    settings = get_settings()
    configure_logging(settings)
    socket_path = os.environ.get(DISPATCH_SOCKET_ENV)
    app = create_app(settings, standalone=False, executor=RelayClient(socket_path) if socket_path else None)
    freeze_long_lived()
    return app


def _start_executor(settings: Settings) -> Any:
    """The job executor (local worker subprocesses or Celery), started."""
    from app.jobs import create_executor

    executor = create_executor(settings)
    executor.start()
    return executor


def _install_openapi(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("AnalysisCreate", AnalysisCreate.model_json_schema())
        components.setdefault("TrainingRunCreate", TrainingRunCreate.model_json_schema())
        components.setdefault("EffectiveFieldCreate", EffectiveFieldCreate.model_json_schema())
        document_problems(schema)
        add_response_examples(schema)
        apply_examples(schema, getattr(app.state, "demo_ids", {}))
        one_body_type_per_operation(schema)
        add_documented_models(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
