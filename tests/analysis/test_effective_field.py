"""The effective field's pure parts, no TensorFlow: the unit and theoretical box a job is given
(from the report), the layers chosen by default, the requests refused, and the summary of an
influence map checked on maps whose answer is known."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.analyses.effective_field import chosen_layers, default_layers
from app.analysis import analyze
from app.analysis.effective_field import NotMeasurable, attach_effective_field, unit_field
from app.errors import ValidationFailed
from app.worker.effective_field import summarise_influence
from tests.fixtures.load import FIXTURES_DIR, load_config


def _layer(size: int, stride: int, padding: int, units: int = 8, **extra: Any) -> dict[str, Any]:
    axis = {"size": size, "stride": stride, "padding": padding}
    return {"name": "x", "output_shape": [None, units, units, 4],
            "receptive_field": {"axes": [axis, axis], "global": False}, **extra}


@pytest.mark.parametrize(
    ("layer", "unit", "box"),
    [
        (_layer(3, 1, 1, units=33), [16, 16], [[15, 17], [15, 17]]),
        (_layer(35, 4, 17, units=24), [11, 11], [[27, 61], [27, 61]]),  # ResNet50 stage 2 at 96 px
        (_layer(483, 32, 241, units=3), [1, 1], [[-209, 273], [-209, 273]]),  # past the input
        (_layer(4, 1, 1, units=8), [3, 3], [[2, 5], [2, 5]]),  # even field: centre 3.5
    ],
)
def test_the_centre_unit_and_its_theoretical_box(layer: dict[str, Any], unit: list[int], box: list[list[int]]) -> None:
    assert unit_field(layer) == {"name": "x", "unit": unit, "box": box}


def test_fractional_fields_after_upsampling_keep_their_fractions() -> None:
    layer = _layer(3, 1, 1)
    layer["receptive_field"]["axes"] = [{"size": 2.5, "stride": 0.5, "padding": 0.75}] * 2
    assert unit_field(layer)["box"] == [[0.75, 2.25], [0.75, 2.25]]


@pytest.mark.parametrize(
    ("layer", "why"),
    [
        ({"name": "d", "output_shape": [None, 10], "receptive_field": None}, "no local receptive field"),
        ({**_layer(3, 1, 1), "receptive_field": {"axes": None, "global": True}}, "no local receptive field"),
        ({**_layer(3, 1, 1), "output_shape": [None, 8, 4]}, "not a 2-D feature map"),
        ({**_layer(3, 1, 1), "output_shape": [None, None, None, 4]}, "unknown output size"),
        ({**_layer(3, 1, 1), "output_shape": [[None, 8, 8, 4], [None, 8, 8, 4]]}, "several outputs"),
    ],
)
def test_layers_without_a_measurable_unit_say_why(layer: dict[str, Any], why: str) -> None:
    with pytest.raises(NotMeasurable, match=why):
        unit_field(layer)


def test_attaching_marks_the_report_1_2_and_leaves_the_stored_one_alone() -> None:
    report = {"schema_version": "1.0", "summary": {}}
    attached = attach_effective_field(report, {"status": "measured"})
    assert attached["schema_version"] == "1.2" and attached["effective_field"] == {"status": "measured"}
    assert "effective_field" not in report and report["schema_version"] == "1.0"


def test_default_layers_are_the_stages_or_a_spread_along_the_main_path() -> None:
    resnet = analyze(load_config(FIXTURES_DIR / "applications" / "resnet50.json.gz"), input_shape=[96, 96, 3])
    assert [layer["name"] for layer in default_layers(resnet)] == [
        "conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"
    ]
    example3 = analyze(load_config(FIXTURES_DIR / "seed" / "example3.json"), input_shape=[33, 33, 3])
    chosen = default_layers(example3)
    assert [layer["name"] for layer in chosen] == ["conv2d", "add", "conv2d_3", "conv2d_5"]
    sizes = [layer["box"][0][1] - layer["box"][0][0] + 1 for layer in chosen]
    assert sizes == sorted(sizes) and sizes[0] == 3 and sizes[-1] == 13  # from the first field to the last


def test_requests_the_report_cannot_answer_are_refused() -> None:
    example3 = analyze(load_config(FIXTURES_DIR / "seed" / "example3.json"), input_shape=[33, 33, 3])
    assert [layer["name"] for layer in chosen_layers(example3, ["conv2d_5", "conv2d_5"])] == ["conv2d_5"]
    with pytest.raises(ValidationFailed, match="no top-level layer 'missing'"):
        chosen_layers(example3, ["missing"])
    two_inputs = {**example3, "summary": {**example3["summary"],
                                          "input_shapes": [[None, 8, 8, 3], [None, 8, 8, 3]]}}
    with pytest.raises(ValidationFailed) as refused:
        chosen_layers(two_inputs, None)
    assert refused.value.code == "effective_field_unsupported"
    sequence = {**example3, "summary": {**example3["summary"], "input_shapes": [[None, 100, 8]]}}
    with pytest.raises(ValidationFailed, match="one image input"):
        chosen_layers(sequence, None)


def _gaussian(shape: tuple[int, int], centre: tuple[float, float], sigma: float) -> np.ndarray:
    rows, cols = np.indices(shape, dtype=float)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))


def test_a_gaussian_core_is_summarised_as_a_gaussian() -> None:
    """A 2-D Gaussian of sigma s holds 95% of its marginal within ±1.96 s, and 95% of its mass
    within a radius of sqrt(-2 ln 0.05) s = 2.45 s."""
    sigma = 4.0
    row = summarise_influence(_gaussian((81, 81), (40, 40), sigma), box=[[0, 80], [0, 80]])
    assert row["centre"] == [40.0, 40.0] and row["centre_offset"] == [0.0, 0.0]
    assert all(abs(size - 2 * 1.96 * sigma) <= 1.5 for size in row["size95"]), row["size95"]
    assert row["radius95"] == pytest.approx(2.448 * sigma, abs=0.6)
    assert row["fraction"][0] == pytest.approx(row["size95"][0] / 81, abs=1e-4)
    assert row["area_fraction"] < 0.2 and row["mass_inside_field"] == pytest.approx(1.0)
    assert row["heatmap"]["cell"] == [2, 2] and len(row["heatmap"]["values"]) == 41
    assert max(max(values) for values in row["heatmap"]["values"]) == 1.0


def test_influence_off_centre_or_outside_the_box_shows() -> None:
    shifted = summarise_influence(_gaussian((41, 41), (23, 20), 2.0), box=[[10, 30], [10, 30]])
    assert shifted["centre_offset"] == pytest.approx([3.0, 0.0], abs=0.05)
    leaking = np.zeros((20, 20))
    leaking[10, 10] = leaking[0, 0] = 1.0
    row = summarise_influence(leaking, box=[[5, 15], [5, 15]])
    assert row["mass_inside_field"] == 0.5  # the measurement would contradict the static field


def test_no_influence_at_all_is_said_not_hidden() -> None:
    row = summarise_influence(np.zeros((9, 9)), box=[[2, 6], [2, 6]])
    assert row["total_influence"] == 0.0
    assert row["size95"] is None and row["fraction"] is None and row["centre"] is None


def test_clipped_fields_are_compared_with_their_visible_part() -> None:
    row = summarise_influence(_gaussian((32, 32), (16, 16), 3.0), box=[[-200, 231], [-200, 231]])
    assert row["field_clipped"] and row["visible_field_size"] == [32, 32]
    assert row["field_box"] == [[-200, 231], [-200, 231]] and row["field_centre"] == [15.5, 15.5]
    assert 0 < row["fraction"][0] < 1
