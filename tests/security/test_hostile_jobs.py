"""The worker path as the jobs run it: even if a code-bearing architecture reached the jobs
table (say, by a bug in an earlier gate or a tampered database), a gradients, effective-field or training job
refuses it at the worker's own gate, fails with `unsafe_architecture`, and no canary appears."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from app import db
from app.jobs import handlers, repository
from app.models import DEFAULT_TENANT, Architecture, Job
from tests.conftest import make_settings
from tests.security.corpus import Corpus


def _config_of(case: Any) -> dict[str, Any] | None:
    """The model config a code-bearing case carries, when it can be read without Keras."""
    try:
        if case.fmt == "json":
            config = json.loads(case.data)
        elif case.fmt == "keras":
            with zipfile.ZipFile(io.BytesIO(case.data)) as archive:
                config = json.loads(archive.read("config.json"))
        else:
            return None
    except Exception:  # noqa: BLE001 - unreadable payloads are the ingestion tests' business
        return None
    return config if isinstance(config, dict) else None


def test_jobs_refuse_code_bearing_architectures(hostile_corpus: Corpus, tmp_path) -> None:
    settings = make_settings(tmp_path)
    db.upgrade(settings)
    cases = [(case, _config_of(case)) for case in hostile_corpus.cases if case.carries_code]
    cases = [(case, config) for case, config in cases if config is not None]
    assert len(cases) >= 10, [case.name for case, _ in cases]
    ran = 0
    for index, (case, config) in enumerate(cases):
        with db.session_scope(settings) as session:
            architecture = Architecture(tenant_id=DEFAULT_TENANT, sha256=f"{index:064d}", format="json",
                                        name=case.name, byte_size=len(case.data), config=config)
            session.add(architecture)
            session.flush()
            jobs = [Job(tenant_id=DEFAULT_TENANT, kind=kind, architecture_id=architecture.id,
                        parameters={"steps": 2, "batch_size": 2, "layers": []})
                    for kind in ("gradients", "effective_field", "training")]
            session.add_all(jobs)
            session.flush()
            job_ids = [job.id for job in jobs]
        for job_id in job_ids:
            with db.session_scope(settings) as session:
                held = repository.claim(session, job_id, "test-worker",
                                        stale_before=repository.utc_cutoff(60))
            assert held is not None
            assert handlers.execute(settings, held) == "failed", case.name
            with db.session_scope(settings) as session:
                job = session.get(Job, job_id)
                assert job.status == "failed"
                assert job.error["code"] == "unsafe_architecture", (case.name, job.error)
                assert job.result is None
            ran += 1
    assert ran == 3 * len(cases)
    assert hostile_corpus.canaries() == [], hostile_corpus.canaries()
