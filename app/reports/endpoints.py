"""HTTP routes for the human-facing views of an analysis: the HTML report, plots, comparisons.

- ``GET /v1/analyses/{id}/report.html``: the self-contained report page;
- ``GET /v1/analyses/{id}/plots/{name}.svg|.png``: one plot (``receptive_field``,
  ``params_macs``, ``gradient_flow``, ``training``);
- ``GET /v1/analyses/{a}/compare/{b}``: the comparison as JSON, or as a page with
  ``?format=html`` or ``Accept: text/html``.

Rendering is CPU work (matplotlib): each route is one thread hop that reads what it
needs in a unit of work, closes it, and renders without holding a database connection.
Pages carry a Content-Security-Policy that allows no
scripts and no network loads: they need none.

Example::

    curl -o report.html http://127.0.0.1:8000/v1/analyses/$ID/report.html
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.analyses import repository, service
from app.analysis.gradient_flow import attach_measurement
from app.api.deps import RequestScope, ScopeDep, TenantDep
from app.api.docs import problem_responses
from app.errors import Conflict, NotFound
from app.models import Job
from app.training import repository as training_runs

router = APIRouter(prefix="/v1/analyses", tags=["reports"])

PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {"svg": "image/svg+xml", "png": "image/png"}


def _report_of(session: Any, tenant_id: str, analysis_id: str) -> tuple[Job, dict[str, Any]]:
    """The analysis row and its report, with measured gradients merged in when a job has them."""
    analysis, report, _ = _report_and_revision(session, tenant_id, analysis_id)
    return analysis, report


def _report_and_revision(
    session: Any, tenant_id: str, analysis_id: str
) -> tuple[Job, dict[str, Any], tuple[Any, ...]]:
    """As :func:`_report_of`, plus what identifies this version of the report: the row's
    update time and status, and the measured-gradients job merged in (a measurement arriving
    changes it, so cached renderings of the older version are not served)."""
    analysis = service.get(session, tenant_id, analysis_id)
    if not isinstance(analysis.result, Mapping):
        raise Conflict(
            f"Analysis '{analysis_id}' has no report yet (status {analysis.status}). "
            "Poll GET /v1/analyses/{id} until it has succeeded."
        )
    report = dict(analysis.result)
    flow = dict(report.get("gradient_flow") or {})
    revision: tuple[Any, ...] = (str(analysis.updated_at), analysis.status)
    if flow.get("measured") is None:
        child = repository.latest_child(session, analysis.id, "gradients")
        if child is not None and child.status == "succeeded" and isinstance(child.result, Mapping):
            measured = child.result.get("measured", child.result)
            report = attach_measurement(report, measured)
            revision += (child.id, str(child.updated_at))
    return analysis, report, revision


def _training_revision(
    records: list[dict[str, Any]], summary: Mapping[str, Any] | None, runs: list[dict[str, Any]]
) -> tuple[Any, ...]:
    """What identifies the training part of a page: the runs listed and the steps drawn."""
    listed = tuple(
        (run.get("id"), run.get("status"), run.get("steps_done"), run.get("updated_at"))
        for run in runs
    )
    last = records[-1] if records else None
    return (listed, len(records), repr(last), (summary or {}).get("id"))


def _training_of(
    session: Any, analysis: Job
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[dict[str, Any]]]:
    """The curves of the newest training run of an analysis, its summary, and the runs listed.

    The runs are the analysis's own (``parameters.analysis_id``); when it has none, the
    runs of the same architecture. The curves are those of the newest run with any steps:
    its result's history, or its step events while it runs.
    """
    from app.reports.training import run_records, run_summary, select_runs

    if analysis.architecture_id is None:
        return [], None, []
    candidates = training_runs.of_architecture(session, analysis.tenant_id, analysis.architecture_id)
    selection = select_runs(analysis.id, candidates)
    if not selection.runs:
        return [], None, []
    shown, records = selection.runs[0], []
    for run in selection.runs:
        records = run_records(run.result, _step_events(session, run))
        if records:
            shown = run
            break
    summary = run_summary(shown, steps_drawn=len(records))
    summary["own"] = selection.own
    listed = [run_summary(run) for run in selection.runs]
    return records, summary, listed


def _step_events(session: Any, run: Job) -> list[dict[str, Any]]:
    """The payloads of a run's ``step`` events (read only while the run has no history)."""
    if isinstance(run.result, Mapping) and isinstance(run.result.get("history"), Mapping):
        return []
    from app.jobs import repository as jobs

    payloads: list[dict[str, Any]] = []
    after = 0
    for _ in range(20):  # 500 events a page; runs are capped at a few thousand steps
        rows = jobs.events_after(session, run.id, after)
        if not rows:
            break
        after = rows[-1].seq
        payloads.extend(row.payload for row in rows if row.kind == "step")
    return payloads


@router.get(
    "/{analysis_id}/report.html",
    response_class=HTMLResponse,
    summary="The report as one self-contained HTML page",
    description=(
        "Summary, stages, findings in words, the layer table, plots (receptive field per layer "
        "against the input size, parameters and MACs per layer, gradient flow, training curves "
        "when a run exists) and a drawing of the architecture graph. No network assets: CSS and "
        "SVG are inline. Example: `curl -o report.html http://127.0.0.1:8000/v1/analyses/<id>/report.html`."
    ),
    responses={200: {"content": {"text/html": {}}}, **problem_responses(401, 404, 409)},
)
async def report_html(analysis_id: str, scope: ScopeDep, tenant_id: TenantDep) -> HTMLResponse:
    return await scope.call(_report_page, scope, tenant_id, analysis_id)


def _report_page(scope: RequestScope, tenant_id: str, analysis_id: str) -> HTMLResponse:
    from app.reports.cache import render_cache, revision
    from app.reports.html import render_report_html

    with scope.session() as session:  # closed before rendering
        analysis, report, version = _report_and_revision(session, tenant_id, analysis_id)
        records, summary, runs = _training_of(session, analysis)
    key = (
        analysis.id,
        revision(version, _training_revision(records, summary, runs)),
        "report.html",
    )

    def render() -> bytes:
        # Dated by the analysis, not the clock: every HTTP process renders the same bytes for
        # one revision (each keeps its own cache; a render at 10:59 and one at 11:00 differed).
        return render_report_html(
            report,
            training=records or None,
            training_summary=summary,
            training_runs=runs,
            analysis_id=analysis.id,
            plot_links=f"/v1/analyses/{analysis.id}/plots",
            generated_at=analysis.updated_at,
        ).encode("utf-8")

    page = render_cache().get_or_render(key, render)
    return HTMLResponse(page, headers=PAGE_SECURITY_HEADERS)


@router.get(
    "/{analysis_id}/plots/{filename}",
    summary="One plot of the report as SVG or PNG",
    description=(
        "`filename` is `<name>.svg` or `<name>.png` with name one of `receptive_field`, "
        "`params_macs`, `gradient_flow`, `training`. Example: "
        "`GET /v1/analyses/<id>/plots/receptive_field.svg`."
    ),
    responses={
        200: {"content": {"image/svg+xml": {}, "image/png": {}}},
        **problem_responses(400, 401, 404, 409),
    },
)
async def plot_file(
    analysis_id: str,
    scope: ScopeDep,
    tenant_id: TenantDep,
    filename: Annotated[str, Path(max_length=64, examples=["receptive_field.svg"])],
) -> Response:
    return await scope.call(_plot, scope, tenant_id, analysis_id, filename)


def _plot(scope: RequestScope, tenant_id: str, analysis_id: str, filename: str) -> Response:
    from app.reports.plots import PLOT_NAMES, render_plot

    name, dot, extension = filename.rpartition(".")
    if not dot or extension not in MEDIA_TYPES:
        raise NotFound(f"Plots are served as <name>.svg or <name>.png. Received: {filename!r}")
    if name not in PLOT_NAMES:
        raise NotFound(f"There is no plot called {name!r}; plots: {', '.join(PLOT_NAMES)}.")
    from app.reports.cache import render_cache, revision

    records: list[dict[str, Any]] = []
    training_version: tuple[Any, ...] = ()
    with scope.session() as session:  # closed before rendering
        analysis, report, version = _report_and_revision(session, tenant_id, analysis_id)
        if name == "training":
            records, summary, runs = _training_of(session, analysis)
            training_version = _training_revision(records, summary, runs)
    key = (analysis.id, revision(version, training_version), f"plot:{filename}")

    def render() -> bytes:
        plot = render_plot(name, report, training=records, formats=(extension,))
        return plot.svg.encode("utf-8") if extension == "svg" and plot.svg else plot.png or b""

    body = render_cache().get_or_render(key, render)
    return Response(
        body,
        media_type=MEDIA_TYPES[extension],
        headers={
            "Content-Disposition": f'inline; filename="{analysis.id}-{name}.{extension}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "Cache-Control": "no-cache",
        },
    )


def _wants_html(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


@router.get(
    "/{analysis_id}/compare/{other_id}",
    summary="Compare two analyses (JSON, or HTML with ?format=html)",
    description=(
        "Differences in receptive fields, parameters, MACs, stages and findings, layers aligned "
        "side by side, and an explanation in words. JSON by default; an HTML page with "
        "`?format=html` or `Accept: text/html`. Example: "
        "`GET /v1/analyses/<a>/compare/<b>?format=html`."
    ),
    responses={
        200: {"content": {"application/json": {}, "text/html": {}}},
        **problem_responses(401, 404, 409, 422),
    },
)
async def compare(
    analysis_id: str,
    other_id: str,
    request: Request,
    scope: ScopeDep,
    tenant_id: TenantDep,
    format: Annotated[
        Literal["json", "html"] | None,
        Query(  # noqa: A002 - the public name
            description="json (default) or html"
        ),
    ] = None,
) -> Response:
    return await scope.call(_compare, scope, tenant_id, analysis_id, other_id, _wants_html(request, format))


def _compare(scope: RequestScope, tenant_id: str, analysis_id: str, other_id: str, html: bool) -> Response:
    from app.reports.compare import compare_reports, render_comparison_html

    with scope.session() as session:
        first, report_a = _report_of(session, tenant_id, analysis_id)
        second, report_b = _report_of(session, tenant_id, other_id)
    label_a = first.name or str(report_a.get("model_name") or first.id)
    label_b = second.name or str(report_b.get("model_name") or second.id)
    comparison = compare_reports(report_a, report_b, label_a=label_a, label_b=label_b)
    comparison["a"]["analysis_id"] = first.id
    comparison["b"]["analysis_id"] = second.id
    if html:
        page = render_comparison_html(report_a, report_b, comparison=comparison)
        return HTMLResponse(page, headers=PAGE_SECURITY_HEADERS)
    return JSONResponse(comparison)


@router.get(
    "/{analysis_id}/misaligned",
    summary="Every misaligned branch pair of an analysis (the report states the worst)",
    description=(
        "The report bounds the misaligned-branch detail: each field says how many pairs it "
        "carries and names the worst three, and `receptive_field.misaligned` lists the merges "
        "where pairs first meet with their worst pairs. This route recomputes the analysis from "
        "its stored architecture and lists, for every such merge, all of its pairs, worst "
        "(largest offset between field centres, in input pixels) first. Example: "
        "`GET /v1/analyses/<id>/misaligned`."
    ),
    responses={200: {"content": {"application/json": {}}}, **problem_responses(401, 404, 409)},
)
async def misaligned_pairs(analysis_id: str, scope: ScopeDep, tenant_id: TenantDep) -> JSONResponse:
    return await scope.call(_misaligned, scope, tenant_id, analysis_id)


def _misaligned(scope: RequestScope, tenant_id: str, analysis_id: str) -> JSONResponse:
    from app.analysis import analyze_graph, build_graph
    from app.analysis.fields import misaligned_summary
    from app.architectures import service as architectures

    with scope.session() as session:  # closed before the analysis is recomputed
        analysis, _ = _report_of(session, tenant_id, analysis_id)
        if analysis.architecture_id is None:
            raise Conflict(f"Analysis '{analysis_id}' has no stored architecture to recompute.")
        architecture = architectures.get(session, tenant_id, analysis.architecture_id)
    input_shape = (analysis.parameters or {}).get("input_shape")
    result = analyze_graph(build_graph(architecture.config), input_shape=input_shape)
    merges = misaligned_summary(result, full=True)
    return JSONResponse(
        {
            "analysis_id": analysis.id,
            "merges": merges,
            "pair_count": sum(merge["pair_count"] for merge in merges),
        }
    )
