"""One pipeline per request: the body parsed once, the gate and the engine run once, the report
serialised once; jobs dispatched only after their row is committed; a slow analysis handed to
a queued job without losing its result."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import get_engine, session_scope
from app.main import create_app
from app.models import Job
from tests.api.helpers import seed_config
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str, original: Any, calls: Counter[str]) -> None:
    """Replace ``name`` in every loaded app module that holds ``original`` by a counting wrapper."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return original(*args, **kwargs)

    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("app") and getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, counted)


def test_a_request_runs_without_cycle_collections_and_leaves_the_collector_on(client, monkeypatch) -> None:
    """The request's unit of work (parse, gate, engine, store, commit) allocates tens of
    thousands of objects and no cycles: the collector is off while it runs, on afterwards."""
    import gc

    from app.analyses import service

    seen: list[tuple[str, bool]] = []
    for name in ("prepare", "_finish"):
        original = getattr(service, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            seen.append((_name, gc.isenabled()))
            return _original(*args, **kwargs)

        monkeypatch.setattr(service, name, spy)
    assert gc.isenabled()
    response = client.post("/v1/analyses", json={"architecture": seed_config(3), "name": "no-gc"})
    assert response.status_code == 201, response.text[:500]
    assert seen == [("prepare", False), ("_finish", False)]
    assert gc.isenabled()


def test_a_request_parses_its_body_once(client, settings, monkeypatch) -> None:
    from app.analysis import analyze
    from app.ingest.jsonparse import parse_json_bytes
    from app.security.gate import gate_architecture

    calls: Counter[str] = Counter()
    for name, original in (("parse_json_bytes", parse_json_bytes), ("gate_architecture", gate_architecture),
                           ("analyze", analyze)):
        _count_calls(monkeypatch, name, original, calls)
    dumped: list[Any] = []
    real_dumps = orjson.dumps

    def dumps(value: Any, *args: Any, **kwargs: Any) -> bytes:
        dumped.append(value)
        return real_dumps(value, *args, **kwargs)

    import app.db

    monkeypatch.setattr(app.db.orjson, "dumps", dumps)

    response = client.post("/v1/analyses", json={"architecture": seed_config(3), "name": "once"})
    assert response.status_code == 201, response.text[:500]
    assert calls == {"parse_json_bytes": 1, "gate_architecture": 1, "analyze": 1}
    body = response.json()
    # The report was serialised once, and the database holds exactly those bytes.
    reports = [value for value in dumped if isinstance(value, dict) and "summary" in value]
    assert len(reports) == 1
    with session_scope(settings) as session:
        stored = session.execute(text("SELECT result FROM jobs WHERE id = :id"), {"id": body["id"]}).scalar_one()
    assert orjson.loads(stored) == body["report"]
    assert response.content.count(stored.encode() if isinstance(stored, str) else stored) == 1

    # The same model as the string model.to_json() returns: one more parse for that document.
    calls.clear()
    string_form = client.post("/v1/analyses", json={"architecture": orjson.dumps(seed_config(3)).decode()})
    assert string_form.status_code == 201
    assert calls["parse_json_bytes"] == 2 and calls["analyze"] == 1
    assert string_form.json()["architecture"]["sha256"] == body["architecture"]["sha256"]


def test_response_matches_the_response_model(client) -> None:
    """The pre-encoded body is what FastAPI would have produced from AnalysisOut."""
    from app.analyses.schemas import AnalysisOut

    created = client.post("/v1/analyses", json={"architecture": seed_config(1), "input_shape": [64, 64, 3]})
    assert created.status_code == 201
    for response in (created, client.get(created.headers["location"])):
        expected = AnalysisOut.model_validate(response.json()).model_dump_json().encode()
        assert response.content == expected


def test_jobs_are_dispatched_after_their_row_is_committed_and_a_failed_dispatch_is_no_error(tmp_path) -> None:
    settings = make_settings(tmp_path)
    seen: list[tuple[str, str | None]] = []

    def dispatch(job_id: str) -> None:
        with session_scope(settings) as other:  # another connection: sees committed rows only
            row = other.get(Job, job_id)
            seen.append((job_id, row.status if row is not None else None))
        raise ConnectionError("broker down")

    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.dispatch = dispatch
        response = client.post("/v1/analyses", json={"architecture": seed_config(2), "measure_gradients": True})
        assert response.status_code == 202, response.text[:500]
        body = response.json()
        assert seen == [(body["gradient_job_id"], "queued")]
        assert client.get(f"/v1/analyses/{body['id']}").json()["status"] == "running"


@pytest.mark.parametrize("window_s", [0.05, 0.0])
def test_a_slow_analysis_is_queued_and_its_late_result_kept(tmp_path, monkeypatch, window_s) -> None:
    """The engine outruns sync_analysis_timeout_s (0: no wait at all once it starts): 202 with
    a queued row; when the engine ends, its report lands on that row (no worker runs here)."""
    import app.analyses.service as service
    import app.pipeline as pipeline

    release = threading.Event()
    written = threading.Event()
    real_analyse, real_write = pipeline.analyse, service._write_late

    def slow_analyse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        release.wait(30)
        return real_analyse(*args, **kwargs)

    def write_late(*args: Any, **kwargs: Any) -> None:
        try:
            real_write(*args, **kwargs)  # its own unit of work: committed when it returns
        finally:
            written.set()

    monkeypatch.setattr(pipeline, "analyse", slow_analyse)
    monkeypatch.setattr(service, "_write_late", write_late)
    settings = make_settings(tmp_path, sync_analysis_timeout_s=window_s)
    queued: list[str] = []
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.dispatch = queued.append
        response = client.post("/v1/analyses", json={"architecture": seed_config(3)})
        assert response.status_code == 202, response.text[:500]
        body = response.json()
        assert body["status"] == "queued" and body["report"] is None
        assert queued == [body["id"]]
        release.set()
        assert written.wait(30)
        stored = client.get(f"/v1/analyses/{body['id']}").json()
        assert stored["status"] == "succeeded"
        assert stored["report"]["summary"]["total_params"] == 57_034


def test_the_window_opens_when_the_engine_starts(tmp_path, monkeypatch) -> None:
    """Preparing a body (parse and gate) takes longer than sync_analysis_timeout_s, the
    engine does not: the window opens when the engine starts, so the answer is the finished
    analysis (201), not a queued one."""
    import app.pipeline as pipeline

    real_prepare = pipeline.prepare_json_body
    prepared = threading.Event()

    def slow_prepare(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)  # three windows long
        try:
            return real_prepare(*args, **kwargs)
        finally:
            prepared.set()

    monkeypatch.setattr(pipeline, "prepare_json_body", slow_prepare)
    settings = make_settings(tmp_path, sync_analysis_timeout_s=0.5)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/v1/analyses", json={"architecture": seed_config(3)})
    assert prepared.is_set()
    assert response.status_code == 201, response.text[:500]
    assert response.json()["report"]["summary"]["total_params"] == 57_034


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # what uvicorn runs


@pytest.mark.anyio
async def test_no_connection_is_held_while_the_body_arrives(tmp_path) -> None:
    """A client sending its body slowly holds no database connection (API keys on: the key
    lookup happens first, in a unit of work of its own)."""
    import httpx

    from app.auth.service import create_key

    settings = make_settings(tmp_path, auth_mode="api_key", rate_limit_per_minute=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        with session_scope(settings) as session:
            key = create_key(session, "acme")
        pool = get_engine(settings).pool
        body = orjson.dumps({"architecture": seed_config(3)})
        half = threading.Event()
        checked: list[int] = []

        async def slow_body():  # type: ignore[no-untyped-def]
            yield body[: len(body) // 2]
            checked.append(pool.checkedout())  # type: ignore[attr-defined]
            half.set()
            yield body[len(body) // 2:]

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/v1/analyses", content=slow_body(), headers={
                "authorization": f"Bearer {key}", "content-type": "application/json"})
        assert response.status_code == 201, response.text[:500]
        assert half.is_set() and checked == [0]
        assert pool.checkedout() == 0  # type: ignore[attr-defined]


class _LaneProbe:
    """``pipeline.analyse`` that records when each analysis starts and ends (by its model's
    name); the first one waits for ``release``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import app.pipeline as pipeline

        self.release = threading.Event()
        self.started: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.order: list[str] = []
        real = pipeline.analyse

        def analyse(config: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
            name = config["config"]["name"]
            first = not self.order
            self.order.append(f"start {name}")
            self.started[name].set()
            if first:
                assert self.release.wait(30)
            try:
                return real(config, *args, **kwargs)
            finally:
                self.order.append(f"end {name}")

        monkeypatch.setattr(pipeline, "analyse", analyse)


def _named(name: str) -> dict[str, Any]:
    config = seed_config(3)
    config["config"]["name"] = name
    return config


def test_analysis_lanes_default_to_one_on_sqlite_only(tmp_path) -> None:
    """SQLite's writes take turns anyway: one analysis at a time per HTTP process. PostgreSQL:
    as many as the work threads (no lane). A setting wins over both."""
    assert make_settings(tmp_path).analysis_lanes == 1
    postgres = make_settings(tmp_path, "postgresql+psycopg://x@127.0.0.1/y", http_work_threads=6)
    assert postgres.analysis_lanes == 6
    assert make_settings(tmp_path, http_analysis_lanes=3).analysis_lanes == 3


@pytest.mark.anyio
async def test_analyses_take_turns_in_their_lane_and_uploads_go_past(tmp_path, monkeypatch) -> None:
    """On SQLite an HTTP process analyses one JSON body at a time: a second waits for the first
    on the event loop, holding no thread, and starts when the first has ended; an upload does
    not wait for the lane. Every request answers 201."""
    import httpx

    probe = _LaneProbe(monkeypatch)
    settings = make_settings(tmp_path, sync_analysis_timeout_s=60)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            first = asyncio.ensure_future(client.post("/v1/analyses", json={"architecture": _named("first")}))
            assert await anyio.to_thread.run_sync(probe.started["first"].wait, 30)
            second = asyncio.ensure_future(client.post("/v1/analyses", json={"architecture": _named("second")}))
            # The second stays out of the engine while the first holds the lane.
            assert not await anyio.to_thread.run_sync(probe.started["second"].wait, 0.5)
            upload = await asyncio.wait_for(client.post("/v1/analyses", files={
                "file": ("third.json", orjson.dumps(_named("third")), "application/json")}), 30)
            assert upload.status_code == 201, upload.text[:500]
            assert not probe.started["second"].is_set()
            probe.release.set()
            answers = await asyncio.wait_for(asyncio.gather(first, second), 30)
    assert [answer.status_code for answer in answers] == [201, 201], answers[1].text[:500]
    assert probe.order == ["start first", "start third", "end third", "end first", "start second",
                           "end second"]


@pytest.mark.anyio
async def test_a_slow_analysis_gives_up_its_lane_when_its_window_ends(tmp_path, monkeypatch) -> None:
    """The first analysis outruns its window (202, queued): its place in the lane is given back
    then, so the next analysis runs and answers 201 while the late one is still running."""
    import httpx

    import app.analyses.service as service

    probe = _LaneProbe(monkeypatch)
    written = threading.Event()
    real_write = service._write_late

    def write_late(*args: Any, **kwargs: Any) -> None:
        try:
            real_write(*args, **kwargs)
        finally:
            written.set()

    monkeypatch.setattr(service, "_write_late", write_late)
    # (a window long enough for the second, unblocked analysis to finish in it on a busy machine)
    settings = make_settings(tmp_path, sync_analysis_timeout_s=1.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.dispatch = lambda job_id: None  # no worker here: the late thread writes the result
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            slow = await asyncio.wait_for(client.post("/v1/analyses", json={"architecture": _named("slow")}), 30)
            assert slow.status_code == 202, slow.text[:500]
            fast = await asyncio.wait_for(client.post("/v1/analyses", json={"architecture": _named("fast")}), 30)
            assert fast.status_code == 201, fast.text[:500]
            assert probe.order == ["start slow", "start fast", "end fast"]
            probe.release.set()
            assert await anyio.to_thread.run_sync(written.wait, 30)
            stored = (await client.get(f"/v1/analyses/{slow.json()['id']}")).json()
    assert stored["status"] == "succeeded"


def test_sqlite_writers_take_turns_and_always_give_the_lock_back(tmp_path) -> None:
    """Threads writing at once all succeed; after commits, rollbacks and an invalidated
    connection the file lock is free for another process."""
    import fcntl
    import os

    from app import db
    from app.models import Tenant

    settings = make_settings(tmp_path)
    db.upgrade(settings)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for round_ in range(5):
                with session_scope(settings) as session:
                    session.add(Tenant(name=f"t{index}-{round_}"))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with pytest.raises(RuntimeError), session_scope(settings) as session:
        session.add(Tenant(name="rolled-back"))
        session.flush()
        raise RuntimeError("roll back")
    connection = get_engine(settings).connect()
    connection.execute(text("INSERT INTO tenants (id, name, created_at) VALUES ('x', 'x', '2024-01-01')"))
    connection.invalidate()
    connection.close()
    lock_path = str(settings.data_dir / "convlens.db.lock")
    descriptor = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
    finally:
        os.close(descriptor)
    with session_scope(settings) as session:
        assert session.scalar(text("SELECT count(*) FROM tenants WHERE name LIKE 't%'")) == 30


def test_the_dispatch_relay_hands_job_ids_and_health_to_http_processes(tmp_path) -> None:
    """An HTTP process of convlens serve sends job ids to the serving process's executor and
    reads its health; with the relay gone, sending is silent (the job stays queued)."""
    import queue

    from app.relay import DispatchRelay, RelayClient

    class Executor:
        def __init__(self) -> None:
            self.sent: queue.Queue[str] = queue.Queue()

        def dispatch(self, job_id: str) -> None:
            self.sent.put(job_id)

        def health(self) -> dict[str, Any]:
            return {"status": "ok", "executor": "local", "workers": 1, "alive": 1}

    executor = Executor()
    relay = DispatchRelay(tmp_path / "dispatch.sock", executor).start()
    client = RelayClient(relay.path)
    try:
        client.dispatch("job-1")
        client.dispatch("job-2")
        assert [executor.sent.get(timeout=10), executor.sent.get(timeout=10)] == ["job-1", "job-2"]
        assert client.health() == executor.health()
    finally:
        relay.stop()
    client.dispatch("job-3")  # no relay: no error, nothing sent
    assert executor.sent.empty()
    assert client.health()["status"] == "unknown"


def test_the_wal_is_checkpointed_off_the_request_path(client, settings) -> None:
    """Commits leave their pages in the WAL (no checkpoint before ~40 MB); one background
    round moves every frame into the database file."""
    from app.db import WalCheckpointer

    for index in range(3):
        response = client.post("/v1/analyses", json={"architecture": seed_config(3), "name": f"w{index}"})
        assert response.status_code == 201
    checkpointer = WalCheckpointer(settings)
    with get_engine(settings).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10000
    busy, frames, moved = checkpointer.checkpoint()
    assert busy == 0 and frames > 0 and moved == frames


def test_a_unicode_digit_in_input_shape_is_a_422_not_a_500(client) -> None:
    """Found by the schema fuzz: "¹" passes str.isdigit but not int()."""
    from tests.api.helpers import assert_problem, seed_bytes, upload

    for value in ("¹", "2²4,224,3"):
        response = upload(client, seed_bytes(3, "keras"), "m.keras", input_shape=value)
        assert_problem(response, 422)
    body = client.post("/v1/analyses", json={"architecture": seed_config(3), "input_shape": "¹,2,3"})
    assert_problem(body, 422)


def test_a_stored_rows_instance_needs_no_earlier_orm_use_in_its_process() -> None:
    """The store builds its rows' instances without a constructor (``db.loaded_instance``): in a
    fresh HTTP process, where nothing has configured the ORM's mappers yet, the first analysis
    must still be stored (it answered 500 before the mappers were configured there)."""
    script = (
        "from sqlalchemy.orm import Session\n"
        "from app.db import loaded_instance\n"
        "from app.models import Architecture\n"
        "from app.models.base import utcnow\n"
        "row = loaded_instance(Session(), Architecture, {'id': 'a', 'tenant_id': 't', 'sha256': 's', "
        "'format': 'json', 'name': None, 'byte_size': 1, 'config': {}, 'has_weights': False, "
        "'blob_path': None, 'created_at': utcnow()})\n"
        "print(row.id, row.byte_size)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["a", "1"]
