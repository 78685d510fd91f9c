"""``convlens submit --train`` end to end: a real service with one job worker trains the seed's
Example 3 while the command shows its progress, then prints the verdict; the report page draws
the run's curves.

Everything runs for real: ``convlens serve`` (local executor, one worker, a TensorFlow child
process) and ``convlens submit`` as subprocesses. The progress the command printed is checked
against the per-step losses the run stored, and the printed verdict against the stored one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.reports.conftest import ROOT, SEED
from tests.reports.test_html import parse

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow, pytest.mark.timeout(900)]

STEPS = 30
PROGRESS_LINE = re.compile(r"^training\s+(\d+)/(\d+) steps\s+(\d+)%\s*(.*)$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Submitted:
    returncode: int
    lines: list[tuple[float, str]]  # (seconds since start, line) as the command printed them
    stderr: str

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def run_id(self) -> str:
        match = re.search(r"^training run ([0-9a-f-]{36}) queued", ANSI.sub("", self.text), re.M)
        assert match, self.text
        return match.group(1)

    def analysis_id(self) -> str:
        match = re.search(r"^analysis ([0-9a-f-]{36}) succeeded", ANSI.sub("", self.text), re.M)
        assert match, self.text
        return match.group(1)


def submit_command(server: str, *options: str) -> list[str]:
    """``convlens submit`` of Example 3 at 32x32 to ``server`` (waiting up to 600 s), with ``options``."""
    return [
        sys.executable, "-m", "app.cli", "submit", str(SEED / "example3.keras"), "--server", server,
        "--input-shape", "32,32,3", "--wait-timeout", "600", *options,
    ]


def submit(server: str, *extra: str, env: dict[str, str] | None = None) -> Submitted:
    """Run ``convlens submit`` on Example 3 at 32x32 with a 30-step training run."""
    command = submit_command(server, "--train", "--steps", str(STEPS), "--batch-size", "16", *extra)
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "160",
        **(env or {}),
    }
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    # bytes, split on "\n" only: a live display's "\r" redraws stay visible
    lines = [
        (time.monotonic() - started, line.decode("utf-8").rstrip("\n")) for line in process.stdout
    ]
    stderr = process.stderr.read().decode("utf-8")
    return Submitted(process.wait(timeout=60), lines, stderr)


def stored_run(server: str, run_id: str) -> dict:
    response = httpx.get(f"{server}/v1/training-runs/{run_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_submit_train_shows_progress_then_the_verdict_and_the_report_draws_the_curves(
    live_service_with_worker,
):
    server = live_service_with_worker
    done = submit(server)
    assert done.returncode == 0, done.text + done.stderr
    run_id = done.run_id()
    run = stored_run(server, run_id)
    assert run["status"] == "succeeded"
    assert run["analysis_id"] == done.analysis_id()
    result = run["result"]
    verdict = result["verdict"]
    losses = result["history"]["loss"]
    assert result["steps_completed"] == STEPS and len(losses) == STEPS

    # progress while it ran: several distinct steps, each line's loss the run's own at that step
    progress = [(i, PROGRESS_LINE.match(line)) for i, (_, line) in enumerate(done.lines)]
    progress = [(i, match) for i, match in progress if match]
    shown_steps = sorted({int(match.group(1)) for _, match in progress})
    assert len([s for s in shown_steps if 0 < s < STEPS]) >= 5, done.text
    assert shown_steps[-1] == STEPS
    assert all(int(match.group(2)) == STEPS for _, match in progress)
    checked = 0
    for _, match in progress:
        step, words = int(match.group(1)), match.group(4)
        loss = re.search(r"loss (\S+)", words)
        if 0 < step <= STEPS and loss and words.startswith("training"):
            assert loss.group(1) == f"{losses[step - 1]:.4g}", (step, words)
            checked += 1
    assert checked >= 5
    assert any("overfit-one-batch check" in m.group(4) for _, m in progress)
    # ... all of it printed before the result
    result_line = next(
        i for i, (_, line) in enumerate(done.lines) if line.startswith("Training run ")
    )
    assert done.lines[result_line][1] == f"Training run {run_id}: succeeded"
    assert max(i for i, _ in progress) < result_line

    # the result: loss change, overfit-one-batch outcome, gradient health, as stored
    rows = {
        line.split("  ", 1)[0]: line.split("  ", 1)[1].strip()
        for _, line in done.lines[result_line + 1 :]
        if "  " in line
    }
    assert verdict["loss_decreased"] is True  # the seed's Example 3 learns the synthetic task
    assert rows["loss"].startswith(
        f"{verdict['loss_initial']:.4g} -> {verdict['loss_final']:.4g} "
        f"({verdict['loss_relative_change']:+.0%}), decreased"
    )
    assert verdict["overfit_one_batch_passed"] is True
    overfit = verdict["overfit_one_batch"]
    assert rows["overfit one batch"] == (
        f"passed: loss down {overfit['factor']:.3g}x in {overfit['steps']} steps "
        f"({overfit['required_factor']:g}x needed)"
    )
    assert rows["gradient health"].startswith(verdict["gradient_health_overall"])
    assert verdict["summary"] in done.text

    # the report page now draws this run's curves
    analysis_id = done.analysis_id()
    assert f"{server}/v1/analyses/{analysis_id}/report.html" in done.text
    page = httpx.get(f"{server}/v1/analyses/{analysis_id}/report.html", timeout=60)
    assert page.status_code == 200
    collector = parse(page.text)
    ids = {attrs.get("id") for _, attrs in collector.tags}
    assert {"training", "plot-training", "training-runs", "training-verdict"} <= ids
    figure = page.text.split('id="plot-training"', 1)[1].split("</figure>", 1)[0]
    assert "<svg" in figure and "No training run yet." not in figure
    text = " ".join(collector.text)
    assert f"Run {run_id} (succeeded): {STEPS} of {STEPS} steps drawn" in text
    # one loss story: the verdict's pair, in its sentence and in the runs table
    assert "at the first step" not in text
    assert verdict["summary"] in text
    assert f"{verdict['loss_initial']:.4g} → {verdict['loss_final']:.4g}" in text
    plot = httpx.get(f"{server}/v1/analyses/{analysis_id}/plots/training.svg", timeout=60)
    assert plot.status_code == 200 and b"No training run yet." not in plot.content


def test_submit_train_draws_a_live_bar_on_a_terminal(live_service_with_worker):
    # TTY_COMPATIBLE/TTY_INTERACTIVE make rich treat the pipe as an interactive terminal
    done = submit(live_service_with_worker, env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert done.returncode == 0, done.text + done.stderr
    raw = done.text
    assert "\r" in raw and "━" in raw  # redrawn in place, as a bar
    frames = [ANSI.sub("", frame) for frame in re.split(r"[\r\n]", raw)]
    counts = {
        int(match.group(1)) for frame in frames if (match := re.search(r"(\d+)/30 steps", frame))
    }
    # each step event redraws the bar (none is lost between timed redraws)
    assert len({c for c in counts if 0 < c < STEPS}) >= 5, counts
    assert any("30/30 steps 100%" in frame and "succeeded" in frame for frame in frames)
    assert stored_run(live_service_with_worker, done.run_id())["status"] == "succeeded"


def test_submit_train_by_polling_with_json_output(live_service_with_worker):
    done = submit(live_service_with_worker, "--no-stream", "--json", "--poll-interval", "0.2")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.text)
    run = body["training_run"]
    assert run["status"] == "succeeded" and run["analysis_id"] == body["analysis"]["id"]
    assert run["progress"]["steps_done"] == STEPS
    assert run["result"]["verdict"]["summary"]
    # progress went to stderr, ending at the last step
    progress = [PROGRESS_LINE.match(line) for line in done.stderr.splitlines()]
    final = [m for m in progress if m][-1]
    assert final.group(1) == str(STEPS) and final.group(4).startswith("succeeded")


def test_submit_measure_gradients_waits_for_the_measurement(live_service_with_worker):
    server = live_service_with_worker
    done = subprocess.run(
        submit_command(server, "--measure-gradients"),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    analysis_id = re.search(r"^analysis ([0-9a-f-]{36}) ", done.stdout, re.M).group(1)
    assert re.search(r"^analysis\s+measuring gradients \(job [0-9a-f-]{36}\)", done.stdout, re.M)
    stored = httpx.get(f"{server}/v1/analyses/{analysis_id}", timeout=30).json()
    assert stored["status"] == "succeeded"
    measured = stored["report"]["gradient_flow"]["measured"]
    assert measured["status"] == "measured"
    assert f"Measured gradients: {measured['summary']}" in done.stdout
    assert f"skip ablation: {measured['skip_ablation']['summary']}" in done.stdout
    assert re.search(rf"gradients \(measured\)\s+{measured['verdict']}", done.stdout)
