"""Training runs as the report page shows them: which runs belong to an analysis, their curves.

A training run is a job of kind ``training``. It names the analysis it was
started from in ``parameters["analysis_id"]`` (its ``parent_id`` stays empty:
a run is not part of the analysis's own work) and always carries the
``architecture_id``. The page shows the runs of the analysis itself; when it has
none, the runs of the same architecture started from elsewhere.

A finished run's curves come from ``result["history"]`` (one list per metric,
one value per step, see ``app.worker.training.run_training``); a run still in
progress has no result yet, and its curves come from its ``step`` events.

Example::

    runs = select_runs(analysis_id, analysis.architecture_id, candidates)
    records = run_records(runs.shown.result, step_events)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

#: Runs listed on a report page at most.
MAX_LISTED_RUNS = 10


class RunRow(Protocol):
    """What is read from a training job row (``app.models.Job`` fits)."""

    id: str
    status: str
    architecture_id: str | None
    parent_id: str | None
    parameters: dict[str, Any]
    progress_detail: dict[str, Any] | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: datetime


def run_analysis_id(run: RunRow) -> str | None:
    """The analysis a run was started from (``parameters.analysis_id``, or its parent job)."""
    value = (run.parameters or {}).get("analysis_id")
    return str(value) if value else run.parent_id


@dataclass(frozen=True)
class RunSelection:
    """The runs a report lists, newest first, and whether they are the analysis's own."""

    runs: list[Any]
    own: bool

    @property
    def newest(self) -> Any | None:
        return self.runs[0] if self.runs else None


def select_runs(
    analysis_id: str, candidates: Iterable[RunRow], *, limit: int = MAX_LISTED_RUNS
) -> RunSelection:
    """The analysis's own runs, newest first; else the other runs of its architecture.

    ``candidates`` are the training runs of the analysis's architecture (any order).

    >>> from types import SimpleNamespace as Row
    >>> from datetime import datetime as dt
    >>> def row(run_id, analysis_id, day):
    ...     return Row(id=run_id, parameters={"analysis_id": analysis_id}, parent_id=None,
    ...                created_at=dt(2025, 1, day))
    >>> mine, other = row("r2", "a1", 2), row("r1", "a0", 3)
    >>> [run.id for run in select_runs("a1", [other, mine]).runs]
    ['r2']
    >>> select_runs("a9", [other, mine]).own
    False
    """
    ordered = sorted(candidates, key=lambda run: run.created_at, reverse=True)
    own = [run for run in ordered if run_analysis_id(run) == analysis_id]
    if own:
        return RunSelection(own[:limit], True)
    return RunSelection(ordered[:limit], False)


def records_from_history(history: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-step records from a result's ``history`` (columns of equal length, None for gaps).

    Columns that are not lists (``accuracy`` is None for regression outputs) are left out.

    >>> records_from_history({"loss": [2.0, None], "accuracy": None, "grad_global_norm": [1, 2]})
    [{'step': 1, 'loss': 2.0, 'grad_global_norm': 1}, {'step': 2, 'grad_global_norm': 2}]
    """
    columns = {key: values for key, values in history.items() if isinstance(values, list)}
    length = max((len(values) for values in columns.values()), default=0)
    records = []
    for index in range(length):
        row: dict[str, Any] = {"step": index + 1}
        for key, values in columns.items():
            if index < len(values) and _finite(values[index]):
                row[key] = values[index]
        records.append(row)
    return records


def records_from_events(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-step records from a run's ``step`` event payloads, the last attempt's only.

    A run retried after its worker died starts again at step 1; its earlier
    steps would draw a second, overlapping curve.

    >>> records_from_events([{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0},
    ...                      {"step": 1, "loss": 3.1}, {"step": 2, "loss": 1.9, "wall_time": 1e9}])
    [{'step': 1, 'loss': 3.1}, {'step': 2, 'loss': 1.9}]
    """
    records: list[dict[str, Any]] = []
    for payload in events:
        step = payload.get("step")
        if not isinstance(step, int):
            continue
        if records and step <= records[-1]["step"]:
            records = [row for row in records if row["step"] < step]
        records.append(
            {
                key: value
                for key, value in payload.items()
                if key in STEP_METRICS and (key == "step" or _finite(value))
            }
        )
    return records


#: The per-step numbers of a step event worth drawing (the rest is timing and bookkeeping).
STEP_METRICS = frozenset({"step", "loss", "accuracy", "grad_global_norm"})


def run_records(
    result: Mapping[str, Any] | None, events: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """A run's per-step records: its result's history when it has one, else its step events."""
    history = result.get("history") if isinstance(result, Mapping) else None
    if isinstance(history, Mapping):
        records = records_from_history(history)
        if records:
            return records
    return records_from_events(events)


def run_summary(run: RunRow, *, steps_drawn: int | None = None) -> dict[str, Any]:
    """One run as the page lists it: parameters, progress, and its verdict in a few words.

    >>> from types import SimpleNamespace as Row
    >>> from datetime import datetime as dt
    >>> row = Row(id="r1", status="succeeded", parameters={"steps": 30, "optimizer": "adam",
    ...     "batch_size": 16, "analysis_id": "a1"}, parent_id=None, architecture_id="x",
    ...     progress_detail={"steps_done": 30}, error=None, created_at=dt(2025, 1, 2, 3, 4),
    ...     result={"verdict": {"loss_initial": 2.0, "loss_final": 0.5,
    ...         "loss_relative_change": -0.75, "overfit_one_batch_passed": True,
    ...         "gradient_health_overall": "healthy", "summary": "Loss went down."}})
    >>> summary = run_summary(row)
    >>> summary["loss"], summary["overfit"], summary["gradients"]
    ('2 → 0.5 (-75%)', 'passed', 'healthy')
    """
    params = run.parameters or {}
    detail = run.progress_detail or {}
    result = run.result if isinstance(run.result, Mapping) else {}
    verdict = result.get("verdict") if isinstance(result.get("verdict"), Mapping) else {}
    assert isinstance(verdict, Mapping)
    steps = params.get("steps")
    done = result.get("steps_completed", detail.get("steps_done"))
    initial, final = verdict.get("loss_initial"), verdict.get("loss_final")
    loss = ""
    if _finite(initial) and _finite(final):
        loss = f"{initial:.4g} → {final:.4g}"
        if _finite(verdict.get("loss_relative_change")):
            loss += f" ({verdict['loss_relative_change']:+.0%})"
    passed = verdict.get("overfit_one_batch_passed")
    overfit = "passed" if passed is True else "failed" if passed is False else ""
    if not overfit and params.get("overfit_check") is False:
        overfit = "skipped"
    check = verdict.get("overfit_one_batch") if isinstance(verdict.get("overfit_one_batch"), Mapping) else {}
    assert isinstance(check, Mapping)
    overfit_s = result.get("overfit_check_s", check.get("duration_s"))
    error = run.error if isinstance(run.error, Mapping) else None
    lr = params.get("learning_rate")
    phase = str(detail.get("phase") or "")
    if run.status in ("queued", "running") and detail.get("message"):
        phase = str(detail["message"])  # "retrying (attempt 2 after worker lost)"
    elif run.status == "running" and phase == "overfit_check":
        phase = "overfit-one-batch check"
    elif run.status not in ("queued", "running"):
        phase = ""
    return {
        "id": run.id,
        "status": run.status,
        "analysis_id": run_analysis_id(run),
        "created_at": run.created_at.strftime("%Y-%m-%d %H:%M"),
        "steps": steps,
        "steps_done": done,
        "steps_drawn": steps_drawn,
        "batch_size": params.get("batch_size"),
        "optimizer": params.get("optimizer"),
        "learning_rate": f"{lr:g}" if _finite(lr) else "default",
        "input_shape": "×".join(str(d) for d in params.get("input_shape") or []) or None,
        "dataset": params.get("dataset", "synthetic"),
        "loss": loss,
        "loss_decreased": verdict.get("loss_decreased"),
        "overfit": overfit,
        "overfit_s": f"{overfit_s:.3g} s" if _finite(overfit_s) else "",
        "phase": phase if phase not in ("queued", "training", "done") else "",
        "attempts": result.get("attempts") if isinstance(result.get("attempts"), list) else None,
        "gradients": verdict.get("gradient_health_overall") or "",
        "stopped": result.get("status") if result.get("status") not in (None, "completed") else "",
        "verdict_summary": verdict.get("summary") or "",
        "error": (error.get("detail") or error.get("title")) if error else "",
    }


def training_caption(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """The sentence above the curves: which run, how many steps, and, while the run has no
    verdict yet, the loss at its first and latest step. A finished run's loss is told once, by
    its verdict (the means of its first and last five steps, as in the runs table).

    >>> training_caption({"id": "r1", "status": "running", "steps": 100},
    ...                  [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}])
    'Run r1 (running): 2 of 100 steps drawn; loss 2.5 at the first step, 2.25 at the latest.'
    >>> training_caption({"id": "r1", "status": "succeeded", "steps": 2, "loss": "2.4 → 2.2 (-8%)"},
    ...                  [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}])
    'Run r1 (succeeded): 2 of 2 steps drawn.'
    """
    losses = [row["loss"] for row in records if _finite(row.get("loss"))]
    run = f"Run {summary['id']}" if summary.get("id") else "The training run"
    text = f"{run} ({summary.get('status') or 'status unknown'}): {len(records)}"
    if summary.get("steps") is not None:
        text += f" of {summary['steps']}"
    text += " steps drawn"
    if losses and not summary.get("loss"):
        text += f"; loss {losses[0]:.4g} at the first step, {losses[-1]:.4g} at the latest"
    return text + "."


LOSS_STORY = "loss: mean of the first five steps → mean of the last five"
"""What the one loss pair on the page (the verdict and the runs table) is."""


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
