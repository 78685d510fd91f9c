"""Comparison of the seed's Example 1 with Example 2.

The seed: "by changing just the kernel size and stride of the initial layer we already see
the difference in the model".
"""

from __future__ import annotations

import json

from app.reports.compare import (
    align_layers,
    compare_reports,
    describe_layers,
    render_comparison_html,
)
from tests.reports.conftest import seed_expected
from tests.reports.test_html import external_references, parse


def _final_field(expected: dict) -> int:
    fields = expected["receptive_fields"]["layers"]
    last = [layer["name"] for layer in expected["layers"] if layer["name"] in fields][-1]
    return fields[last]["axes"][0]["size"]


def test_example1_vs_example2_explains_the_first_layer_and_the_field(seed_reports):
    one, two = seed_reports[1], seed_reports[2]
    expected_one, expected_two = seed_expected(1), seed_expected(2)
    comparison = compare_reports(one, two, label_a="Example 1", label_b="Example 2")
    json.dumps(comparison)  # JSON-ready
    text = " ".join(comparison["explanation"])

    # What changed in the first layer: kernel 3 -> 5, stride 1 in both (the seed's code keeps it).
    assert "kernel goes from 3x3 in Example 1 to 5x5 in Example 2" in text
    assert "stride stays 1x1" in text
    # Its own field and parameters, with Keras's numbers (oracle fields, count_params).
    first_one = expected_one["receptive_fields"]["layers"]["conv2d"]["axes"][0]["size"]
    first_two = expected_two["receptive_fields"]["layers"]["conv2d"]["axes"][0]["size"]
    assert f"sees {first_two}x{first_two} input pixels instead of {first_one}x{first_one}" in text
    params_one = expected_one["layers"][0]["params"]
    params_two = expected_two["layers"][0]["params"]
    assert f"parameters go from {params_one:,} to {params_two:,}" in text
    assert "3x3 kernel x 3 input channels x 32 filters + 32 biases = 896" in text
    assert "5x5 kernel x 1 input channel x 32 filters + 32 biases = 832" in text
    # The final receptive fields from the empirical oracle: 6 (Example 1) and 12 (Example 2).
    size_one, size_two = _final_field(expected_one), _final_field(expected_two)
    assert f"sees {size_one}x{size_one} input pixels" in text
    assert f"sees {size_two}x{size_two} input pixels" in text
    assert f"Example 2's field is {size_two / size_one:.2g}x larger than Example 1's" in text
    # ... and where it comes from: the pooling moved before the second convolution doubles what
    # that convolution adds (Example 1: 1 + 2 + 2 + 1 = 6; Example 2: 1 + 4 + 1 + 4 + 2 = 12).
    assert f"Example 1: 1 + conv2d +2, conv2d_1 +2, max_pooling2d +1 = {size_one}" in text
    assert (
        f"Example 2: 1 + conv2d +4, max_pooling2d +1, conv2d_1 +4, max_pooling2d_1 +2 = {size_two}"
    ) in text
    # The input change is called out, and the inserted pooling layer.
    assert "(None, 256, 256, 3)" in text and "(None, 28, 28, 1)" in text
    assert "Example 2 adds MaxPooling2D max_pooling2d" in text
    # Totals with Keras's counts.
    totals = comparison["summary"]["total_params"]
    assert (totals["a"], totals["b"]) == (
        expected_one["totals"]["params"],
        expected_two["totals"]["params"],
    )
    assert totals["delta"] == expected_two["totals"]["params"] - expected_one["totals"]["params"]


def test_layers_are_aligned_so_the_inserted_pooling_is_a_gap(seed_reports):
    comparison = compare_reports(seed_reports[1], seed_reports[2])
    pairs = [
        ((row["a"] or {}).get("name"), (row["b"] or {}).get("name"), row["status"])
        for row in comparison["layers"]
    ]
    assert pairs == [
        ("conv2d", "conv2d", "changed"),
        (None, "max_pooling2d", "only_b"),
        ("conv2d_1", "conv2d_1", "changed"),
        ("max_pooling2d", "max_pooling2d_1", "changed"),
    ]


def test_kernel_and_stride_are_recovered_from_the_field_arithmetic(seed_reports):
    layers = {layer["name"]: layer for layer in describe_layers(seed_reports[2])}
    assert layers["conv2d"]["kernel"] == [5, 5] and layers["conv2d"]["stride"] == [1, 1]
    assert layers["max_pooling2d"]["kernel"] == [2, 2] and layers["max_pooling2d"]["stride"] == [
        2,
        2,
    ]
    assert layers["conv2d_1"]["kernel"] == [3, 3] and layers["conv2d_1"]["stride"] == [1, 1]


def test_identical_reports_compare_as_same(seed_reports):
    comparison = compare_reports(seed_reports[3], seed_reports[3])
    assert {row["status"] for row in comparison["layers"]} == {"same"}
    assert all(entry["delta"] in (0, None) for entry in comparison["summary"].values())
    assert "identical in both models" in comparison["explanation"][0]


def test_alignment_prefers_matching_channels():
    left = [{"class_name": "Conv2D", "channels": 32}, {"class_name": "Conv2D", "channels": 64}]
    right = [{"class_name": "Conv2D", "channels": 64}]
    assert align_layers(left, right) == [(0, None), (1, 0)]


def test_comparison_page_is_self_contained_and_side_by_side(seed_reports):
    page = render_comparison_html(
        seed_reports[1], seed_reports[2], label_a="Example 1", label_b="Example 2"
    )
    collector = parse(page)
    assert external_references(collector) == []
    ids = {attrs.get("id") for _, attrs in collector.tags}
    assert {"graph-a", "graph-b", "explanation", "layers", "stages", "findings"} <= ids
    plots = {attrs.get("data-plot") for _, attrs in collector.tags}
    assert {"receptive_field-a", "receptive_field-b", "params_macs-a", "params_macs-b"} <= plots
    assert "kernel goes from 3x3" in page


def test_two_different_large_architectures_are_compared_in_counts_not_a_wall_of_pairs():
    """ResNet50 against InceptionV3: the explanation counts the differing pairs and names the
    first three (the table has them all), and says how much of the input each field sees in
    the report page's words (the whole input, 2.2x its size), never a share above 100%."""
    from app.analysis import analyze
    from app.reports.compare import compare_reports, render_comparison_html
    from tests.fixtures.load import FIXTURES_DIR, load_config

    a = analyze(load_config(FIXTURES_DIR / "applications" / "resnet50.json.gz"), name="resnet50")
    b = analyze(load_config(FIXTURES_DIR / "applications" / "inceptionv3.json.gz"), name="inceptionv3")
    comparison = compare_reports(a, b)
    layers = next(p for p in comparison["explanation"] if p.startswith("Beyond the first layer"))
    assert "(176 layers in resnet50, 312 in inceptionv3)" in layers
    assert "pairs differ" in layers and len(layers) < 800  # counts and three differences
    field = next(p for p in comparison["explanation"] if p.startswith("Receptive field"))
    assert "the whole (a field 2.2x its size) of its 224x224 input" in field
    assert "%" not in field
    page = render_comparison_html(a, b, comparison=comparison)
    assert "whole input (2.2x)" in page and "215.6%" not in page
    # each side's graph is drawn as stage blocks, as on the report page
    assert page.count('class="stage-block"') >= 10 and 'class="convlens-graph" id="graph-a"' not in page
    graphs = page.split('id="graphs"', 1)[1].split("</h2>", 1)[1]
    assert graphs.lstrip().startswith('<div class="stacked">')  # each side full width
