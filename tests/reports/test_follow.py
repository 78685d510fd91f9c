"""Following training runs from the command line, against a scripted service (httpx MockTransport).

The bodies the fake service answers are built with the service's own response model
(``TrainingRunOut``), and the requests the command sends are validated with its request
model (``TrainingRunCreate``), so the client and the real API cannot drift apart unnoticed.
The same flow against the real service runs in test_submit_training.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from app.cli import cli
from app.errors import DomainError
from app.reports.follow import (
    ProgressDisplay,
    TrainingFollower,
    follow_training,
    iter_sse,
)
from app.training.schemas import TrainingProgress, TrainingRunCreate, TrainingRunOut
from tests.reports.conftest import SEED

RUN_ID = "0b7d1f9e-0000-4000-8000-000000000001"
ANALYSIS_ID = "0b7d1f9e-0000-4000-8000-0000000000aa"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def run_body(status: str, steps_done: int = 0, steps: int = 10, **extra: Any) -> dict[str, Any]:
    """A ``GET /v1/training-runs/{id}`` body, as the service's response model writes it."""
    phase = extra.pop("phase", None)
    out = TrainingRunOut(
        id=RUN_ID,
        status=status,  # type: ignore[arg-type]
        architecture_id="arch",
        analysis_id=ANALYSIS_ID,
        parameters={"steps": steps, "batch_size": 8, "optimizer": "adam", "dataset": "synthetic"},
        progress=TrainingProgress(
            steps_done=steps_done,
            steps=steps,
            fraction=steps_done / steps,
            eta_s=extra.pop("eta_s", None),
            loss=extra.pop("loss", None),
            phase=phase,
        ),
        attempts=1,
        time_limit_s=900.0,
        cancel_requested=False,
        events_url=f"/v1/training-runs/{RUN_ID}/events",
        created_at=NOW,
        updated_at=NOW,
        **extra,
    )
    return out.model_dump(mode="json")


def result(losses: list[float]) -> dict[str, Any]:
    return {
        "status": "completed",
        "params": {"steps": len(losses)},
        "steps_completed": len(losses),
        "train_elapsed_s": 1.5,
        "device": "cpu",
        "samples_per_s": 320.0,
        "history": {"loss": losses, "accuracy": None, "grad_global_norm": [1.0] * len(losses)},
        "verdict": {
            "loss_initial": losses[0],
            "loss_final": losses[-1],
            "loss_change": losses[-1] - losses[0],
            "loss_relative_change": (losses[-1] - losses[0]) / losses[0],
            "loss_decreased": True,
            "overfit_one_batch_passed": False,
            "overfit_one_batch": {
                "passed": False,
                "steps": 50,
                "factor": 2.5,
                "required_factor": 10.0,
            },
            "gradient_health": [{"step": 1, "first_to_last_ratio": 1e-5, "verdict": "vanishing"}],
            "gradient_health_overall": "vanishing",
            "max_dead_fraction": 0.75,
            "summary": "Loss went down; it did not overfit one batch.",
        },
    }


def sse(seq: int, kind: str, payload: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(payload)}\n\n"


def step_events(steps: int, first_seq: int = 2) -> list[str]:
    return [
        sse(
            first_seq + i,
            "step",
            {"step": i + 1, "steps": steps, "loss": 3.0 - i * 0.25, "eta_s": float(steps - i - 1)},
        )
        for i in range(steps)
    ]


class ChunkStream(httpx.SyncByteStream):
    """A response body that arrives in chunks and may end in a read timeout."""

    def __init__(self, chunks: list[str], then_timeout: bool = False) -> None:
        self.chunks, self.then_timeout = chunks, then_timeout

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            yield chunk.encode()
        if self.then_timeout:
            raise httpx.ReadTimeout("no data")


def plain_console(width: int = 200) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=False, color_system=None), buffer


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("training")]


# -- parsing -------------------------------------------------------------------------------------


def test_event_stream_parsing_follows_the_whatwg_rules():
    lines = [": keep-alive", "id: 3", "event: step", 'data: {"a":', "data: 1}", "", "data: x"]
    events = list(iter_sse(lines))
    assert [(e.id, e.event) for e in events] == [("3", "step"), ("3", "message")]
    assert events[0].data == '{"a":\n1}' and events[0].payload() == {"a": 1}
    assert events[1].payload() == {}  # not JSON: no payload, no crash


# -- following on the event stream -----------------------------------------------------------------


def test_a_run_is_followed_on_its_events_step_by_step():
    steps = 10
    body = "".join(
        [
            sse(1, "started", {"attempt": 1}),
            *step_events(steps),
            sse(12, "probe", {"step": 10, "gradient_verdict": "healthy"}),
            sse(13, "finished", {"status": "succeeded"}),
            'event: end\ndata: {"status": "succeeded"}\n\n',
        ]
    )
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return httpx.Response(200, json=run_body("succeeded", steps, steps, result=result([3.0])))

    console, buffer = plain_console()
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://svc") as client:
        final = follow_training(client, run_body("queued"), console=console)
    assert final["status"] == "succeeded"
    assert requests == [f"/v1/training-runs/{RUN_ID}/events", f"/v1/training-runs/{RUN_ID}"]
    lines = progress_lines(buffer.getvalue())
    # one line per tenth of the run, each with that step's loss and ETA
    assert "training  1/10 steps  10%  training  loss 3  ETA 9 s" in lines
    assert "training  5/10 steps  50%  training  loss 2  ETA 5 s" in lines
    assert sum("/10 steps" in line for line in lines) >= steps
    assert lines[-1] == "training  10/10 steps  100%  succeeded  loss 0.75  gradients healthy"


def test_a_retried_run_says_which_attempt_and_where_it_resumed():
    """A worker lost mid-run: the display says the run is retrying (with the attempt), then that
    attempt 2 resumed at its checkpoint step, and goes on from there (not from step 0)."""
    steps = 10
    body = "".join([
        sse(1, "started", {"attempt": 1}),
        *[sse(2 + i, "step", {"step": 1 + i, "steps": steps, "loss": 2.0}) for i in range(6)],
        sse(8, "retrying", {"attempt": 2, "after_attempt": 1, "reason": "worker lost",
                            "message": "retrying (attempt 2 after worker lost)"}),
        sse(9, "started", {"attempt": 2}),
        sse(10, "resumed", {"attempt": 2, "from_step": 5}),
        *[sse(11 + i, "step", {"step": 6 + i, "steps": steps, "loss": 1.0}) for i in range(5)],
        sse(16, "finished", {"status": "succeeded"}),
        'event: end\ndata: {"status": "succeeded"}\n\n',
    ])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return httpx.Response(200, json=run_body("succeeded", steps, steps, result=result([3.0])))

    console, buffer = plain_console()
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://svc") as client:
        follow_training(client, run_body("queued"), console=console)
    lines = progress_lines(buffer.getvalue())
    retrying = next(i for i, line in enumerate(lines) if "retrying (attempt 2 after worker lost)" in line)
    resumed = next(i for i, line in enumerate(lines)
                   if "resumed at step 5 from its checkpoint (attempt 2)" in line)
    assert retrying < resumed
    assert "5/10 steps" in lines[resumed]
    assert "started again (attempt 2)" in " ".join(lines[retrying:resumed])


def test_a_queued_retry_is_shown_while_polling():
    console, buffer = plain_console()
    display = ProgressDisplay(console, "training", unit="steps", live=False)
    with display:
        follower = TrainingFollower(httpx.Client(), run_body("queued"), display)
        queued = run_body("queued", 4, phase="retrying")
        queued["progress"]["message"] = "retrying (attempt 3 after the job's process was killed)"
        follower.show_body(queued)
    assert "retrying (attempt 3 after the job's process was killed)" in buffer.getvalue()


def test_a_quiet_stream_is_checked_and_resumed_after_the_last_event():
    calls = {"events": 0, "run": 0}
    seen_last_event_ids: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            calls["events"] += 1
            seen_last_event_ids.append(request.headers.get("last-event-id"))
            if calls["events"] == 1:  # started, then nothing (loading the model)
                return httpx.Response(
                    200,
                    headers={"content-type": "text/event-stream"},
                    stream=ChunkStream([sse(1, "started", {"attempt": 1})], then_timeout=True),
                )
            chunks = [*step_events(4), 'event: end\ndata: {"status": "succeeded"}\n\n']
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=ChunkStream(chunks)
            )
        calls["run"] += 1
        if calls["run"] == 1:
            return httpx.Response(200, json=run_body("running", 0, 4, phase="loading model"))
        return httpx.Response(200, json=run_body("succeeded", 4, 4, result=result([3.0, 2.0])))

    console, buffer = plain_console()
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://svc") as client:
        follower = TrainingFollower(
            client, run_body("queued", steps=4), ProgressDisplay(console, "training", unit="steps")
        )
        final = follower.follow()
    assert final["status"] == "succeeded" and follower.mode == "events"
    assert seen_last_event_ids == [None, "1"]  # resumed after the last event seen
    lines = progress_lines(buffer.getvalue())
    assert "training  0/4 steps  0%  loading model" in lines
    assert any(line.startswith("training  2/4 steps  50%") for line in lines)


@pytest.mark.parametrize(
    "events_response",
    [
        httpx.Response(200, json={"detail": "a proxy page"}),  # not an event stream
        httpx.Response(502, text="bad gateway"),
    ],
)
def test_without_an_event_stream_the_run_is_polled(events_response):
    bodies = iter(
        [
            run_body("queued"),
            run_body("running", 3, 10, loss=1.5, eta_s=7.0, phase="training"),
            run_body("running", 10, 10, loss=0.5, eta_s=0.0, phase="training"),
            run_body("succeeded", 10, 10, phase="done", result=result([3.0, 0.5])),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return events_response
        return httpx.Response(200, json=next(bodies))

    console, buffer = plain_console()
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://svc") as client:
        follower = TrainingFollower(
            client,
            run_body("queued"),
            ProgressDisplay(console, "training", unit="steps"),
            sleep=lambda seconds: None,
        )
        with follower.display:
            final = follower.follow()
    assert final["status"] == "succeeded" and follower.mode == "polling"
    lines = progress_lines(buffer.getvalue())
    assert "training  3/10 steps  30%  training  loss 1.5  ETA 7 s" in lines
    assert "training  10/10 steps  100%  overfit-one-batch check  loss 0.5" in lines
    assert lines[-1] == "training  10/10 steps  100%  succeeded  loss 0.5"


def test_waiting_gives_up_at_the_deadline_and_says_the_run_goes_on():
    now = [0.0]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(503, text="unavailable")
        return httpx.Response(200, json=run_body("running", 2, 10, phase="training"))

    def sleep(seconds: float) -> None:
        now[0] += 1.0

    console, _ = plain_console()
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://svc") as client:
        follower = TrainingFollower(
            client,
            run_body("queued"),
            ProgressDisplay(console, "training", unit="steps"),
            timeout_s=5,
            sleep=sleep,
            clock=lambda: now[0],
        )
        with pytest.raises(DomainError) as raised:
            follower.follow()
    assert raised.value.code == "timeout"
    assert "did not finish within 5 s (last status running)" in raised.value.detail


# -- the submit command against the scripted service ----------------------------------------------


@pytest.fixture
def scripted_service(monkeypatch, seed_reports):
    """``convlens submit`` talking to a scripted service; the requests it sent."""
    sent: dict[str, Any] = {}
    outcome: dict[str, Any] = {"status": "failed"}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/analyses":
            sent["analysis_form"] = request.content
            return httpx.Response(
                201, json={"id": ANALYSIS_ID, "status": "succeeded", "report": seed_reports[1]}
            )
        if request.method == "POST" and path == "/v1/training-runs":
            sent["training"] = json.loads(request.content)
            TrainingRunCreate.model_validate(sent["training"])  # what the real API accepts
            return httpx.Response(202, json=run_body("queued", 0, sent["training"]["steps"]))
        if path.endswith("/events"):
            status = outcome["status"]
            chunks = [
                sse(1, "started", {"attempt": 1}),
                *step_events(3),
                sse(5, "failed" if status == "failed" else "finished", {"status": status}),
                f'event: end\ndata: {{"status": "{status}"}}\n\n',
            ]
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content="".join(chunks)
            )
        if path == f"/v1/training-runs/{RUN_ID}":
            if outcome["status"] == "failed":
                return httpx.Response(
                    200,
                    json=run_body(
                        "failed",
                        3,
                        5,
                        error={
                            "code": "internal_error",
                            "detail": "ResourceExhaustedError: out of memory",
                        },
                    ),
                )
            return httpx.Response(200, json=run_body("succeeded", 5, 5, result=result([3.0, 1.0])))
        return httpx.Response(404, json={"detail": f"no route {path}", "code": "not_found"})

    def client(server: str, api_key: str | None, timeout: float) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(handler), base_url=server)

    monkeypatch.setattr("app.reports.cli._client", client)
    return sent, outcome


def test_submit_train_creates_the_run_of_the_new_analysis_and_prints_the_verdict(scripted_service):
    sent, outcome = scripted_service
    outcome["status"] = "succeeded"
    done = CliRunner().invoke(
        cli,
        [
            "submit",
            str(SEED / "example1.json"),
            "--server",
            "http://svc",
            "--train",
            "--steps",
            "5",
            "--optimizer",
            "sgd",
            "--learning-rate",
            "0.05",
        ],
        env={"COLUMNS": "160"},
    )
    assert done.exit_code == 0, done.output
    assert sent["training"] == {
        "analysis_id": ANALYSIS_ID,
        "steps": 5,
        "optimizer": "sgd",
        "learning_rate": 0.05,
    }
    assert f"Training run {RUN_ID}: succeeded" in done.output
    assert "3 -> 1 (-67%), decreased" in done.output
    assert "failed: loss down only 2.5x in 50 steps (10x needed)" in done.output
    assert "vanishing; first-to-last layer gradient ratio 1e-05 at step 1" in done.output
    assert "at most 75% of a layer's units" in done.output


def test_submit_exits_non_zero_when_the_run_fails(scripted_service):
    sent, outcome = scripted_service
    outcome["status"] = "failed"
    done = CliRunner().invoke(
        cli,
        [
            "submit",
            str(SEED / "example1.json"),
            "--server",
            "http://svc",
            "--train",
            "--steps",
            "5",
        ],
        env={"COLUMNS": "160"},
    )
    assert done.exit_code == 1, done.output
    assert f"Training run {RUN_ID}: failed" in done.output
    assert "ResourceExhaustedError: out of memory (internal_error)" in done.output
    json_done = CliRunner().invoke(
        cli,
        [
            "submit",
            str(SEED / "example1.json"),
            "--server",
            "http://svc",
            "--train",
            "--steps",
            "5",
            "--json",
        ],
    )
    assert json_done.exit_code == 1
    assert json.loads(json_done.stdout)["training_run"]["status"] == "failed"


def test_interrupting_submit_says_the_run_goes_on_and_how_to_stop_it(monkeypatch, seed_reports):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/analyses":
            return httpx.Response(
                201, json={"id": ANALYSIS_ID, "status": "succeeded", "report": seed_reports[1]}
            )
        if request.url.path == "/v1/training-runs":
            return httpx.Response(202, json=run_body("queued", 0, 5))
        raise KeyboardInterrupt  # Ctrl-C while following

    monkeypatch.setattr(
        "app.reports.cli._client",
        lambda server, api_key, timeout: httpx.Client(
            transport=httpx.MockTransport(handler), base_url=server
        ),
    )
    done = CliRunner().invoke(
        cli,
        ["submit", str(SEED / "example1.json"), "--server", "http://svc", "--train"],
        env={"COLUMNS": "200"},
    )
    assert done.exit_code == 130, done.output
    assert f"the run goes on on the server: http://svc/v1/training-runs/{RUN_ID}" in done.output
    assert f"POST http://svc/v1/training-runs/{RUN_ID}/cancel" in done.output
