"""The HTTP side of ``POST /v1/analyses`` kept cheap, with the same answers, metrics and limits
as before: one dependency resolved per request, one asyncio timeout per body receive, metric
children looked up once."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Request
from prometheus_client import REGISTRY

from app.analyses.endpoints import router as analyses_router
from app.api import deps
from app.api.limits import BodySizeLimitMiddleware
from app.config import Settings
from app.observability import metrics
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
    assert caller.scope.units is app.state.unit_threads and caller.scope.units.size == settings.http_work_threads
    settings_, scope, tenant_id = caller
    assert (settings_, tenant_id) == (settings, "default") and scope is caller.scope


def test_metric_children_are_the_registered_ones() -> None:
    assert metrics._latency("POST", "/test/children", 201) is metrics.HTTP_LATENCY.labels(
        "POST", "/test/children", "201")
    assert metrics._in_progress("PATCH") is metrics.HTTP_IN_PROGRESS.labels("PATCH")
    labels = {"method": "POST", "route": "/test/children", "status": "201"}
    before = REGISTRY.get_sample_value("convlens_http_request_duration_seconds_count", labels) or 0.0
    metrics._latency("POST", "/test/children", 201).observe(0.001)
    assert REGISTRY.get_sample_value("convlens_http_request_duration_seconds_count", labels) == before + 1


def test_a_stalled_body_is_refused_with_408() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass

    settings = Settings(body_read_grace_s=0.05, body_idle_timeout_s=0.05)
    middleware = BodySizeLimitMiddleware(app, limit_for=lambda scope: 1000, settings=settings)
    sent: list[dict[str, Any]] = []
    pieces = [{"type": "http.request", "body": b"{", "more_body": True}]

    async def receive() -> dict[str, Any]:
        if pieces:
            return pieces.pop()
        await asyncio.sleep(5)  # the client stalls
        raise AssertionError("the body's deadline did not end this wait")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        await asyncio.wait_for(middleware({"type": "http", "headers": []}, receive, send), 2)

    asyncio.run(main())
    assert sent[0]["status"] == 408
    problem = json.loads(sent[1]["body"])
    assert problem["code"] == "body_timeout" and problem["received_bytes"] == 1


def test_unit_threads_run_at_most_their_size_at_once_in_order_with_the_callers_context() -> None:
    """Units beyond the pool's size wait their turn, in the order they came, holding no thread;
    each runs with the context variables of the request that sent it (the request id)."""
    import threading

    from app.api.units import UnitThreads
    from app.observability.context import request_id_var

    units = UnitThreads(2)
    release = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def unit(label: str) -> tuple[str, str | None, str]:
        with lock:
            started.append(label)
        release.wait(30)
        return label, request_id_var.get(), threading.current_thread().name

    async def send(label: str) -> tuple[str, str | None, str]:
        request_id_var.set(f"req-{label}")
        return await units.run(lambda: unit(label))

    async def main() -> list[tuple[str, str | None, str]]:
        tasks = [asyncio.ensure_future(send(label)) for label in "abcde"]
        while len(started) < 2:  # the first two run; the other three wait in the queue
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert sorted(started) == ["a", "b"]
        release.set()
        return list(await asyncio.gather(*tasks))

    try:
        results = asyncio.run(main())
    finally:
        units.shutdown()
    assert [(label, rid) for label, rid, _ in results] == [(x, f"req-{x}") for x in "abcde"]
    assert started[2:] == ["c", "d", "e"]
    assert {thread for _, _, thread in results} <= {"convlens-unit_0", "convlens-unit_1"}


def test_a_cancelled_caller_drops_a_waiting_unit_and_waits_for_a_running_one() -> None:
    """As anyio's threads did: a unit still in the queue never runs once its caller is
    cancelled; a running one ends (its commit) before the cancellation reaches the caller."""
    import threading

    from app.api.units import UnitThreads

    units = UnitThreads(1)
    entered, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def running() -> str:
        entered.set()
        release.wait(30)
        ran.append("running")
        return "running"

    def waiting() -> str:
        ran.append("waiting")
        return "waiting"

    async def main() -> None:
        first = asyncio.ensure_future(units.run(running))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(units.run(waiting))
        await asyncio.sleep(0)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        first.cancel()
        await asyncio.sleep(0.01)
        assert not first.done()  # it waits for the running unit
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert ran == ["running"]

    try:
        asyncio.run(main())
    finally:
        units.shutdown()
    assert ran == ["running"]
