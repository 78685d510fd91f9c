"""The ``convlens analyze`` and ``convlens submit`` commands (typer + rich).

``analyze`` runs the engine in this process, no server needed; ``submit``
uploads to a running service, follows its jobs with a live progress bar and
prints the result.

Examples::

    convlens analyze model.keras                      # summary, findings and layers in the terminal
    convlens analyze model.h5 --json > report.json    # machine output
    convlens analyze model.json --html report.html --input-shape 224,224,3
    convlens submit model.keras --server http://127.0.0.1:8000 --measure-gradients \
        --train --steps 200
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.errors import DomainError

if TYPE_CHECKING:  # pragma: no cover
    import httpx
    from rich.console import Console

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
MAX_TABLE_LAYERS = 400


def parse_input_shape(text: str | None) -> list[int | None] | None:
    """``"224,224,3"``, ``"[224, 224, 3]"`` or ``"None,None,3"`` -> a list without batch dim.

    >>> parse_input_shape("224, 224, 3")
    [224, 224, 3]
    >>> parse_input_shape("[null, null, 3]")
    [None, None, 3]
    """
    if text is None or not text.strip():
        return None
    cleaned = text.strip().strip("[]()")
    dims: list[int | None] = []
    for part in cleaned.split(","):
        token = part.strip().lower()
        if not token:
            continue
        if token in {"none", "null", "?"}:
            dims.append(None)
            continue
        try:
            value = int(token)
        except ValueError:
            value = 0
        if value < 1:
            raise typer.BadParameter(
                "give the input shape without the batch dimension as positive integers or None, "
                f"e.g. 224,224,3. Received: {text!r}",
                param_hint="--input-shape",
            )
        dims.append(value)
    if not 1 <= len(dims) <= 4:
        raise typer.BadParameter(
            f"an input shape has 1 to 4 dimensions. Received: {text!r}", param_hint="--input-shape"
        )
    return dims


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _fail(console: Console, error: DomainError) -> typer.Exit:
    console.print(
        f"[bold red]error[/] [dim]({error.code}, HTTP {error.status})[/]: {_escape(error.detail)}"
    )
    return typer.Exit(code=1)


def _escape(text: Any) -> str:
    from rich.markup import escape

    return escape(str(text))


# -- printing a report ------------------------------------------------------------------------


def print_report(
    report: Mapping[str, Any], console: Console, *, max_layers: int = MAX_TABLE_LAYERS
) -> None:
    """Summary, receptive field, findings, stages and the layer table, with rich."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from app.reports.view import (
        coverage_percent,
        derive_stages,
        flatten_layers,
        format_bytes,
        format_count,
        format_field,
        format_shape,
        headline,
    )

    summary = report.get("summary") or {}
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row(
        "parameters",
        f"{format_count(summary.get('total_params'))} "
        f"({format_count(summary.get('trainable_params'))} trainable, "
        f"{format_count(summary.get('non_trainable_params'))} non-trainable)",
    )
    facts.add_row(
        "MACs / FLOPs",
        f"{format_count(summary.get('macs'))} / {format_count(summary.get('flops'))} per sample",
    )
    facts.add_row(
        "memory",
        f"activations {format_bytes(summary.get('activation_bytes'))} per sample, "
        f"parameters {format_bytes(summary.get('param_bytes'))}",
    )
    facts.add_row(
        "input -> output",
        f"{_shapes(summary.get('input_shapes'))} -> {_shapes(summary.get('output_shapes'))}",
    )
    field = report.get("receptive_field") or {}
    if field.get("global"):
        facts.add_row("receptive field", "global: every output unit sees the whole input")
    elif field.get("axes"):
        share = coverage_percent(report)
        facts.add_row(
            "receptive field",
            f"{format_field(field['axes'])} pixels, stride "
            f"{format_field(field['axes'], 'stride')} at {_escape(field.get('layer'))}"
            + (f" ({share} of the input)" if share else ""),
        )
    flow = report.get("gradient_flow") or {}
    for kind in ("predicted", "measured"):
        block = flow.get(kind)
        if isinstance(block, Mapping) and block.get("verdict"):
            facts.add_row(f"gradients ({kind})", str(block["verdict"]))
    coverage = report.get("coverage") or {}
    status = coverage.get("status") or "unknown"
    facts.add_row("coverage", f"[{'green' if status == 'complete' else 'yellow'}]{status}[/]")
    console.print(
        Panel(
            facts,
            title=f"[bold]{_escape(report.get('model_name') or 'model')}[/]",
            subtitle=f"{format_count(summary.get('layer_count'))} layers",
            expand=False,
        )
    )
    console.print(Text(headline(report)))

    findings = [f for f in (report.get("findings") or []) if isinstance(f, Mapping)]
    console.print()
    console.print("[bold]Findings[/]" if findings else "[bold]Findings[/]: none")
    colours = {"error": "red", "warning": "yellow", "info": "cyan"}
    for finding in findings:
        severity = str(finding.get("severity", "info"))
        console.print(
            f" [{colours.get(severity, 'white')}]{severity:>7}[/] "
            f"[dim]{_escape(finding.get('code'))}[/] {_escape(finding.get('message'))}"
        )

    stages = derive_stages(report)
    if stages:
        table = Table(title="Stages", title_justify="left", title_style="bold", show_edge=False)
        for header, justify in (
            ("#", "right"),
            ("resolution", "left"),
            ("channels", "right"),
            ("layers", "right"),
            ("params", "right"),
            ("MACs", "right"),
            ("field", "right"),
        ):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        for stage in stages:
            table.add_row(
                str(stage.get("index", "")),
                "x".join(str(d) for d in stage["resolution"])
                if stage.get("resolution")
                else "non-spatial",
                str(stage.get("channels") if stage.get("channels") is not None else ""),
                str(len(stage.get("layers") or [])),
                format_count(stage.get("params")),
                format_count(stage.get("macs")),
                format_field(stage.get("receptive_field")),
            )
        console.print()
        console.print(table)

    flat = flatten_layers(report)
    table = Table(title="Layers", title_justify="left", title_style="bold", show_edge=False)
    table.add_column("layer", overflow="fold", min_width=12)
    table.add_column("class", overflow="fold")
    table.add_column("output shape", overflow="fold")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("field", justify="right")
    for item in flat[:max_layers]:
        layer = item.layer
        from app.reports.view import field_axes, is_global_field

        axes = field_axes(layer)
        table.add_row(
            Text("  " * item.depth + item.name),
            Text(item.class_name),
            format_shape(layer.get("output_shape")),
            format_count(layer.get("params")),
            format_count(layer.get("macs")),
            "global" if is_global_field(layer) else (format_field(axes) if axes else ""),
        )
    console.print()
    console.print(table)
    if len(flat) > max_layers:
        console.print(
            f"[dim]... and {len(flat) - max_layers} more layers (use --json or --html)[/]"
        )
    from app.reports.html import coverage_notes

    for note in coverage_notes(report):
        console.print(f"[yellow]partial[/] {_escape(note)}")


def _shapes(shapes: Any) -> str:
    from app.reports.view import format_shape

    if isinstance(shapes, list) and len(shapes) == 1 and isinstance(shapes[0], list):
        return format_shape(shapes[0])
    return format_shape(shapes)


# -- analyze ----------------------------------------------------------------------------------


def analyze_file(
    path: Path, *, input_shape: Sequence[int | None] | None = None, name: str | None = None
) -> dict[str, Any]:
    """Ingest, check and analyse a model file exactly as the service does, in this process."""
    from app.analysis import analyze as run_engine
    from app.config import get_settings
    from app.ingest import ingest_bytes
    from app.security import check_report_limits, check_static_limits, validate_architecture

    settings = get_settings()
    ingested = ingest_bytes(path, filename=path.name, settings=settings)
    validate_architecture(ingested.config, settings)
    check_static_limits(ingested.config, settings)
    report = run_engine(
        ingested.config,
        input_shape=list(input_shape) if input_shape else None,
        name=name or ingested.name,
    )
    check_report_limits(report, settings)
    return report


def analyze(
    file: Annotated[
        Path,
        typer.Argument(
            help="A Keras model: .json (model.to_json()), .keras or legacy .h5",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (machine output)")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="OUT", help="Write the self-contained HTML report to OUT"),
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(
            "--input-shape", help="Override the input shape without batch, e.g. 224,224,3"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name shown in the report")] = None,
) -> None:
    """Analyse a model file locally (no server): shapes, params, MACs, fields, findings."""
    shape = parse_input_shape(input_shape)
    stderr = _console(stderr=True)
    try:
        report = analyze_file(file, input_shape=shape, name=name)
    except DomainError as error:
        raise _fail(stderr, error) from None
    if html is not None:
        from app.reports.html import render_report_html

        html.write_text(render_report_html(report), encoding="utf-8")
        (stderr if json_output else _console()).print(f"wrote {_escape(html)}")
    if json_output:
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=False) + "\n")
    else:
        print_report(report, _console())


# -- submit -----------------------------------------------------------------------------------


def _client(server: str, api_key: str | None, timeout: float) -> httpx.Client:
    import httpx

    headers = {"Accept": "application/json", "User-Agent": "convlens-cli"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)


def _check(response: httpx.Response) -> dict[str, Any]:
    """The JSON body, or a DomainError carrying the server's problem details."""
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


def _follow(
    client: httpx.Client,
    path: str,
    *,
    label: str,
    poll_s: float,
    timeout_s: float,
    console: Console,
    describe: Any = None,
) -> dict[str, Any]:
    """Poll ``path`` until its status is final, showing a live progress bar."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout_s
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=1.0, detail="queued")
        while True:
            body = _check(client.get(path))
            status = str(body.get("status", "?"))
            fraction = body.get("progress")
            fraction = float(fraction) if isinstance(fraction, int | float) else 0.0
            detail = describe(body) if describe else status
            if status in TERMINAL_STATUSES:
                progress.update(
                    task, completed=1.0 if status == "succeeded" else fraction, detail=detail
                )
                return body
            progress.update(task, completed=min(max(fraction, 0.0), 1.0), detail=detail)
            if time.monotonic() > deadline:
                raise DomainError(
                    f"{label} did not finish within {timeout_s:.0f} s "
                    f"(last status {status}); it keeps running on the server.",
                    code="timeout",
                    status=504,
                )
            time.sleep(poll_s)


def _training_detail(body: Mapping[str, Any]) -> str:
    detail = body.get("progress_detail") or body.get("latest") or {}
    status = str(body.get("status", "?"))
    if isinstance(detail, Mapping) and detail.get("step") is not None:
        loss = detail.get("loss")
        text = f"{status} step {detail.get('step')}/{detail.get('steps', '?')}"
        if isinstance(loss, int | float):
            text += f" loss {loss:.4g}"
        return text
    return status


def submit(
    file: Annotated[
        Path,
        typer.Argument(
            help="A Keras model: .json, .keras or legacy .h5",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    server: Annotated[
        str, typer.Option(envvar="CONVLENS_SERVER", help="Base URL of the convlens service")
    ] = "http://127.0.0.1:8000",
    measure_gradients: Annotated[
        bool,
        typer.Option(
            "--measure-gradients", help="Also measure gradient flow with TensorFlow (a queued job)"
        ),
    ] = False,
    train: Annotated[
        bool, typer.Option("--train", help="Start a short training run after the analysis")
    ] = False,
    steps: Annotated[int | None, typer.Option(help="Training steps (with --train)")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Training batch size (with --train)")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="sgd, adam or rmsprop (with --train)")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="Learning rate (with --train)")
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(
            "--input-shape", help="Override the input shape without batch, e.g. 224,224,3"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name of the analysis")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="CONVLENS_API_KEY", help="API key (Authorization: Bearer)")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the final JSON instead of tables")
    ] = False,
    poll_interval: Annotated[float, typer.Option(help="Seconds between status polls")] = 0.5,
    wait_timeout: Annotated[
        float, typer.Option(help="Give up waiting after this many seconds")
    ] = 3600.0,
) -> None:
    """Upload a model to a convlens service, follow its jobs with a progress bar, print it."""
    shape = parse_input_shape(input_shape)
    console = _console(stderr=json_output)
    errors = _console(stderr=True)
    import httpx

    try:
        with _client(server, api_key, timeout=120.0) as client:
            data: dict[str, str] = {"measure_gradients": "true" if measure_gradients else "false"}
            if shape is not None:
                data["input_shape"] = json.dumps(shape)
            if name:
                data["name"] = name
            with file.open("rb") as handle:
                created = _check(
                    client.post(
                        "/v1/analyses",
                        data=data,
                        files={"file": (file.name, handle, "application/octet-stream")},
                    )
                )
            analysis_id = str(created["id"])
            console.print(f"analysis [bold]{analysis_id}[/] {created.get('status')}")
            analysis = created
            if created.get("status") not in TERMINAL_STATUSES:
                analysis = _follow(
                    client,
                    f"/v1/analyses/{analysis_id}",
                    label="analysis",
                    poll_s=poll_interval,
                    timeout_s=wait_timeout,
                    console=console,
                )
            if analysis.get("status") != "succeeded":
                raise DomainError(
                    f"the analysis {analysis.get('status')}: "
                    f"{(analysis.get('error') or {}).get('detail', 'no detail')}",
                    code="job_failed",
                    status=500,
                )
            training_run = None
            if train:
                body: dict[str, Any] = {"analysis_id": analysis_id}
                for key, value in (
                    ("steps", steps),
                    ("batch_size", batch_size),
                    ("optimizer", optimizer),
                    ("learning_rate", learning_rate),
                ):
                    if value is not None:
                        body[key] = value
                started = _check(client.post("/v1/training-runs", json=body))
                run_id = str(started["id"])
                console.print(f"training run [bold]{run_id}[/] {started.get('status')}")
                training_run = _follow(
                    client,
                    f"/v1/training-runs/{run_id}",
                    label="training",
                    poll_s=poll_interval,
                    timeout_s=wait_timeout,
                    console=console,
                    describe=_training_detail,
                )
    except httpx.HTTPError as exc:
        errors.print(f"[bold red]error[/]: could not talk to {_escape(server)}: {_escape(exc)}")
        raise typer.Exit(code=1) from None
    except DomainError as error:
        raise _fail(errors, error) from None

    if json_output:
        sys.stdout.write(
            json.dumps({"analysis": analysis, "training_run": training_run}, indent=2) + "\n"
        )
        return
    report = analysis.get("report")
    if isinstance(report, Mapping):
        print_report(report, console)
    if training_run is not None:
        _print_training(training_run, console)
    console.print(f"\nreport: {_escape(server.rstrip('/'))}/v1/analyses/{analysis_id}/report.html")


def _print_training(run: Mapping[str, Any], console: Console) -> None:
    result = run.get("result") if isinstance(run.get("result"), Mapping) else {}
    verdict = (result or {}).get("verdict") or {}
    console.print()
    console.print(f"[bold]Training run[/] {_escape(run.get('id'))}: {_escape(run.get('status'))}")
    if isinstance(verdict, Mapping) and verdict.get("summary"):
        console.print(_escape(verdict["summary"]))
    elif run.get("error"):
        console.print(f"[red]{_escape((run.get('error') or {}).get('detail'))}[/]")
