"""The seed's three example models, read from every format convlens accepts, interpreted.

Each example is stored as Keras 3 JSON, ``.keras``, legacy ``.h5`` and Keras 2 (tf_keras)
JSON. Whatever the format, the engine must report Keras's own shapes and parameter counts, and
the interpretation the seed walks through: Example 1 halves the spatial size at the pooling
layer, Example 2's first 5x5 convolution sees 5x5 pixels, Example 3's residual connections keep
the gradient healthy.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze
from app.config import Settings
from app.ingest import ingest_bytes
from tests.fixtures.builders import SEED_PARAM_TOTALS
from tests.fixtures.load import FIXTURES_DIR, load_config, load_expected

SEED = FIXTURES_DIR / "seed"
FORMATS = [("json", "{n}.json", ""), ("keras", "{n}.keras", ""), ("h5", "{n}.h5", ""),
           ("json", "{n}.tfkeras.json", ".tfkeras")]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"))


def _ingested_report(path_template: str, number: int, settings: Settings) -> tuple[Any, dict]:
    path = SEED / path_template.format(n=f"example{number}")
    ingested = ingest_bytes(path.read_bytes(), filename=path.name, settings=settings)
    return ingested, analyze(ingested.config)


@pytest.mark.parametrize("number", [1, 2, 3])
@pytest.mark.parametrize(("fmt", "template", "truth"), FORMATS,
                         ids=["keras3-json", "keras", "h5", "tfkeras-json"])
def test_every_format_reports_what_keras_reports(number: int, fmt: str, template: str,
                                                  truth: str, settings: Settings) -> None:
    ingested, report = _ingested_report(template, number, settings)
    assert ingested.format == fmt
    expected = load_expected(SEED / f"example{number}{truth}.expected.json")
    assert report["summary"]["total_params"] == SEED_PARAM_TOTALS[number]
    assert report["summary"]["trainable_params"] == expected["totals"]["trainable_params"]
    keys = ("name", "class_name", "output_shape", "params", "trainable_params")
    got = [tuple(layer[key] for key in keys) for layer in report["layers"]]
    want = [tuple(layer[key] for key in keys) for layer in expected["layers"]]
    assert got == want
    assert report["coverage"]["status"] == "complete"


def _layers(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {layer["name"]: layer for layer in report["layers"]}


def _field(layer: dict[str, Any]) -> list[tuple[int, int, int]]:
    return [(a["size"], a["stride"], a["padding"]) for a in layer["receptive_field"]["axes"]]


def test_example1_pooling_halves_the_map_and_widens_the_field() -> None:
    report = analyze(load_config(SEED / "example1.json"))
    layers = report["layers"]
    assert [layer["class_name"] for layer in layers] == ["Conv2D", "Conv2D", "MaxPooling2D"]
    assert [layer["output_shape"] for layer in layers] == [
        [None, 256, 256, 32], [None, 256, 256, 64], [None, 128, 128, 64]]
    oracle = load_expected(SEED / "example1.expected.json")["receptive_fields"]["layers"]
    for layer in layers:
        assert _field(layer) == [tuple(a.values()) for a in oracle[layer["name"]]["axes"]]
    assert _field(layers[-1]) == [(6, 2, 2), (6, 2, 2)]
    # MACs of a 3x3 'same' convolution: H*W*Cout*(3*3*Cin).
    assert layers[0]["macs"] == 256 * 256 * 32 * 3 * 3 * 3
    assert layers[1]["macs"] == 256 * 256 * 64 * 3 * 3 * 32
    details = next(f for f in report["findings"] if f["code"] == "stages")["details"]
    assert [s["effective_stride"] for s in details["stages"]] == [1]  # the pool computes nothing
    assert details["head"]["downsampling_layers"] == ["max_pooling2d"]


def test_example2_first_5x5_convolution_sees_5x5_pixels() -> None:
    report = analyze(load_config(SEED / "example2.json"))
    layers = report["layers"]
    assert _field(layers[0]) == [(5, 1, 2), (5, 1, 2)]
    assert layers[0]["macs"] == 28 * 28 * 32 * 5 * 5 * 1
    assert layers[-1]["output_shape"] == [None, 7, 7, 64]
    assert report["receptive_field"]["layer"] == layers[-1]["name"]
    assert [a["size"] for a in report["receptive_field"]["axes"]] == [12, 12]


def test_example3_residual_connections_keep_the_gradient_healthy() -> None:
    report = analyze(load_config(SEED / "example3.json"))
    layers = _layers(report)
    assert layers["add"]["inbound"] == ["conv2d_2", "conv2d"]
    assert layers["add"]["output_shape"] == layers["conv2d"]["output_shape"]
    predicted = report["gradient_flow"]["predicted"]
    assert predicted["verdict"] == "healthy"
    assert report["gradient_flow"]["measured"] is None
    residual = next(f for f in report["findings"] if f["code"] == "residual_connections")
    assert residual["layers"] == ["add", "add_1"]
    assert residual["details"]["gradient_verdict"] == "healthy"
    # The global average pooling head makes the classifier's field global.
    assert layers["global_average_pooling2d"]["receptive_field"]["global"] is True
    assert report["receptive_field"]["layer"] == "conv2d_5"
