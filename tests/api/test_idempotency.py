"""Idempotency-Key: a retried POST answers what the first one answered and creates nothing,
on SQLite and PostgreSQL, for every POST that creates work (analysis from JSON, upload,
gradients, training run); the same key with another request is refused; keys are per
tenant and expire; two copies sent at once make one job."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.api.deps import RequestScope
from app.config import Settings
from app.db import session_scope
from app.idempotency.http import run_once
from app.idempotency.service import Answer, IdempotencyClaim, guarded
from app.models import DEFAULT_TENANT, IdempotencyKey, Job, Tenant
from app.models.base import utcnow
from tests.api.helpers import assert_problem, seed_bytes, seed_config
from tests.jobs.helpers import tiny_config


def _jobs(settings: Settings, kind: str | None = None) -> int:
    with session_scope(settings) as session:
        query = select(func.count()).select_from(Job)
        if kind is not None:
            query = query.where(Job.kind == kind)
        return int(session.scalar(query) or 0)


def _same_answer(first: Any, second: Any) -> None:
    assert second.status_code == first.status_code
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


def test_a_retried_post_answers_the_first_answer_and_creates_nothing(any_client: Any, any_settings: Settings) -> None:
    body = {"architecture": seed_config(1), "name": "first"}
    first = any_client.post("/v1/analyses", json=body, headers={"Idempotency-Key": "k-analysis"})
    assert first.status_code == 201, first.text
    jobs = _jobs(any_settings)
    second = any_client.post("/v1/analyses", json=body, headers={"Idempotency-Key": "k-analysis"})
    _same_answer(first, second)
    assert _jobs(any_settings) == jobs == 1

    # without a key, or with another key, the same body is new work
    assert any_client.post("/v1/analyses", json=body).status_code == 201
    assert any_client.post("/v1/analyses", json=body, headers={"Idempotency-Key": "k-2"}).status_code == 201
    assert _jobs(any_settings) == 3

    # the same key with another request is refused, and creates nothing
    other = any_client.post("/v1/analyses", json={**body, "name": "second"},
                            headers={"Idempotency-Key": "k-analysis"})
    assert_problem(other, 422, "idempotency_key_reused")
    assert _jobs(any_settings) == 3


def test_uploads_gradients_and_training_runs_are_created_once_per_key(any_client: Any,
                                                                      any_settings: Settings) -> None:
    files = {"file": ("example1.keras", seed_bytes(1, "keras"))}
    first = any_client.post("/v1/analyses/upload", files=files, data={"name": "up"},
                            headers={"Idempotency-Key": "k-upload"})
    assert first.status_code == 201, first.text
    second = any_client.post("/v1/analyses/upload", files=files, data={"name": "up"},
                             headers={"Idempotency-Key": "k-upload"})
    _same_answer(first, second)
    assert _jobs(any_settings, "analysis") == 1
    assert list((any_settings.data_dir / "uploads").glob("*")) == []  # the retry's upload is gone

    analysis_id = first.json()["id"]
    gradients = [any_client.post(f"/v1/analyses/{analysis_id}/gradients",
                                 headers={"Idempotency-Key": "k-gradients"}) for _ in range(3)]
    assert gradients[0].status_code == 202, gradients[0].text
    for retry in gradients[1:]:
        _same_answer(gradients[0], retry)
    assert _jobs(any_settings, "gradients") == 1

    tiny = any_client.post("/v1/analyses", json={"architecture": tiny_config()})
    run = {"analysis_id": tiny.json()["id"], "steps": 5, "batch_size": 4}
    runs = [any_client.post("/v1/training-runs", json=run, headers={"Idempotency-Key": "k-run"})
            for _ in range(2)]
    assert runs[0].status_code == 202, runs[0].text
    _same_answer(*runs)
    assert _jobs(any_settings, "training") == 1


def test_a_malformed_key_is_a_400(client: Any, settings: Settings) -> None:
    for key in (b"", b"x" * 256, b"spaces inside", "caf\u00e9".encode()):
        response = client.post("/v1/analyses", json={"architecture": seed_config(1)},
                               headers={"Idempotency-Key": key})
        assert_problem(response, 400, "invalid_idempotency_key")
    assert _jobs(settings) == 0


def test_keys_belong_to_their_tenant_and_expire(any_settings: Settings) -> None:
    from app import db

    db.upgrade(any_settings)
    with session_scope(any_settings) as session:
        session.add(Tenant(id="other", name="other"))
    answer = Answer(202, b'{"id":"1"}', "/v1/analyses/1")
    claims = {tenant: IdempotencyClaim(tenant, "same-key", "f" * 64, any_settings.idempotency_key_ttl_s)
              for tenant in (DEFAULT_TENANT, "other")}
    with session_scope(any_settings) as session:
        claims[DEFAULT_TENANT].store(session, answer)
    with session_scope(any_settings) as session:
        assert claims[DEFAULT_TENANT].stored(session) == Answer(202, answer.body, answer.location, replayed=True)
        assert claims["other"].stored(session) is None  # another tenant's key of the same name
        session.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    with session_scope(any_settings) as session:
        assert claims[DEFAULT_TENANT].stored(session) is None  # expired: new work may use it
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_two_copies_sent_at_once_make_one_job(any_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second copy checks for the key before the first commits (the test holds the first
    transaction open until the second has passed its check), then fails on the key's unique
    index when the first commits: its job is rolled back and it answers the first answer."""
    from app import db
    from app.idempotency import http
    from tests.jobs.helpers import add_architecture

    replays: list[str] = []
    original_replay = http.replay
    monkeypatch.setattr(http, "replay", lambda session, claim: replays.append(claim.key)
                        or original_replay(session, claim))
    db.upgrade(any_settings)
    architecture_id = add_architecture(any_settings, tiny_config())
    claim = IdempotencyClaim(DEFAULT_TENANT, "twin", "f" * 64, any_settings.idempotency_key_ttl_s)
    second_checked = threading.Event()

    def create(session: Any, name: str, checked: threading.Event | None = None) -> str:
        if checked is not None:
            checked.set()  # past its look-up of the key: the first has not committed yet
        job = Job(tenant_id=DEFAULT_TENANT, kind="gradients", name=name, architecture_id=architecture_id)
        session.add(job)
        session.flush()
        return job.id

    def describe(job_id: str) -> Answer:
        return Answer(202, f'{{"id":"{job_id}"}}'.encode(), f"/v1/analyses/{job_id}")

    outcome: dict[str, Any] = {}

    def second() -> None:
        outcome["second"] = asyncio.run(run_once(RequestScope(any_settings, None), claim, create, "second",
                                                 checked=second_checked, describe=describe))

    with session_scope(any_settings) as session:
        first_id = guarded(create, claim, describe)(session, "first")
        thread = threading.Thread(target=second)
        thread.start()
        assert second_checked.wait(30)
    thread.join(60)
    assert not thread.is_alive()
    assert replays == ["twin"]  # the second failed on the key's unique index, then read the answer
    assert outcome["second"] == Answer(202, describe(first_id).body, describe(first_id).location, replayed=True)
    with session_scope(any_settings) as session:
        assert session.scalars(select(Job.name).where(Job.kind == "gradients")).all() == ["first"]
