"""input_shape per input for multi-input models: ``{"input_layer_name": [...]}``."""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze
from app.errors import InvalidArchitecture, InvalidInputShape
from tests.analysis.builders import two_input_model


def _shapes(report: dict[str, Any]) -> dict[str, Any]:
    return {layer["name"]: layer["output_shape"] for layer in report["layers"]}


def test_each_input_takes_its_own_shape() -> None:
    report = analyze(two_input_model(), input_shape={"image": [64, 48, 3], "mask": [20, 24, 1]})
    assert report["summary"]["input_shapes"] == [[None, 64, 48, 3], [None, 20, 24, 1]]
    shapes = _shapes(report)
    assert shapes["image_conv"] == [None, 32, 24, 8] and shapes["mask_conv"] == [None, 20, 24, 4]
    assert report["summary"]["total_params"] == analyze(two_input_model())["summary"]["total_params"]
    conv = next(layer for layer in report["layers"] if layer["name"] == "image_conv")
    assert conv["receptive_field"]["axes"][0] == {"size": 3, "stride": 2, "padding": 0}


def test_inputs_not_named_keep_their_declared_shape() -> None:
    report = analyze(two_input_model(), input_shape={"mask": [40, 40, 1]})
    assert report["summary"]["input_shapes"] == [[None, 32, 32, 3], [None, 40, 40, 1]]
    assert _shapes(report)["image_conv"] == [None, 16, 16, 8]


def test_a_declared_open_size_is_filled_per_input() -> None:
    report = analyze(two_input_model(image=(None, None, 3)), input_shape={"image": [100, 60, 3]})
    assert _shapes(report)["image_conv"] == [None, 50, 30, 8]
    assert report["coverage"]["metrics"]["macs"]["status"] == "complete"


@pytest.mark.parametrize(("input_shape", "error", "message"), [
    ({"picture": [64, 64, 3]}, InvalidInputShape, "must name the model's input layers ['image', 'mask']"),
    ([64, 64, 3], InvalidArchitecture, "give input_shape per input, as {'image': [...], 'mask': [...]}"),
    ({"image": [64, 64, 4]}, InvalidArchitecture, "input_shape['image'] must keep the model's 3 channels"),
    ({"mask": [64, 64]}, InvalidArchitecture, "input_shape['mask'] must have 3 dimensions"),
])
def test_bad_per_input_shapes_say_what_was_wrong(input_shape: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        analyze(two_input_model(), input_shape=input_shape)
    assert message in raised.value.detail and raised.value.status == 422
