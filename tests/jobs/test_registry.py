"""Job kinds are declared once: everything that needs to know about a kind reads the registry,
so a new kind is one registration (shown here with a kind the test adds and runs)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.db import session_scope
from app.jobs import handlers, kinds, repository
from app.jobs.celery_app import QUEUES, longest_limit_s, queue_for
from app.jobs.kinds import JobContext, JobKind, get_kind, kind_names, register, tensorflow_preloads
from app.jobs.kinds.base import _KINDS
from app.jobs.resources import check_job_resources
from tests.jobs.helpers import add_architecture, add_job, job, tiny_config


def test_every_kind_is_complete() -> None:
    assert kind_names() == ("analysis", "effective_field", "gradients", "training")
    for kind in kinds.all_kinds():
        assert kind.queue in QUEUES
        assert kind.time_limit_s(Settings()) > 0
        for module in kind.preload:
            importlib.import_module(module)  # the warm child's imports exist (no TensorFlow yet)
    assert get_kind("gradients").in_tensorflow and not get_kind("analysis").in_tensorflow
    assert set(tensorflow_preloads()) == {
        "app.worker.loader", "app.worker.gradients", "app.worker.training", "app.worker.effective_field"
    }
    with pytest.raises(Exception, match="Unknown job kind"):
        get_kind("mystery")


@pytest.fixture
def echo_kind() -> Iterator[JobKind]:
    """A kind registered the way a new kind module would register itself."""

    def run(context: JobContext) -> dict[str, Any]:
        context.progress(0.5, {"phase": "echoing"})
        context.event("echo", {"config_name": context.architecture.config["config"]["name"]})
        return {"echo": context.job.parameters["say"], "attempt": context.job.attempt}

    kind = register(
        JobKind(
            name="echo",
            run=run,
            queue="echoes",
            in_tensorflow=False,
            time_limit_setting="analysis_time_limit_s",
            memory_estimate=lambda summary, parameters: int(parameters.get("needs", 0)),
        )
    )
    yield kind
    del _KINDS["echo"]


def test_a_new_kind_is_one_registration(echo_kind: JobKind, settings: Settings) -> None:
    from app import db
    from app.observability.metrics import render

    db.upgrade(settings)
    arch = add_architecture(settings, tiny_config())
    job_id = add_job(settings, arch, "echo", {"say": "hello"})
    with session_scope(settings) as session:
        held = repository.claim(session, job_id, "w", stale_before=repository.utc_cutoff(3))
    assert held is not None
    assert handlers.execute(settings, held) == "succeeded"
    row = job(settings, job_id)
    assert row.result == {"echo": "hello", "attempt": 1}
    assert queue_for("echo") == "echoes" and "echoes" in kinds.queues()
    assert longest_limit_s(settings) >= settings.analysis_time_limit_s
    assert 'convlens_jobs{kind="echo",status="succeeded"} 1.0' in render(settings).decode()
    report = {"summary": {"activation_bytes": 1}}
    assert check_job_resources("echo", report, settings, {"needs": 1}) == 1
    with pytest.raises(Exception, match="needs about"):
        check_job_resources("echo", report, settings, {"needs": 2**60})


class _Progress:
    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        self.seen.append((fraction, (detail or {})["phase"]))

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def test_a_measurement_reports_loading_measuring_its_own_progress_and_done(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.jobs.kinds import base
    from app.jobs.kinds.base import ArchitectureSpec, JobSpec, measure_model

    monkeypatch.setattr(base, "load_architecture_model", lambda context: "the model")
    reporter = _Progress()
    context = JobContext(
        job=JobSpec(id="j", kind="gradients", attempt=1, name=None, parent_id="a", parameters={},
                    time_limit_s=60.0),
        architecture=ArchitectureSpec(id="arch", name=None, format="json", config={}),
        settings=Settings(), reporter=reporter, work_dir=tmp_path,
    )

    def measure(model: Any, progress: Any) -> dict[str, Any]:
        assert reporter.seen == [(0.1, "loading model"), (0.3, "measuring")]  # loaded before it measures
        progress(0.5)
        return {"model": model}

    assert measure_model(context, measure, loading=0.1, measuring=0.3) == {"model": "the model"}
    assert reporter.seen == [(0.1, "loading model"), (0.3, "measuring"), (pytest.approx(0.65), "measuring"),
                             (1.0, "done")]
