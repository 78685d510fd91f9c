"""The static analysis answers at any input the engine can compute in bounded time: DenseNet201
at 4096 px (activations of about 100 GiB per sample, which the analysis never allocates)."""

from __future__ import annotations

import json
from typing import Any

from app.analysis import analyze
from app.config import Settings
from tests.fixtures.load import FIXTURES_DIR, load_config

DENSENET201 = FIXTURES_DIR / "large" / "densenet201.json.gz"


def _expected() -> dict[str, Any]:
    return json.loads((FIXTURES_DIR / "large" / "densenet201.expected.json").read_text())


def test_densenet201_at_4096_px_has_keras_shapes_and_whole_fields() -> None:
    large = _expected()["at_large_input"]
    assert large["input_shape"] == [4096, 4096, 3]
    report = analyze(load_config(DENSENET201), input_shape=large["input_shape"])
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert {name: layers[name]["output_shape"] for name in large["layers"]} == large["layers"]
    assert report["summary"]["activation_bytes"] > Settings().max_activation_bytes
    assert report["coverage"]["status"] == "complete"
    # the field does not depend on the input size: the same as at 2048 px, where the oracle
    # measured DenseNet's fields exactly, and now seen whole
    smaller = analyze(load_config(DENSENET201), input_shape=[2048, 2048, 3])
    summary, at_2048 = report["receptive_field"], smaller["receptive_field"]
    assert summary["layer"] == at_2048["layer"] == "relu"
    assert [(a["size"], a["stride"]) for a in summary["axes"]] == [
        (a["size"], a["stride"]) for a in at_2048["axes"]]
    assert summary["axes"][0]["size"] > 2048 and summary["sees_whole_input"] is False
