"""The HTML report: self-contained, complete, and safe with hostile layer names."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from app.reports.html import render_report_html
from tests.analysis.builders import sequential
from tests.reports.conftest import engine_report, rename_layer, seed_config, seed_expected


class Collector(HTMLParser):
    """Tags with their attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Collector:
    collector = Collector()
    collector.feed(page)
    return collector


def external_references(collector: Collector) -> list[str]:
    found = []
    for _, attrs in collector.tags:
        for key in ("src", "href", "xlink:href", "action", "data"):
            value = attrs.get(key) or ""
            if re.match(r"\s*(https?:)?//", value, re.IGNORECASE):
                found.append(value)
    return found


def test_report_page_is_self_contained_and_shows_every_part(seed_reports):
    report = seed_reports[3]
    page = render_report_html(report)
    collector = parse(page)
    assert external_references(collector) == []
    tags = [tag for tag, _ in collector.tags]
    assert "script" not in tags
    assert not any(
        tag == "link" and attrs.get("rel") == "stylesheet" for tag, attrs in collector.tags
    )
    ids = {attrs.get("id") for _, attrs in collector.tags}
    assert {"summary", "findings", "stages", "plots", "graph", "layers"} <= ids
    assert {"plot-receptive_field", "plot-params_macs", "architecture-graph"} <= ids
    text = " ".join(collector.text)
    for layer in seed_expected(3)["layers"]:
        assert layer["name"] in text
    assert "57,034" in text  # Keras's count_params for the seed's Example 3
    for finding in report.get("findings") or []:
        assert finding["message"].split()[0] in text


def test_hostile_layer_name_is_escaped_everywhere():
    hostile = "<script>alert(1)</script>"
    report = engine_report(rename_layer(seed_config(3), "conv2d_3", hostile))
    assert any(layer["name"] == hostile for layer in report["layers"])
    page = render_report_html(report)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    collector = parse(page)
    assert hostile in " ".join(collector.text)  # shown as text, not run


def test_training_section_appears_with_a_run(seed_reports):
    records = [{"step": i + 1, "loss": 2.0 / (i + 1), "accuracy": i / 10} for i in range(10)]
    page = render_report_html(
        seed_reports[1], training=records, training_summary={"status": "succeeded"}
    )
    collector = parse(page)
    ids = {attrs.get("id") for _, attrs in collector.tags}
    assert {"training", "plot-training"} <= ids
    assert (
        "The training run (succeeded): 10 steps drawn; loss 2 at the first step, 0.2 at the latest."
        in " ".join(collector.text)
    )


def test_plot_links_point_to_the_standalone_plots(seed_reports):
    page = render_report_html(seed_reports[1], plot_links="/v1/analyses/abc/plots")
    assert 'href="/v1/analyses/abc/plots/receptive_field.svg"' in page
    assert 'href="/v1/analyses/abc/plots/params_macs.png"' in page


def _run_row(run_id, status, *, parameters=None, detail=None, result=None):
    from datetime import datetime
    from types import SimpleNamespace

    return SimpleNamespace(id=run_id, status=status, architecture_id="arch", parent_id=None,
                           parameters={"steps": 30, "batch_size": 8, "optimizer": "adam",
                                       "analysis_id": "a1", **(parameters or {})},
                           progress_detail=detail, result=result, error=None,
                           created_at=datetime(2026, 1, 2, 3, 4))


def test_runs_table_tells_the_overfit_check_its_duration_and_the_attempts(seed_reports):
    """The overfit-one-batch check is optional and timed: the runs table shows its verdict and
    how long it took, 'skipped' when the run was asked not to; a run waiting for a retry says
    which attempt comes; a finished run names how many attempts it took."""
    from app.reports.training import run_summary

    verdict = {"loss_initial": 2.0, "loss_final": 0.5, "loss_relative_change": -0.75,
               "overfit_one_batch_passed": True,
               "overfit_one_batch": {"passed": True, "steps": 50, "duration_s": 12.34}}
    runs = [
        run_summary(_run_row("checked-run", "succeeded", result={
            "verdict": verdict, "overfit_check_s": 12.34, "steps_completed": 30,
            "attempts": [{"attempt": 1, "outcome": "lost"}, {"attempt": 2, "outcome": "succeeded"}]})),
        run_summary(_run_row("skipped-run", "succeeded", parameters={"overfit_check": False},
                             result={"verdict": {**verdict, "overfit_one_batch_passed": None,
                                                 "overfit_one_batch": {}}})),
        run_summary(_run_row("retry-run", "queued", detail={
            "phase": "retrying", "message": "retrying (attempt 2 after worker lost)"})),
        run_summary(_run_row("check-run", "running", detail={"phase": "overfit_check",
                                                             "steps_done": 30})),
    ]
    assert [run["overfit"] for run in runs] == ["passed", "skipped", "", ""]
    assert runs[0]["overfit_s"] == "12.3 s"
    page = render_report_html(seed_reports[1], training_runs=runs,
                              training_summary={**runs[0], "own": True})
    table = page.split('id="training-runs"', 1)[1].split("</table>", 1)[0]
    rows = {row.split('title="', 1)[1].split('"', 1)[0]: " ".join(" ".join(parse("<tr" + row).text).split())
            for row in table.split("<tr")[2:]}
    assert "passed 12.3 s" in rows["checked-run"] and "after 2 attempts" in rows["checked-run"]
    assert "skipped" in rows["skipped-run"]
    assert "retrying (attempt 2 after worker lost)" in rows["retry-run"]
    assert "overfit-one-batch check" in rows["check-run"]


def _card_text(page: str) -> str:
    match = re.search(r'id="card-gradients".*?</div></div>', page, re.DOTALL)
    assert match, "no gradient card"
    return " ".join(" ".join(parse(match.group(0)).text).split())


def test_gradient_card_shows_predicted_and_measured_and_says_when_they_disagree():
    from app.analysis.gradient_flow import attach_measurement
    from tests.fixtures.load import small_fixtures

    report = engine_report(small_fixtures("gradient")["plain20_sigmoid"].config())
    before = _card_text(render_report_html(report))
    assert "predicted VANISHING".lower() in before.lower() and "not yet" in before
    names = list(report["gradient_flow"]["predicted"]["per_layer"])
    measured = {"status": "measured", "verdict": None, "non_finite_gradients": False,
                "per_layer": {name: 1.0 for name in names}, "ratio": None}
    page = render_report_html(attach_measurement(report, measured))
    card = _card_text(page)
    assert "predicted vanishing measured healthy" in card.lower()
    assert "contradicts the prediction" in card and "trust the measurement" in card
    # the finding that stated the prediction is marked, once
    assert page.count("contradicted by measurement") == 1
    assert "The measurement contradicts this" in page
    agreeing = {name: value for name, value in
                report["gradient_flow"]["predicted"]["per_layer"].items()}
    card = _card_text(render_report_html(attach_measurement(
        report, dict(measured, per_layer=agreeing))))
    assert "predicted vanishing measured vanishing" in card.lower()
    assert "agrees with the prediction" in card


def _lead(report: dict) -> str:
    """The page's headline (its first lead paragraph), as the reader sees it."""
    match = re.search(r'<p class="lead">(.*?)</p>', render_report_html(report), re.S)
    assert match
    return " ".join(match.group(1).split())


def test_headline_gives_the_units_own_fields_after_upsampling_where_they_differ():
    """A stride-2 convolution of kernel 3, then a 2x transposed convolution of kernel 3 and a
    3x3 convolution: neighbouring units see 5 or 7 pixels per axis, in a 7-wide envelope."""
    report = engine_report(sequential([
        ("Conv2D", {"filters": 1, "kernel_size": 3, "strides": 2}),
        ("Conv2DTranspose", {"filters": 1, "kernel_size": 3, "strides": 2}),
        ("Conv2D", {"filters": 1, "kernel_size": 3}),
    ], (33, 33, 1)))
    assert [axis["unit_sizes"] for axis in report["receptive_field"]["axes"]] == [[5, 7], [5, 7]]
    assert (
        "Units of the last feature map (l2) see 5x5 to 7x7 input pixels, up to 21% of the input, "
        "and neighbouring units are 1x1 pixels apart." in _lead(report)
    )
    assert "Each unit" not in _lead(report)


def test_headline_after_upsampling_where_every_unit_sees_the_same_field():
    """A 3x3 convolution of stride 1, then 2x upsampling: every unit sees 3 pixels per axis
    (its envelope, 3.5 wide at stride 0.5, holds two neighbours' fields)."""
    report = engine_report(sequential([
        ("Conv2D", {"filters": 1, "kernel_size": 3, "padding": "same"}),
        ("UpSampling2D", {"size": 2}),
    ], (33, 33, 1)))
    axes = report["receptive_field"]["axes"]
    assert [(axis["size"], axis["unit_sizes"]) for axis in axes] == [(3.5, [3, 3]), (3.5, [3, 3])]
    assert (
        "Each unit of the last feature map (l1) sees 3x3 input pixels, 9.1% of the input, "
        "and neighbouring units are 0.5x0.5 pixels apart." in _lead(report)
    )


def test_headline_without_upsampling_is_the_field_itself():
    report = engine_report(sequential([
        ("Conv2D", {"filters": 1, "kernel_size": 3, "strides": 2}),
        ("Conv2D", {"filters": 1, "kernel_size": 3}),
    ], (33, 33, 1)))
    assert "unit_sizes" not in report["receptive_field"]["axes"][0]
    assert (
        "Each unit of the last feature map (l1) sees 7x7 input pixels, 21% of the input, "
        "and neighbouring units are 2x2 pixels apart." in _lead(report)
    )
