"""The ``convlens analyze`` and ``convlens submit`` commands (typer + rich).

``analyze`` runs the engine in this process, no server needed; ``submit``
uploads to a running service, follows its jobs with a live progress bar and
prints the result.

Examples::

    convlens analyze model.keras                      # summary, findings and layers in the terminal
    convlens analyze model.h5 --json > report.json    # machine output
    convlens analyze model.json --html report.html --input-shape 224,224,3
    convlens submit model.keras --measure-gradients --train --steps 200
    convlens submit model.keras --server http://models.internal:8000   # another service

``submit`` talks to the service configured on this machine (``CONVLENS_PUBLIC_URL``, else
``CONVLENS_HOST`` and ``CONVLENS_PORT``, as ``convlens serve`` reads them) unless ``--server``
or ``CONVLENS_SERVER`` names another.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.errors import DomainError

if TYPE_CHECKING:  # pragma: no cover
    import httpx
    from rich.console import Console

MAX_TABLE_LAYERS = 400
WIDE_TERMINAL = 100
"""From this many columns the terminal layer table also shows each layer's MACs."""


#: ``--input-shape`` of the commands that analyse a model file.
InputShapeOption = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="Override the input shape without batch, e.g. 224,224,3; per input of a "
        "multi-input model: image=224,224,3;mask=224,224,1",
    ),
]


def parse_input_shape(text: str | None) -> Any:
    """``"224,224,3"``, ``"224x224x3"``, ``"[224, 224, 3]"`` or ``"None,None,3"`` -> a list
    without the batch dimension (or ``{"name": [...]}`` per input), checked by the service's
    own validator (:func:`app.ingest.shapes.parse_input_shape`).

    >>> parse_input_shape("224, 224, 3")
    [224, 224, 3]
    >>> parse_input_shape("[null, null, 3]")
    [None, None, 3]
    """
    from app.config import get_settings
    from app.ingest.shapes import parse_input_shape as validate

    try:
        return validate(text, get_settings(), field="--input-shape")
    except DomainError as exc:
        reason = exc.detail.split(" Received: ")[0]
        raise typer.BadParameter(f"{reason} Received: {text!r}", param_hint="--input-shape") from None


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _fail(console: Console, error: DomainError) -> typer.Exit:
    """Print ``error (code): detail`` and exit 1. No HTTP status: ``convlens analyze`` talks to
    no server, and ``convlens submit`` names the request and the server's answer in the detail
    ("POST /v1/analyses answered 422: ...")."""
    console.print(f"[bold red]error[/] [dim]({error.code})[/]: {_escape(error.detail)}", soft_wrap=True)
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
        coverage_card,
        derive_stages,
        flatten_layers,
        format_bytes,
        format_count,
        format_field,
        headline,
        stage_head,
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
        value, note = coverage_card(report)
        facts.add_row(
            "receptive field",
            f"{format_field(field['axes'])} pixels, stride "
            f"{format_field(field['axes'], 'stride')} at {_escape(field.get('layer'))}",
        )
        facts.add_row("input coverage", f"{_escape(value)}: {_escape(note)}")
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
    if findings:
        # severity in a column of its own, each message wrapped under itself (as the page's list)
        listing = Table.grid(padding=(0, 1), expand=False)
        listing.add_column(no_wrap=True, justify="right", width=7)
        listing.add_column(overflow="fold")
        for finding in findings:
            severity = str(finding.get("severity", "info"))
            listing.add_row(
                Text(severity, style=colours.get(severity, "white")),
                Text.assemble((str(finding.get("code")), "bold"), " ", str(finding.get("message"))),
            )
        console.print(listing)

    stages = derive_stages(report)
    if stages:
        table = Table(
            title="Stages", title_justify="left", title_style="bold", box=None, pad_edge=False
        )
        for header, justify in (
            ("#", "right"),
            ("resolution", "left"),
            ("channels", "right"),
            ("stride", "right"),
            ("layers", "right"),
            ("params", "right"),
            ("MACs", "right"),
            ("field", "right"),
        ):
            table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for stage in stages:
            table.add_row(
                str(stage.get("index", "")),
                "x".join(str(d) for d in stage["resolution"])
                if stage.get("resolution")
                else "non-spatial",
                str(stage.get("channels") if stage.get("channels") is not None else ""),
                str(stage.get("effective_stride") or ""),
                str(stage.get("layer_count") or ""),
                format_count(stage.get("params")),
                format_count(stage.get("macs")),
                format_field(stage.get("receptive_field")),
            )
        head = stage_head(report)
        if head is not None:
            table.add_row(
                "head", "", "", "", str(head.get("layer_count") or ""),
                format_count(head.get("params")), format_count(head.get("macs")), "",
                style="dim",
            )
        console.print()
        console.print(table)

    flat = flatten_layers(report)
    console.print()
    console.print(layer_table(flat[:max_layers], width=console.width))
    if len(flat) > max_layers:
        console.print(
            f"[dim]... and {len(flat) - max_layers} more layers (use --json or --html)[/]"
        )
    from app.reports.html import coverage_notes

    for note in coverage_notes(report):
        console.print(f"[yellow]partial[/] {_escape(note)}")


def layer_table(layers: Sequence[Any], *, width: int = 80) -> Any:
    """The layer table as Keras's ``model.summary()`` lays it out, with convlens's columns.

    "Layer (type)" (the class under the name), "Output shape", "Param #" and "Connected to"
    (one input per line), plus the receptive field in pixels (one number when square) and, from
    :data:`WIDE_TERMINAL` columns on, the MACs (the stage table has them at any width). Shapes,
    counts and fields never wrap; names and inputs fold only past the width left to them, so
    the table fits ``width`` (80 columns in a plain terminal).
    """
    from rich.table import Table
    from rich.text import Text

    from app.reports.view import field_axes, format_count, format_shape, is_global_field

    rows = []
    for item in layers:
        layer = item.layer
        axes = field_axes(layer)
        indent = "  " * item.depth
        rows.append(
            (
                Text(indent + item.name) + Text(f"\n{indent}({item.class_name})", style="dim"),
                format_shape(layer.get("output_shape")),
                format_count(layer.get("params")),
                format_count(layer.get("macs")),
                "global" if is_global_field(layer) else _square_field(axes),
                Text("\n".join(str(name) for name in layer.get("inbound") or []), style="dim"),
            )
        )
    with_macs = width >= WIDE_TERMINAL
    fixed = [
        max([len(header)] + [len(str(row[index])) for row in rows])
        for index, header in ((1, "Output shape"), (2, "Param #"), (3, "MACs"), (4, "RF"))
    ]
    if not with_macs:
        fixed[2] = 0
    # One space between columns (no edges, collapsed padding).
    free = max(width - sum(fixed) - (5 if with_macs else 4), 24)
    longest_name = max([12] + [max(len(line) for line in row[0].plain.splitlines()) for row in rows])
    longest_input = max([12] + [len(line) for row in rows for line in row[5].plain.splitlines()])
    name_width = min(longest_name, max(free - min(longest_input, free // 2), free // 2))
    table = Table(
        title="Layers", title_justify="left", title_style="bold", box=None, pad_edge=False,
        collapse_padding=True, expand=False,
        caption="RF: receptive field in input pixels (one number when square)",
        caption_justify="left", caption_style="dim",
    )
    table.add_column("Layer (type)", overflow="fold", width=name_width)
    table.add_column("Output shape", no_wrap=True, min_width=fixed[0])
    table.add_column("Param #", justify="right", no_wrap=True, min_width=fixed[1])
    if with_macs:
        table.add_column("MACs", justify="right", no_wrap=True, min_width=fixed[2])
    table.add_column("RF", justify="right", no_wrap=True, min_width=fixed[3])
    table.add_column("Connected to", overflow="fold", width=max(free - name_width, 10))
    for row in rows:
        table.add_row(*(row if with_macs else row[:3] + row[4:]))
    return table


def _square_field(axes: Any) -> str:
    """A field as one number when every axis agrees (``483``), per axis otherwise (``5x3``).

    >>> _square_field([{"size": 7}, {"size": 7}]), _square_field([{"size": 5}, {"size": 3}])
    ('7', '5x3')
    """
    from app.reports.view import format_field, format_number

    if not axes:
        return ""
    sizes = {format_number(axis.get("size")) for axis in axes}
    return sizes.pop() if len(sizes) == 1 else format_field(axes)


def _shapes(shapes: Any) -> str:
    from app.reports.view import format_shape

    if isinstance(shapes, list) and len(shapes) == 1 and isinstance(shapes[0], list):
        return format_shape(shapes[0])
    return format_shape(shapes)


# -- analyze ----------------------------------------------------------------------------------


def analyze_file(path: Path, *, input_shape: Any = None, name: str | None = None) -> dict[str, Any]:
    """Ingest, check and analyse a model file exactly as the service does, in this process."""
    from app.config import get_settings
    from app.pipeline import analyse_file

    return analyse_file(path, input_shape=input_shape or None, name=name, settings=get_settings())


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
    input_shape: InputShapeOption = None,
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


def configured_server(settings: Any = None) -> str:
    """The base URL of the service configured on this machine: ``public_url`` when set, else
    ``http://<host>:<port>`` as ``convlens serve`` binds them (an any-address bind is reached
    on loopback).

    >>> from app.config import Settings
    >>> configured_server(Settings(port=8123))
    'http://127.0.0.1:8123'
    >>> configured_server(Settings(host="0.0.0.0", port=9000))
    'http://127.0.0.1:9000'
    >>> configured_server(Settings(public_url="https://convlens.internal/"))
    'https://convlens.internal'
    """
    if settings is None:
        from app.config import get_settings

        settings = get_settings()
    if settings.public_url:
        return str(settings.public_url).rstrip("/")
    host = str(settings.host)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - an any-address bind, reached on loopback
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _client(server: str, api_key: str | None, timeout: float) -> httpx.Client:
    import httpx

    headers = {"Accept": "application/json", "User-Agent": "convlens-cli"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)


def training_request(
    analysis_id: str,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    optimizer: str | None = None,
    learning_rate: float | None = None,
    overfit_check: bool | None = None,
) -> dict[str, Any]:
    """The ``POST /v1/training-runs`` body for a run of an analysed architecture.

    Options left out take the service's defaults (and its caps).

    >>> training_request("a1", steps=30, optimizer="sgd")
    {'analysis_id': 'a1', 'steps': 30, 'optimizer': 'sgd'}
    """
    body: dict[str, Any] = {"analysis_id": analysis_id}
    for key, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("optimizer", optimizer),
        ("learning_rate", learning_rate),
        ("overfit_check", overfit_check),
    ):
        if value is not None:
            body[key] = value
    return body


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
        str | None,
        typer.Option(
            envvar="CONVLENS_SERVER",
            help=(
                "Base URL of the convlens service [default: the configured one: "
                "CONVLENS_PUBLIC_URL, else http://CONVLENS_HOST:CONVLENS_PORT, "
                "http://127.0.0.1:8000 unless set]"
            ),
            show_default=False,
        ),
    ] = None,
    measure_gradients: Annotated[
        bool,
        typer.Option(
            "--measure-gradients", help="Also measure gradient flow with TensorFlow (a queued job)"
        ),
    ] = False,
    train: Annotated[
        bool,
        typer.Option(
            "--train",
            help=(
                "Start a short training run after the analysis. After its steps the run checks "
                "that the model can overfit one batch (a timed phase of its own, shown by the "
                "progress bar; --no-overfit-check skips it)"
            ),
        ),
    ] = False,
    overfit_check: Annotated[
        bool | None,
        typer.Option(
            "--overfit-check/--no-overfit-check",
            help="With --train: run (default) or skip the overfit-one-batch check",
            show_default=False,
        ),
    ] = None,
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
    input_shape: InputShapeOption = None,
    name: Annotated[str | None, typer.Option(help="Name of the analysis")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="CONVLENS_API_KEY", help="API key (Authorization: Bearer)")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the final JSON instead of tables")
    ] = False,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream/--no-stream",
            help="Follow a training run on its event stream (else poll its status)",
        ),
    ] = True,
    poll_interval: Annotated[float, typer.Option(help="Seconds between status polls")] = 0.5,
    wait_timeout: Annotated[
        float, typer.Option(help="Give up waiting after this many seconds")
    ] = 3600.0,
) -> None:
    """Upload a model to a convlens service, follow its jobs with a progress bar, print it.

    The exit code is 1 when the analysis or the training run fails or is cancelled.
    """
    import httpx

    from app.reports.follow import (
        TERMINAL_STATUSES,
        check_response,
        follow_analysis,
        follow_training,
    )

    shape = parse_input_shape(input_shape)
    server = server or configured_server()
    console = _console(stderr=json_output)
    errors = _console(stderr=True)
    training_run: dict[str, Any] | None = None
    try:
        with _client(server, api_key, timeout=120.0) as client:
            data: dict[str, str] = {"measure_gradients": "true" if measure_gradients else "false"}
            if shape is not None:
                data["input_shape"] = json.dumps(shape)
            if name:
                data["name"] = name
            with file.open("rb") as handle:
                created = check_response(
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
                analysis = follow_analysis(
                    client,
                    created,
                    console=console,
                    poll_s=poll_interval,
                    timeout_s=wait_timeout,
                )
            if analysis.get("status") != "succeeded":
                raise DomainError(
                    f"the analysis {analysis.get('status')}: "
                    f"{(analysis.get('error') or {}).get('detail', 'no detail')}",
                    code="job_failed",
                    status=500,
                )
            if train:
                started = check_response(
                    client.post(
                        "/v1/training-runs",
                        json=training_request(
                            analysis_id,
                            steps=steps,
                            batch_size=batch_size,
                            optimizer=optimizer,
                            learning_rate=learning_rate,
                            overfit_check=overfit_check,
                        ),
                    )
                )
                console.print(
                    f"training run [bold]{started['id']}[/] {started.get('status')} "
                    f"({_run_parameters(started)})"
                )
                try:
                    training_run = follow_training(
                        client,
                        started,
                        console=console,
                        poll_s=poll_interval,
                        timeout_s=wait_timeout,
                        stream=stream,
                    )
                except KeyboardInterrupt:
                    run_url = f"{server.rstrip('/')}/v1/training-runs/{started['id']}"
                    errors.print(
                        f"\nstopped following; the run goes on on the server: {_escape(run_url)} "
                        f"(stop it with POST {_escape(run_url)}/cancel)",
                        soft_wrap=True,
                    )
                    raise typer.Exit(code=130) from None
    except httpx.HTTPError as exc:
        errors.print(f"[bold red]error[/]: could not talk to {_escape(server)}: {_escape(exc)}")
        raise typer.Exit(code=1) from None
    except DomainError as error:
        raise _fail(errors, error) from None

    run_ok = training_run is None or training_run.get("status") == "succeeded"
    if json_output:
        sys.stdout.write(
            json.dumps({"analysis": analysis, "training_run": training_run}, indent=2) + "\n"
        )
    else:
        report = analysis.get("report")
        if isinstance(report, Mapping):
            print_report(report, console)
            print_measured_gradients(report, console)
        if training_run is not None:
            print_training_run(training_run, console)
        console.print(
            f"\nreport: {_escape(server.rstrip('/'))}/v1/analyses/{analysis_id}/report.html"
        )
    if not run_ok:
        raise typer.Exit(code=1)


def _run_parameters(run: Mapping[str, Any]) -> str:
    params = run.get("parameters") if isinstance(run.get("parameters"), Mapping) else {}
    assert isinstance(params, Mapping)
    parts = [
        f"{params.get('steps', '?')} steps",
        f"batch {params.get('batch_size', '?')}",
        str(params.get("optimizer", "?")),
    ]
    if params.get("learning_rate") is not None:
        parts.append(f"lr {params['learning_rate']:g}")
    if params.get("input_shape"):
        parts.append("input " + "x".join(str(d) for d in params["input_shape"]))
    parts.append(f"{params.get('dataset', 'synthetic')} data")
    return ", ".join(parts)


# -- printing results of jobs -----------------------------------------------------------------


def print_measured_gradients(report: Mapping[str, Any], console: Console) -> None:
    """The measured gradient flow and its skip ablation, when the report has them."""
    measured = (report.get("gradient_flow") or {}).get("measured")
    if not isinstance(measured, Mapping):
        return
    console.print()
    if measured.get("status") == "failed":
        console.print(
            f"[bold]Measured gradients[/]: [red]failed[/] {_escape(measured.get('reason'))}"
        )
        return
    console.print(f"[bold]Measured gradients[/]: {_escape(measured.get('summary') or '')}")
    ablation = measured.get("skip_ablation")
    if isinstance(ablation, Mapping) and ablation.get("summary"):
        console.print(f"  skip ablation: {_escape(ablation['summary'])}")


SPARK_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[Any], width: int = 48) -> str:
    """The values as a line of block characters, averaged down to ``width`` columns.

    >>> sparkline([3.0, 2.0, 1.0, 0.0], width=4)
    '█▆▃▁'
    """
    finite = [float(v) for v in values if isinstance(v, int | float) and v == v]
    if not finite:
        return ""
    columns = min(width, len(finite))
    means = []
    for column in range(columns):
        chunk = finite[column * len(finite) // columns : (column + 1) * len(finite) // columns]
        means.append(sum(chunk) / len(chunk))
    low, high = min(means), max(means)
    span = (high - low) or 1.0
    return "".join(SPARK_BARS[round((m - low) / span * (len(SPARK_BARS) - 1))] for m in means)


def training_lines(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows that say how a finished training run went, from its result's verdict.

    >>> rows = training_lines({"status": "succeeded", "result": {"verdict": {
    ...     "loss_initial": 2.3, "loss_final": 0.7, "loss_relative_change": -0.7,
    ...     "loss_decreased": True, "overfit_one_batch_passed": True,
    ...     "overfit_one_batch": {"passed": True, "steps": 50, "factor": 120.0,
    ...                           "required_factor": 10.0}}}})
    >>> dict(rows)["loss"], dict(rows)["overfit one batch"]
    ('2.3 -> 0.7 (-70%), decreased', 'passed: loss down 120x in 50 steps (10x needed)')
    """
    result = run.get("result") if isinstance(run.get("result"), Mapping) else {}
    assert isinstance(result, Mapping)
    verdict = result.get("verdict") if isinstance(result.get("verdict"), Mapping) else {}
    assert isinstance(verdict, Mapping)
    rows: list[tuple[str, str]] = []
    if result.get("steps_completed") is not None:
        params = result.get("params") if isinstance(result.get("params"), Mapping) else {}
        assert isinstance(params, Mapping)
        text = f"{result['steps_completed']} of {params.get('steps', '?')} steps"
        if isinstance(result.get("train_elapsed_s"), int | float):
            text += f" in {result['train_elapsed_s']:.3g} s"
        if result.get("device"):
            text += f" on {str(result['device']).upper()}"
        if isinstance(result.get("samples_per_s"), int | float):
            text += f", {result['samples_per_s']:,.0f} samples/s"
        if result.get("status") not in (None, "completed"):
            text += f" (stopped: {str(result['status']).replace('_', ' ')})"
        rows.append(("steps", text))
    initial, final = verdict.get("loss_initial"), verdict.get("loss_final")
    if isinstance(initial, int | float) and isinstance(final, int | float):
        text = f"{initial:.4g} -> {final:.4g}"
        relative = verdict.get("loss_relative_change")
        if isinstance(relative, int | float):
            text += f" ({relative:+.0%})"
        text += ", decreased" if verdict.get("loss_decreased") else ", did not decrease"
        rows.append(("loss", text))
    history = result.get("history") if isinstance(result.get("history"), Mapping) else {}
    assert isinstance(history, Mapping)
    curve = sparkline(history.get("loss") or [])
    if curve:
        rows.append(("loss curve", curve))
    overfit = verdict.get("overfit_one_batch")
    if isinstance(overfit, Mapping) and "passed" in overfit:
        passed = overfit.get("passed")
        factor = overfit.get("factor")
        factor_text = f"{factor:.3g}x" if isinstance(factor, int | float) else "?"
        needed = overfit.get("required_factor")
        needed_text = f" ({needed:g}x needed)" if isinstance(needed, int | float) else ""
        if passed is True:
            text = f"passed: loss down {factor_text} in {overfit.get('steps')} steps{needed_text}"
        elif passed is False:
            text = (
                f"failed: loss down only {factor_text} in {overfit.get('steps')} steps{needed_text}"
            )
        else:
            text = f"not checked ({overfit.get('reason') or 'no reason given'})"
        rows.append(("overfit one batch", text))
    health = [h for h in verdict.get("gradient_health") or [] if isinstance(h, Mapping)]
    overall = verdict.get("gradient_health_overall")
    if overall or health:
        ratios = [
            f"{h['first_to_last_ratio']:.3g} at step {h.get('step')}"
            for h in health
            if isinstance(h.get("first_to_last_ratio"), int | float)
        ]
        text = str(overall or "no verdict")
        if ratios:
            shown = ratios if len(ratios) <= 4 else [*ratios[:2], "...", *ratios[-2:]]
            text += f"; first-to-last layer gradient ratio {', '.join(shown)}"
        rows.append(("gradient health", text))
    dead = verdict.get("max_dead_fraction")
    if isinstance(dead, int | float):
        rows.append(("dead ReLU units", f"at most {dead:.0%} of a layer's units"))
    return rows


def print_training_run(run: Mapping[str, Any], console: Console) -> None:
    """The outcome of a training run: loss change, overfit-one-batch, gradient health."""
    from rich.table import Table

    status = str(run.get("status"))
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(status, "white")
    console.print()
    console.print(f"[bold]Training run[/] {_escape(run.get('id'))}: [{colour}]{_escape(status)}[/]")
    rows = training_lines(run)
    if rows:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim")
        grid.add_column()
        for label, text in rows:
            grid.add_row(label, _escape(text))
        console.print(grid)
    result = run.get("result") if isinstance(run.get("result"), Mapping) else {}
    verdict = (result or {}).get("verdict")
    if isinstance(verdict, Mapping) and verdict.get("summary"):
        console.print(_escape(verdict["summary"]))
    error = run.get("error")
    if isinstance(error, Mapping):
        console.print(
            f"[red]{_escape(error.get('detail') or error.get('title') or 'failed')}[/]"
            + (f" [dim]({_escape(error['code'])})[/]" if error.get("code") else "")
        )
