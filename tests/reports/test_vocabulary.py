"""One vocabulary across the report's sections, on the seed's examples and the Keras
Applications models: the stages finding, the page's stage table and layer table, the terminal,
the plots and the graph blocks name the same stages, with the same indices; the findings, the
predicted gradient flow and the graph drawing count the same skip connections; the top-level
depth is the first weighted layer's depth_to_output."""

from __future__ import annotations

import re

import pytest

from app.analysis import analyze
from app.reports.graph import draw_graph, draw_stages
from app.reports.html import layer_rows, render_report_html
from app.reports.view import derive_stages, stage_head, stage_of_layers
from tests.fixtures.load import FIXTURES_DIR, load_config

MODELS = [FIXTURES_DIR / "seed" / f"example{n}.json" for n in (1, 2, 3)] + [
    FIXTURES_DIR / "applications" / f"{stem}.json.gz"
    for stem in ("resnet50", "vgg16", "inceptionv3", "mobilenetv2", "efficientnetb0",
                 "densenet121", "nasnetmobile", "convnexttiny", "xception", "inceptionresnetv2")
]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name.split(".")[0])
def test_stage_indices_agree_across_sections(path):
    report = analyze(load_config(path))
    finding = next(f for f in report["findings"] if f["code"] == "stages")
    stages = finding["details"]["stages"]
    count = int(re.match(r"(\d+) stages? between", finding["message"]).group(1))
    assert count == len(stages) == len(derive_stages(report))
    assert [s["index"] for s in stages] == list(range(1, count + 1))
    for stage in stages:
        assert f"stage {stage['index']} " in finding["message"]
        assert set(stage["downsampling_layers"]) <= set(stage["layers"])
        assert stage["layer_count"] == len(stage["layers"])
    # every top-level layer in exactly one stage or in the head
    owner = stage_of_layers(report)
    names = [layer["name"] for layer in report["layers"]]
    listed = [name for stage in stages for name in stage["layers"]]
    head = stage_head(report)
    listed += head["layers"] if head else []
    assert len(listed) == len(set(listed)) == len(owner)
    assert set(names) <= set(listed)
    # (the graph also holds nodes Keras leaves out of model.layers: a Sequential model's
    # input layer, Keras 3 ops; they belong to stages too)
    # the page's layer table carries the same index per layer
    rows = {row["name"]: row["stage"] for row in layer_rows(report)}
    for name in names:
        assert rows[name] == ("head" if owner[name] == 0 else str(owner[name]))
    # the graph's blocks (drawn for large models) are the same stages, then the head
    blocks = [part.index for part in draw_stages(report)]
    assert blocks == [s["index"] for s in stages] + ([None] if head else [])
    # the page's stage table lists the derived stages with the finding's numbers
    for derived, stage in zip(derive_stages(report), stages, strict=True):
        assert derived["index"] == stage["index"]
        assert derived["layer_count"] == stage["layer_count"]
        assert derived["channels"] == stage["channels_out"]
        assert derived["params"] == stage["params"]


#: Skip connections by what Keras builds (residual merges, dense concatenations).
SKIPS = {"example1": 0, "example2": 0, "example3": 2, "resnet50": 16, "vgg16": 0, "inceptionv3": 0,
         "mobilenetv2": 10, "efficientnetb0": 9, "densenet121": 58, "nasnetmobile": 96,
         "convnexttiny": 18, "xception": 12, "inceptionresnetv2": 40}


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name.split(".")[0])
def test_skip_counts_and_depths_agree_across_sections(path):
    stem = path.name.split(".")[0]
    report = analyze(load_config(path))
    predicted = report["gradient_flow"]["predicted"]
    by_code = {f["code"]: f for f in report["findings"]}
    skip_findings = [by_code[c] for c in ("residual_connections", "dense_connections") if c in by_code]
    # the predicted gradient flow counts the network's skip connections, as the findings do
    assert predicted["skip_connections"] == SKIPS[stem]
    assert sum(f["details"]["merges"] for f in skip_findings) == SKIPS[stem]
    merges = [name for f in skip_findings for name in f["layers"]]
    assert len(merges) == len(set(merges)) == SKIPS[stem]
    # the graph drawing's dashed shortcuts end at those merges; its caption gives the count
    drawing = draw_graph(report)
    box_of = {name: node for node in drawing.nodes for name in node.layers}
    merge_boxes = {box_of[name].id for name in merges if name in box_of}
    dashed = [edge for edge in drawing.edges if edge.skip]
    assert len(dashed) <= SKIPS[stem]
    assert {edge.target_node for edge in dashed} <= merge_boxes
    page = render_report_html(report)
    assert re.findall(r", (\d+) skip connections?\b", page) == ([str(SKIPS[stem])] if SKIPS[stem] else [])
    # one depth: the top-level depth is the first weighted layer's depth_to_output, and the
    # findings quote it
    first = next(entry for entry in predicted["layers"] if entry["name"] == predicted["first_layer"])
    assert predicted["depth"] == first["depth_to_output"]
    assert first["depth_to_output"]["longest"] == max(
        entry["depth_to_output"]["longest"] for entry in predicted["layers"] if entry["depth_to_output"])
    for finding in skip_findings:
        assert finding["details"]["shortest_path"] == predicted["depth"]["shortest"]
        assert finding["details"]["longest_path"] == predicted["depth"]["longest"]
