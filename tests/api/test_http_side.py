"""The HTTP side of ``POST /v1/analyses`` kept cheap, with the same answers, metrics and limits
as before: one dependency resolved per request."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Request

from app.analyses.endpoints import router as analyses_router
from app.api import deps
from tests.conftest import make_settings


def _route(name: str) -> Any:
    return next(route for route in analyses_router.routes if getattr(route, "name", None) == name)


@pytest.mark.parametrize("name", ["create_analysis", "upload_analysis"])
def test_creating_an_analysis_resolves_one_dependency(name: str) -> None:
    dependant = _route(name).dependant
    assert [sub.call for sub in dependant.dependencies] == [deps.get_caller]
    assert [param.alias for param in dependant.header_params] == ["Idempotency-Key"]


def test_the_caller_is_what_the_three_dependencies_give(tmp_path: Any) -> None:
    settings = make_settings(tmp_path)
    app = SimpleNamespace(state=SimpleNamespace(settings=settings, dispatch=None))
    request = Request({"type": "http", "app": app, "headers": [], "state": {}})
    caller = asyncio.run(deps.get_caller(request))
    assert caller.settings is settings and caller.tenant_id == "default"
    assert isinstance(caller.scope, deps.RequestScope) and caller.scope.settings is settings
    assert caller.scope.limiter is app.state.work_limiter
    settings_, scope, tenant_id = caller
    assert (settings_, tenant_id) == (settings, "default") and scope is caller.scope
