"""Plots: valid SVG and PNG with one data point per layer (Keras says which layers exist)."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import pytest

from app.errors import BadRequest, NotFound
from app.reports.plots import (
    PLOT_NAMES,
    plot_gradient_flow,
    plot_params_macs,
    plot_receptive_field,
    plot_training,
    render_plot,
    training_records,
)
from tests.reports.conftest import engine_report, rename_layer, seed_config, seed_expected

SVG = "{http://www.w3.org/2000/svg}"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("number", [1, 2, 3])
def test_receptive_field_plot_has_a_point_per_spatial_layer(seed_reports, number):
    expected = seed_expected(number)
    spatial = [layer["name"] for layer in expected["layers"] if len(layer["output_shape"]) == 4]
    # from a global pooling on, every unit sees the whole input (the Dense head too)
    names = [layer["name"] for layer in expected["layers"]]
    first_global = next(
        (
            i
            for i, layer in enumerate(expected["layers"])
            if layer["class_name"].startswith("Global")
        ),
        len(names),
    )
    global_pooled = names[first_global:]
    plot = plot_receptive_field(seed_reports[number])
    assert plot.data_points == len(spatial) + len(global_pooled)
    texts = svg_texts(plot.svg)
    assert all(name in texts for name in spatial + global_pooled)
    assert any(
        text.startswith(f"input size {expected['receptive_fields']['input_size'][0]}")
        for text in texts
    )
    width, height = png_size(plot.png)
    assert width > 600 and height > 300


@pytest.mark.parametrize("number", [1, 2, 3])
def test_params_macs_plot_has_a_bar_per_layer(seed_reports, number):
    expected = seed_expected(number)
    layers = [layer["name"] for layer in expected["layers"] if layer["class_name"] != "InputLayer"]
    plot = plot_params_macs(seed_reports[number])
    assert plot.data_points == len(layers)
    root = ET.fromstring(plot.svg)
    # two bar groups (params and MACs), one rectangle patch per layer each
    patches = [
        g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("params-macs-patch_")
    ]
    assert len(patches) >= 2 * len(layers)
    assert png_size(plot.png)[0] > 600


def test_gradient_flow_plot_has_a_predicted_point_per_weighted_layer(seed_reports):
    expected = seed_expected(3)
    weighted = [layer["name"] for layer in expected["layers"] if layer["params"] > 0]
    plot = plot_gradient_flow(seed_reports[3])
    assert plot.data_points == len(weighted)
    texts = svg_texts(plot.svg)
    assert "predicted" in texts and all(name in texts for name in weighted)
    verdict = seed_reports[3]["gradient_flow"]["predicted"]["verdict"]
    assert f"predicted: {verdict}" in texts


def test_gradient_flow_plot_draws_predicted_and_measured_series(seed_reports):
    report = dict(seed_reports[3])
    layers = [layer["name"] for layer in report["layers"] if layer["class_name"] == "Conv2D"]
    # the worker's measured record: per-layer gradient norms (None for weightless layers)
    report["gradient_flow"] = dict(report.get("gradient_flow") or {})
    report["gradient_flow"]["measured"] = {
        "verdict": "healthy",
        "layers": [{"name": name, "grad_norm": 0.5 * (i + 1)} for i, name in enumerate(layers)]
        + [{"name": "add", "grad_norm": None}],
    }
    plot = plot_gradient_flow(report)
    assert plot.data_points >= len(layers)
    texts = svg_texts(plot.svg)
    assert "measured" in texts
    assert all(name in texts for name in layers)


def test_gradient_flow_plot_overlays_the_one_quantity_by_layer_name(seed_reports):
    """The measurement's ``per_layer`` (weighted layers only) is drawn against the prediction's
    per layer name, not its ``layers`` list (which holds BatchNormalization and other layers
    too), and the corner states both verdicts."""
    report = dict(seed_reports[3])
    predicted = report["gradient_flow"]["predicted"]
    names = list(predicted["per_layer"])
    report["gradient_flow"] = dict(report["gradient_flow"])
    report["gradient_flow"]["measured"] = {
        "status": "measured",
        "verdict": "healthy",
        "per_layer": {name: 2.0 * (value or 1.0) for name, value in
                      reversed(list(predicted["per_layer"].items()))},  # any order: by name
        "layers": [{"name": name, "grad_norm": 1.0} for name in names]
        + [{"name": "batch_normalization", "grad_norm": 3.0}],
    }
    plot = plot_gradient_flow(report)
    assert plot.data_points == len(names)
    texts = svg_texts(plot.svg)
    assert "batch_normalization" not in texts
    assert f"predicted: {predicted['verdict']}   measured: healthy" in texts


def test_gradient_flow_plot_has_labelled_log_ticks_on_a_narrow_range(seed_reports):
    """Values within one decade still get several labelled ticks (not a lone "1")."""
    report = dict(seed_reports[3])
    flow = report["gradient_flow"] = dict(report["gradient_flow"])
    predicted = flow["predicted"] = dict(flow["predicted"])
    names = list(predicted["per_layer"])
    predicted["per_layer"] = {name: 0.6 + 0.4 * i / (len(names) - 1) for i, name in enumerate(names)}
    texts = svg_texts(plot_gradient_flow(report).svg)
    assert {"0.2", "0.5", "1", "2"} <= set(texts), texts
    # Example 3 as it is (0.21 to 1, the case that once showed a lone "1")
    example3 = svg_texts(plot_gradient_flow(seed_reports[3]).svg)
    assert {"0.1", "0.2", "0.5", "1"} <= set(example3), example3
    predicted["per_layer"] = {name: 10.0 ** (-4 + 4 * i / (len(names) - 1))
                              for i, name in enumerate(names)}
    wide = svg_texts(plot_gradient_flow(report).svg)  # four decades: one label per decade
    assert {"0.001", "0.01", "0.1", "1"} <= set(wide), wide


def test_gradient_flow_plot_names_the_layers_of_a_large_model():
    import json
    import lzma

    from tests.analysis.test_gradient_quantity import STORE

    with lzma.open(STORE / "applications-keras.json.xz") as handle:
        config = json.loads(handle.read())["configs"]["ResNet50"]
    from app.analysis import analyze

    plot = plot_gradient_flow(analyze(config))
    texts = svg_texts(plot.svg)
    assert plot.data_points == 54
    assert "conv1_conv" in texts  # stage starts named on the axis
    assert any("layers in graph order" in text or "layer index" in text for text in texts)


def test_training_curves_from_a_run_result():
    result = {
        "history": {
            "loss": [2.3, 2.0, 1.6, 1.1],
            "accuracy": [0.1, 0.2, 0.4, 0.6],
            "step_time_s": [0.1] * 4,
            "grad_global_norm": [3.0, 2.5, 2.0, 1.0],
        }
    }
    records = training_records(result)
    assert [row["step"] for row in records] == [1, 2, 3, 4]
    plot = plot_training(records)
    assert plot.data_points == 4
    texts = svg_texts(plot.svg)
    assert "accuracy" in texts and "loss" in texts and "step" in texts
    assert "step time s" not in texts
    png_size(plot.png)


def test_dollar_signs_in_layer_names_are_drawn_literally():
    report = engine_report(rename_layer(seed_config(1), "conv2d_1", "$x^2$"))
    plot = plot_receptive_field(report)
    assert "$x^2$" in svg_texts(plot.svg)


def test_svg_only_skips_the_png(seed_reports):
    plot = render_plot("receptive_field", seed_reports[1], formats=("svg",))
    assert plot.png is None and plot.svg.lstrip().startswith("<?xml")
    assert plot.inline_svg().startswith("<svg")
    assert "<metadata" not in plot.inline_svg()


def test_unknown_plot_and_format_are_domain_errors(seed_reports):
    assert "training" in PLOT_NAMES
    with pytest.raises(NotFound, match="no plot called 'nope'"):
        render_plot("nope", seed_reports[1])
    with pytest.raises(BadRequest, match="format='gif'"):
        render_plot("receptive_field", seed_reports[1], formats=("gif",))
