"""The architecture drawing: every layer and connection drawn, skip connections flagged."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from app.reports.graph import NODE_HEIGHT, NODE_WIDTH, draw_graph
from tests.reports.conftest import engine_report, rename_layer, seed_config, seed_expected

SVG = "{http://www.w3.org/2000/svg}"


def _report_edges(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (str(source), layer["name"])
        for layer in report["layers"]
        for source in layer.get("inbound") or []
    }


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_example3_draws_every_layer_and_edge_and_flags_the_two_shortcuts(seed_reports):
    report = seed_reports[3]
    drawing = draw_graph(report, collapse=False)
    root = _parse(drawing.svg)

    keras_names = [layer["name"] for layer in seed_expected(3)["layers"]]
    drawn = [
        g.get("data-layer")
        for g in root.iter(f"{SVG}g")
        if "node" in (g.get("class") or "").split()
    ]
    assert sorted(drawn) == sorted(keras_names)

    drawn_edges = {
        (g.get("data-source"), g.get("data-target")): g.get("data-kind")
        for g in root.iter(f"{SVG}g")
        if "edge" in (g.get("class") or "").split()
    }
    assert set(drawn_edges) == _report_edges(report)
    # The seed's residual_block adds the block input to the second convolution's output:
    # the block inputs are conv2d (first block) and add (second block).
    skips = {edge for edge, kind in drawn_edges.items() if kind == "skip"}
    assert skips == {("conv2d", "add"), ("add", "add_1")}


def test_sequential_example_is_a_straight_chain_without_skips(seed_reports):
    drawing = draw_graph(seed_reports[1])
    assert not any(edge.skip for edge in drawing.edges)
    xs = {round(node.x) for node in drawing.nodes}
    assert len(xs) == 1, "a chain is drawn in one column"
    assert [node.rank for node in drawing.nodes] == list(range(len(drawing.nodes)))


def test_layout_has_edges_pointing_down_and_no_overlapping_boxes(seed_reports, resnet50_report):
    for report in (seed_reports[3], resnet50_report):
        drawing = draw_graph(report)
        by_id = {node.id: node for node in drawing.nodes}
        for edge in drawing.edges:
            assert by_id[edge.target_node].y > by_id[edge.source_node].y
        for a in drawing.nodes:
            for b in drawing.nodes:
                if a is not b and a.rank == b.rank:
                    assert abs(a.x - b.x) >= NODE_WIDTH, (a.layers, b.layers)
        assert all(0 <= node.x <= drawing.width - NODE_WIDTH for node in drawing.nodes)
        assert all(0 <= node.y <= drawing.height - NODE_HEIGHT for node in drawing.nodes)


def test_resnet50_is_collapsed_but_keeps_every_layer_and_its_12_identity_shortcuts(resnet50_report):
    drawing = draw_graph(resnet50_report)
    names = [layer["name"] for layer in resnet50_report["layers"]]
    assert drawing.collapsed
    assert sorted(drawing.layer_names) == sorted(names)
    assert len(drawing.nodes) < len(names) / 2
    # ResNet50: 16 bottleneck blocks, 4 with a projection shortcut and 12 with an identity one.
    assert sum(edge.skip for edge in drawing.edges) == 12
    # Every box-to-box edge is a real layer-to-layer connection of the model.
    assert {(edge.source, edge.target) for edge in drawing.edges} <= _report_edges(resnet50_report)
    root = _parse(drawing.svg)
    titles = " ".join(t.text or "" for t in root.iter(f"{SVG}title"))
    assert all(name in titles for name in names)
    assert drawing.width < 1200 and drawing.height < 8000


def test_layer_names_are_escaped_in_the_svg():
    hostile = "<script>alert(1)</script>"
    report = engine_report(rename_layer(seed_config(3), "conv2d_3", hostile))
    svg = draw_graph(report).svg
    assert "<script" not in svg
    root = _parse(svg)  # still well-formed XML
    assert any(g.get("data-layer") == hostile for g in root.iter(f"{SVG}g"))


def test_cycles_in_a_malformed_graph_do_not_break_the_layout():
    layers = [
        {"name": "a", "class_name": "Dense", "inbound": ["c"], "output_shape": [None, 4]},
        {"name": "b", "class_name": "Dense", "inbound": ["a"], "output_shape": [None, 4]},
        {"name": "c", "class_name": "Dense", "inbound": ["b"], "output_shape": [None, 4]},
    ]
    drawing = draw_graph({"layers": layers})
    assert sorted(drawing.layer_names) == ["a", "b", "c"]
    assert len(drawing.edges) == 2
