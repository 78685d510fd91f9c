"""Following a service's jobs from the command line while they run.

A training run is followed on its server-sent event stream (``events_url``):
every step arrives as an event, so the progress shown is never coarser than
the run itself. When the stream cannot be had (a proxy that buffers, an older
service) the run is polled at ``GET /v1/training-runs/{id}`` instead.
Analyses (and their gradient measurement) are polled.

On a terminal the progress is a rich live bar; in a pipe, a log or CI, where
a live display would print nothing until the end, it is one line per
noticeable change (every tenth of the run, a new phase, or every few
seconds).

Example::

    with httpx.Client(base_url="http://127.0.0.1:8000") as client:
        run = client.post("/v1/training-runs", json={"analysis_id": aid, "steps": 50}).json()
        final = follow_training(client, run, console=Console())
        final["status"], final["result"]["verdict"]["summary"]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.errors import DomainError

if TYPE_CHECKING:  # pragma: no cover
    import httpx
    from rich.console import Console
    from rich.progress import Progress, TaskID

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
OVERFIT_PHASE = "overfit_check"
"""The training run's phase (``progress_detail.phase``) while it checks that the model can
overfit one batch, after the requested steps (``overfit_check``, on by default)."""
OVERFIT_WORDS = "overfit-one-batch check"

#: Seconds without a byte on the event stream before the run's status is checked by GET.
STREAM_IDLE_S = 15.0
#: Consecutive broken streams before following falls back to polling.
STREAM_RETRIES = 3


class StreamUnavailable(Exception):
    """The service answered the event stream with something that is not an event stream."""


def check_response(response: httpx.Response) -> dict[str, Any]:
    """The JSON body, or a DomainError carrying the server's problem details.

    >>> import httpx
    >>> request = httpx.Request("GET", "http://x/v1/training-runs/42")
    >>> check_response(httpx.Response(200, json={"id": "42"}, request=request))
    {'id': '42'}
    """
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    if response.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else str(body)
        code = body.get("code") if isinstance(body, dict) else None
        raise DomainError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {detail}",
            code=code or "server_error",
            status=response.status_code,
        )
    return body if isinstance(body, dict) else {"items": body}


def not_finished(label: str, timeout_s: float, status: str) -> DomainError:
    return DomainError(
        f"{label} did not finish within {timeout_s:.0f} s "
        f"(last status {status}); it keeps running on the server.",
        code="timeout",
        status=504,
    )


# -- server-sent events -----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSentEvent:
    """One event of a ``text/event-stream``."""

    event: str
    data: str
    id: str | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON object in ``data`` (empty when it holds none)."""
        try:
            value = json.loads(self.data) if self.data else {}
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def iter_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events from the lines of a ``text/event-stream`` (the WHATWG parsing rules).

    >>> events = iter_sse(["id: 7", "event: step", 'data: {"step": 3}', "", ": ping", ""])
    >>> [(e.id, e.event, e.payload()) for e in events]
    [('7', 'step', {'step': 3})]
    """
    kind, event_id = "", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(kind or "message", "\n".join(data), event_id)
            kind, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value
    if data:
        yield ServerSentEvent(kind or "message", "\n".join(data), event_id)


# -- the display ------------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``; empty for unknown.

    >>> format_seconds(185), format_seconds(3.4), format_seconds(None)
    ('3 min 05 s', '3 s', '')
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


@dataclass
class ProgressState:
    """What the display shows: ``completed`` of ``total`` (None: not known yet) and words."""

    completed: float = 0.0
    total: float | None = None
    detail: str = ""
    eta_s: float | None = None
    unit: str = ""

    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(max(self.completed / self.total, 0.0), 1.0)

    def count_text(self) -> str:
        if self.total is None or not self.unit:
            return ""
        return f"{int(self.completed)}/{int(self.total)} {self.unit}"

    def line(self, label: str) -> str:
        """One plain line: ``training  12/30 steps  40%  loss 1.63  ETA 2 s``."""
        parts = [label]
        if self.count_text():
            parts.append(self.count_text())
        fraction = self.fraction()
        if fraction is not None:
            parts.append(f"{fraction:.0%}")
        if self.detail:
            parts.append(self.detail)
        if self.eta_s is not None and fraction is not None and fraction < 1:
            parts.append(f"ETA {format_seconds(self.eta_s)}")
        return "  ".join(parts)


@dataclass
class ProgressDisplay:
    """A live rich progress bar on a terminal; progress lines anywhere else.

    Lines are printed when the run crosses another tenth, when the words change
    (a new phase) and otherwise at most every ``line_interval_s`` seconds.

    Example::

        with ProgressDisplay(console, "training", unit="steps") as display:
            display.update(completed=12, total=30, detail="loss 1.63", eta_s=2.0)
    """

    console: Console
    label: str
    unit: str = ""
    line_interval_s: float = 5.0
    live: bool | None = None
    state: ProgressState = field(init=False)
    lines_printed: int = field(init=False, default=0)
    _progress: Progress | None = field(init=False, default=None)
    _task: TaskID | None = field(init=False, default=None)
    _last_line: str = field(init=False, default="")
    _last_tenth: int = field(init=False, default=-1)
    _last_phase: str = field(init=False, default="")
    _last_line_at: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.state = ProgressState(unit=self.unit)
        if self.live is None:
            self.live = self.console.is_terminal and not self.console.is_dumb_terminal

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TextColumn("{task.fields[percent]}"),
                TextColumn("{task.fields[detail]}"),
                TextColumn("[dim]{task.fields[eta]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.label, total=None, count="", percent="", detail="", eta=""
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
        elif exc[0] is None and self.state.line(self.label) != self._last_line:
            self._print_line()

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        detail: str | None = None,
        eta_s: float | None = None,
    ) -> None:
        """Change what is shown; ``None`` keeps a value (``eta_s`` is always replaced)."""
        state = self.state
        if total is not None:
            state.total = float(total)
        if completed is not None:
            state.completed = float(completed)
        if detail is not None:
            state.detail = detail
        state.eta_s = eta_s
        if self._progress is not None and self._task is not None:
            fraction = state.fraction()
            eta = format_seconds(eta_s) if fraction is not None and fraction < 1 else ""
            self._progress.update(
                self._task,
                total=state.total,
                completed=state.completed,
                count=state.count_text(),
                percent=f"{fraction:>4.0%}" if fraction is not None else "",
                detail=state.detail,
                eta=f"ETA {eta}" if eta else "",
                refresh=True,  # every event is a frame: none is lost between timed redraws
            )
            return
        fraction = state.fraction()
        tenth = int(fraction * 10) if fraction is not None else -1
        phase = state.detail.split("  ")[0].split(" loss ")[0]
        now = time.monotonic()
        if (
            tenth != self._last_tenth
            or phase != self._last_phase
            or now - self._last_line_at >= self.line_interval_s
        ) and state.line(self.label) != self._last_line:
            self._last_tenth, self._last_phase = tenth, phase
            self._print_line()

    def _print_line(self) -> None:
        from rich.markup import escape

        self._last_line = self.state.line(self.label)
        self._last_line_at = time.monotonic()
        self.lines_printed += 1
        self.console.print(escape(self._last_line))


# -- analyses ---------------------------------------------------------------------------------


def analysis_detail(body: Mapping[str, Any]) -> str:
    """Words for an analysis's state: its status, or what it is still waiting for.

    >>> analysis_detail({"status": "running", "report": {}, "gradient_job_id": "g1"})
    'measuring gradients (job g1)'
    """
    status = str(body.get("status", "?"))
    if status == "running" and body.get("report") is not None and body.get("gradient_job_id"):
        return f"measuring gradients (job {body['gradient_job_id']})"
    return status


def follow_analysis(
    client: httpx.Client,
    analysis: Mapping[str, Any],
    *,
    console: Console,
    poll_s: float = 0.5,
    timeout_s: float = 3600.0,
    live: bool | None = None,
) -> dict[str, Any]:
    """Poll ``GET /v1/analyses/{id}`` until the analysis (and any gradient measurement) ends."""
    deadline = time.monotonic() + timeout_s
    path = f"/v1/analyses/{analysis['id']}"
    body = dict(analysis)
    with ProgressDisplay(console, "analysis", live=live) as display:
        while True:
            status = str(body.get("status", "?"))
            waiting_for_gradients = body.get("report") is not None
            display.update(
                completed=1.0 if status == "succeeded" else float(body.get("progress") or 0.0),
                total=None if waiting_for_gradients and status == "running" else 1.0,
                detail=analysis_detail(body),
            )
            if status in TERMINAL_STATUSES:
                return body
            if time.monotonic() > deadline:
                raise not_finished("analysis", timeout_s, status)
            time.sleep(poll_s)
            body = check_response(client.get(path))


# -- training runs ----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class TrainingFollower:
    """Follows one training run: its event stream first, polling when that fails.

    ``sleep`` and ``clock`` are injectable so that the fallback can be tested
    without waiting.
    """

    client: httpx.Client
    run: dict[str, Any]
    display: ProgressDisplay
    poll_s: float = 0.5
    timeout_s: float = 3600.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    #: How the run was followed: ``"events"`` or ``"polling"``.
    mode: str = "events"
    last_event_id: int = 0
    step_events: int = 0
    gradient_verdict: str | None = None
    loss: float | None = None
    deadline: float = field(init=False, default=0.0)

    @property
    def run_path(self) -> str:
        return f"/v1/training-runs/{self.run['id']}"

    def follow(self, *, stream: bool = True) -> dict[str, Any]:
        """Show progress until the run ends; its final body (``GET /v1/training-runs/{id}``)."""
        self.deadline = self.clock() + self.timeout_s
        self.show_body(self.run)
        if str(self.run.get("status")) in TERMINAL_STATUSES:
            return self.run
        if stream:
            final = self._follow_stream()
            if final is not None:
                return final
        self.mode = "polling"
        return self._poll()

    # what is shown

    def _words(self, phase: str) -> str:
        parts = [phase] if phase else []
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.gradient_verdict:
            parts.append(f"gradients {self.gradient_verdict}")
        return "  ".join(parts)

    def show_body(self, body: Mapping[str, Any]) -> None:
        """Show a ``TrainingRunOut``: ``progress.steps_done / progress.steps``, ETA, loss."""
        raw = body.get("progress")
        progress: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        status = str(body.get("status", "?"))
        steps = _number(progress.get("steps")) or _number(
            (body.get("parameters") or {}).get("steps")
        )
        done = _number(progress.get("steps_done")) or 0.0
        loss = _number(progress.get("loss"))
        if loss is not None:
            self.loss = loss
        phase = str(progress.get("phase") or status)
        if status in TERMINAL_STATUSES:
            phase = status
        elif phase == OVERFIT_PHASE or (
            status == "running" and steps and done >= steps and phase != "done"
        ):
            phase = OVERFIT_WORDS
        elif status == "queued":
            # "retrying (attempt 2 after worker lost)" while a retry waits for a worker
            phase = str(progress.get("message") or "queued")
        self.display.update(
            completed=done,
            total=steps,
            detail=self._words(phase),
            eta_s=_number(progress.get("eta_s")),
        )

    def show_event(self, event: ServerSentEvent) -> str | None:
        """Show one event; the final status when it is the stream's ``end``."""
        if event.id is not None and event.id.isdigit():
            self.last_event_id = max(self.last_event_id, int(event.id))
        payload = event.payload()
        if event.event == "step":
            self.step_events += 1
            step, steps = _number(payload.get("step")), _number(payload.get("steps"))
            self.loss = _number(payload.get("loss"))
            phase = "training"
            if payload.get("phase") == OVERFIT_PHASE or (
                step is not None and steps and step >= steps
            ):
                phase = OVERFIT_WORDS
            self.display.update(
                completed=step,
                total=steps,
                detail=self._words(phase),
                eta_s=_number(payload.get("eta_s")),
            )
        elif event.event == "probe":
            verdict = payload.get("gradient_verdict")
            if isinstance(verdict, str):
                self.gradient_verdict = verdict
        elif event.event == "started":
            attempt = payload.get("attempt")
            again = isinstance(attempt, int) and attempt > 1
            self.display.update(
                completed=0 if again else None,
                detail=self._words(f"started again (attempt {attempt})" if again else "started"),
            )
        elif event.event == "retrying":
            attempt = payload.get("attempt")
            self.display.update(detail=self._words(str(
                payload.get("message") or f"retrying (attempt {attempt})")))
        elif event.event == "resumed":
            attempt, step = payload.get("attempt"), _number(payload.get("from_step"))
            self.display.update(
                completed=step,
                detail=self._words(f"resumed at step {step:.0f} from its checkpoint (attempt {attempt})"
                                   if step is not None else f"resumed (attempt {attempt})"),
            )
        elif event.event in ("finished", "failed"):
            status = str(payload.get("status") or event.event)
            self.display.update(detail=self._words(f"{status}, writing the result"))
        elif event.event == "end":
            return str(payload.get("status") or "")
        return None

    # following

    def _remaining(self) -> float:
        return self.deadline - self.clock()

    def _check_deadline(self, status: str) -> None:
        if self._remaining() <= 0:
            raise not_finished("training run", self.timeout_s, status)

    def _stream_once(self) -> str | None:
        """Read the event stream until ``end`` (its status) or until it goes quiet (None)."""
        import httpx

        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = str(self.last_event_id)
        idle = max(1.0, min(STREAM_IDLE_S, self._remaining()))
        timeout = httpx.Timeout(30.0, read=idle)
        url = str(self.run.get("events_url") or f"{self.run_path}/events")
        with self.client.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                if response.status_code in (401, 403, 404):
                    check_response(response)  # the run itself is not reachable: say why
                raise StreamUnavailable(f"the event stream answered {response.status_code}")
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise StreamUnavailable(f"the event stream answered {content_type or 'no type'}")
            for event in iter_sse(response.iter_lines()):
                ended = self.show_event(event)
                if ended is not None:
                    return ended
                if self._remaining() <= 0:
                    return None
        return None

    def _follow_stream(self) -> dict[str, Any] | None:
        """The final run body, or None when following must fall back to polling."""
        import httpx

        failures = 0
        status = str(self.run.get("status"))
        while True:
            self._check_deadline(status)
            try:
                ended = self._stream_once()
                failures = 0
            except StreamUnavailable:
                return None
            except httpx.ReadTimeout:
                ended = None  # quiet (queued, loading, overfit check): look at the row
            except httpx.TransportError:
                failures += 1
                if failures >= STREAM_RETRIES:
                    return None
                self.sleep(self.poll_s)
                ended = None
            body = check_response(self.client.get(self.run_path))
            status = str(body.get("status"))
            if status in TERMINAL_STATUSES:
                self.show_body(body)
                return body
            if ended is None and self.step_events == 0:
                self.show_body(body)

    def _poll(self) -> dict[str, Any]:
        while True:
            body = check_response(self.client.get(self.run_path))
            self.show_body(body)
            status = str(body.get("status"))
            if status in TERMINAL_STATUSES:
                return body
            self._check_deadline(status)
            self.sleep(self.poll_s)


def follow_training(
    client: httpx.Client,
    run: Mapping[str, Any],
    *,
    console: Console,
    poll_s: float = 0.5,
    timeout_s: float = 3600.0,
    stream: bool = True,
    live: bool | None = None,
) -> dict[str, Any]:
    """Follow a training run (events, else polling) with a progress display; its final body."""
    with ProgressDisplay(console, "training", unit="steps", live=live) as display:
        follower = TrainingFollower(client, dict(run), display, poll_s=poll_s, timeout_s=timeout_s)
        return follower.follow(stream=stream)
