"""Fair sharing: what a tenant holds while it waits on its client is bounded, and holds no
database connection.

- A body that arrives too slowly (one byte every few seconds) is answered 408
  ``body_timeout`` after the grace period, its half-received upload deleted; while such
  uploads are held, no database connection is checked out on their behalf (real uvicorn,
  raw sockets; SQLite and PostgreSQL).
- Per-tenant caps: open event streams and uploads in flight (429 ``tenant_limit`` before
  anything is read; the slot is given back however the request ends) and queued gradient
  measurements (another tenant is not affected).
- A client that leaves mid-body is not an error (no 500, no traceback).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.api.fairness import tenant_slots
from app.auth.service import create_key
from app.config import Settings
from app.db import get_engine, session_scope
from app.main import create_app
from app.observability.context import request_id_var
from tests.api.helpers import assert_problem, seed_bytes, seed_config
from tests.conftest import make_settings
from tests.jobs.helpers import tiny_config

BOUNDARY = "convlens-slow-boundary"


def _slots(client: Any) -> Any:
    class _Request:  # what tenant_slots reads of a request
        app = client.app

    return tenant_slots(_Request())  # type: ignore[arg-type]


@pytest.fixture
def served(any_settings: Settings) -> Iterator[tuple[Settings, int]]:
    """The application on a real uvicorn in this process (slow clients need real sockets)."""
    import uvicorn

    from tests.jobs.conftest import free_port

    settings = any_settings.model_copy(update={
        "body_read_grace_s": 1.0, "body_min_bytes_per_s": 1000, "max_uploads_per_tenant": 20,
    })
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield settings, port
    finally:
        server.should_exit = True
        thread.join(30)


def _slow_upload(port: int) -> socket.socket:
    """Headers, the start of a file part, and then nothing (a client that stalls)."""
    start = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.keras\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\nPK").encode()
    head = (f"POST /v1/analyses/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 100000\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(head + start)
    return sock


def _answer(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
            break
    return b"".join(chunks)


def test_slow_uploads_time_out_and_hold_no_database_connection(served: tuple[Settings, int]) -> None:
    import httpx

    settings, port = served
    base = f"http://127.0.0.1:{port}"
    analysis = httpx.post(f"{base}/v1/analyses", json={"architecture": seed_config(1)}, timeout=60).json()

    held: dict[int, str] = {}  # connections checked out on behalf of a request

    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if (request_id := request_id_var.get()) is not None:
            held[id(dbapi_connection)] = request_id

    def checkin(dbapi_connection: Any, _record: Any) -> None:
        held.pop(id(dbapi_connection), None)

    engine = get_engine(settings)
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        started = time.monotonic()
        sockets = [_slow_upload(port) for _ in range(12)]
        # every upload is being received now (its part file exists), none holds a connection
        deadline = time.monotonic() + 30
        while len(list((settings.data_dir / "uploads").glob("*.part"))) < 12:
            assert time.monotonic() < deadline, "the uploads did not start"
            time.sleep(0.01)
        assert held == {}
        got = httpx.get(f"{base}/v1/analyses/{analysis['id']}", timeout=30)
        assert got.status_code == 200 and held == {}
        answers = [_answer(sock) for sock in sockets]
        elapsed = time.monotonic() - started
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"code": "body_timeout"' in answer
    assert elapsed >= settings.body_read_grace_s
    assert list((settings.data_dir / "uploads").glob("*")) == []  # nothing half-received is kept
    for sock in sockets:
        sock.close()


def test_uploads_in_flight_are_capped_per_tenant(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, max_uploads_per_tenant=2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        slots = _slots(client)
        slots.acquire("default", "uploads")
        slots.acquire("default", "uploads")  # two slow uploads of this tenant are being received
        files = {"file": ("m.keras", seed_bytes(1, "keras"))}
        refused = client.post("/v1/analyses/upload", files=files)
        problem = assert_problem(refused, 429, "tenant_limit")
        assert problem["limit"] == "uploads" and problem["maximum"] == 2
        assert refused.headers["retry-after"] == "5"
        slots.release("default", "uploads")
        assert client.post("/v1/analyses/upload", files=files).status_code == 201
        assert client.post("/v1/analyses/upload", files={"file": ("m.keras", b"not a model")}).status_code == 415
        assert slots.held("default", "uploads") == 1  # given back after a success and a refusal
        assert client.post("/v1/analyses", json={"architecture": seed_config(1)}).status_code == 201  # JSON: no slot


def test_open_event_streams_are_capped_per_tenant(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, max_open_streams_per_tenant=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        analysis = client.post("/v1/analyses", json={"architecture": tiny_config()}).json()
        run = client.post("/v1/training-runs", json={"analysis_id": analysis["id"], "steps": 2}).json()
        client.post(f"/v1/training-runs/{run['id']}/cancel")  # queued, no worker: cancelled at once
        slots = _slots(client)
        slots.acquire("default", "open_streams")  # a stream of this tenant is open
        problem = assert_problem(client.get(f"/v1/training-runs/{run['id']}/events"), 429, "tenant_limit")
        assert problem["limit"] == "open_streams"
        slots.release("default", "open_streams")
        stream = client.get(f"/v1/training-runs/{run['id']}/events")
        assert stream.status_code == 200 and "event: end" in stream.text
        assert slots.held("default", "open_streams") == 0  # given back when the stream ended


def test_queued_gradient_measurements_are_capped_per_tenant(any_settings: Settings) -> None:
    settings = any_settings.model_copy(update={"auth_mode": "api_key", "max_queued_gradients_per_tenant": 2})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        with session_scope(settings) as session:
            a = {"Authorization": f"Bearer {create_key(session, 'a')}"}
            b = {"Authorization": f"Bearer {create_key(session, 'b')}"}
        analyses = [client.post("/v1/analyses", json={"architecture": tiny_config(), "name": str(i)},
                                headers=a).json()["id"] for i in range(3)]
        assert [client.post(f"/v1/analyses/{i}/gradients", headers=a).status_code for i in analyses[:2]] == [202] * 2
        problem = assert_problem(client.post(f"/v1/analyses/{analyses[2]}/gradients", headers=a), 429, "tenant_limit")
        assert problem["limit"] == "queued_gradients"
        # an effective-field measurement counts against the same cap (both allocate in TensorFlow)
        problem = assert_problem(client.post(f"/v1/analyses/{analyses[2]}/effective-field", headers=a), 429,
                                 "tenant_limit")
        assert problem["limit"] == "queued_gradients" and "effective field" in problem["detail"]
        refused = client.post("/v1/analyses", json={"architecture": tiny_config(), "measure_gradients": True},
                              headers=a)
        assert_problem(refused, 429, "tenant_limit")
        other = client.post("/v1/analyses", json={"architecture": tiny_config(), "measure_gradients": True},
                            headers=b)
        assert other.status_code == 202, other.text  # the other tenant is not affected


def test_a_client_that_leaves_mid_body_is_not_an_error(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    messages = iter([
        {"type": "http.request", "body": f"--{BOUNDARY}\r\n".encode(), "more_body": True},
        {"type": "http.disconnect"},
    ])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/analyses/upload", "raw_path": b"/v1/analyses/upload",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                    (b"content-length", b"100000")],
    }
    with caplog.at_level(logging.INFO):
        asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert any("client disconnected" in r.getMessage() for r in caplog.records)
