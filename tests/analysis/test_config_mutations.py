"""One to three config values changed at a time, on Example 3 and a small U-Net-like model:
every document gets a report or a refusal with a stable code, never an exception, a logged
failure inside the report, or an analysis that does not end.

The values are those that found the engine's failures of 12-01 (a 10^12-wide kernel, a 10^9
upsampling, a transposed stride of 10^6, fans past float range, a convolution none of whose
taps reach the input). A fixed seed: the same documents every run.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from app.analysis import analyze
from app.errors import DomainError
from app.security import check_report_limits
from tests.analysis.builders import call, functional, input_layer
from tests.conftest import make_settings
from tests.fixtures.load import FIXTURES_DIR, load_config


def _unet() -> dict[str, Any]:
    return functional([
        input_layer("x", (32, 32, 3)),
        call("Conv2D", "c1", {"filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                              "activation": "relu"}, "x"),
        call("MaxPooling2D", "p1", {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid"}, "c1"),
        call("Conv2D", "c2", {"filters": 16, "kernel_size": [3, 3], "dilation_rate": [2, 2],
                              "padding": "same"}, "p1"),
        call("UpSampling2D", "u1", {"size": [2, 2], "interpolation": "nearest"}, "c2"),
        call("Conv2DTranspose", "t1", {"filters": 8, "kernel_size": [3, 3], "strides": [1, 1],
                                       "padding": "same"}, "u1"),
        call("Concatenate", "cat", {"axis": -1}, "t1", "c1", as_list=True),
        call("UpSampling2D", "u2", {"size": [2, 2], "interpolation": "bilinear"}, "cat"),
        call("ZeroPadding2D", "zp", {"padding": [[1, 1], [1, 1]]}, "u2"),
        call("Cropping2D", "cr", {"cropping": [[1, 1], [1, 1]]}, "zp"),
        call("Resizing", "rs", {"height": 48, "width": 40, "interpolation": "bilinear"}, "cr"),
        call("Conv2D", "c3", {"filters": 4, "kernel_size": [5, 5], "padding": "same"}, "rs"),
        call("DepthwiseConv2D", "dw", {"kernel_size": [3, 3], "depth_multiplier": 2, "padding": "same"}, "c3"),
        call("AveragePooling2D", "ap", {"pool_size": [3, 3], "strides": [1, 1], "padding": "same"}, "dw"),
        call("GlobalAveragePooling2D", "g", {}, "ap"),
        call("Dense", "d", {"units": 10, "activation": "softmax"}, "g"),
    ], ["x"], ["d"])


VALUES: list[Any] = [
    0, 1, 2, 3, 7, 16, 256, 257, 4099, 10**5, 10**6, 10**9, 10**12, -1, 1e-300, 1e300, 1.7e308, 1.5,
    True, None, "", "same", "valid", "causal", "bilinear", "area", "exponential",
    [0, 0], [1, 1], [3, 2], [7, 1], [255, 257], [10**6, 1], [1, 10**9], [10**12, 10**12],
    [[0, 10**6], [0, 0]], [], {},
    {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 1e200, "seed": None}},
    {"class_name": "Constant", "config": {"value": 1e300}},
]


def _mutations(seed: int, count: int) -> list[tuple[str, dict[str, Any], list[tuple[str, str, Any]]]]:
    rng = random.Random(seed)
    bases = {"example3": load_config(FIXTURES_DIR / "seed" / "example3.json"), "unet": _unet()}
    documents = []
    for _ in range(count):
        name = rng.choice(sorted(bases))
        document = copy.deepcopy(bases[name])
        changed = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            layer = rng.choice(document["config"]["layers"][1:])
            keys = sorted(key for key in layer["config"] if key != "name")
            if keys:
                key, value = rng.choice(keys), copy.deepcopy(rng.choice(VALUES))
                layer["config"][key] = value
                changed.append((layer["name"], key, value))
        documents.append((name, document, changed))
    return documents


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_configs_get_a_report_or_a_refusal(seed: int, tmp_path: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path)
    outcomes: dict[str, int] = {}
    failures = []
    for name, document, changed in _mutations(seed, 300):
        caplog.clear()
        try:
            with caplog.at_level("ERROR", logger="app.analysis.report"):
                report = analyze(document)
            check_report_limits(report, settings)
            outcome = "report"
        except DomainError as error:
            outcome = error.code
        except Exception as error:  # noqa: BLE001 - the failure this test looks for
            failures.append(f"{name} {changed}: raised {type(error).__name__}: {error}"[:300])
            continue
        if caplog.records:
            failures.append(f"{name} {changed}: logged {caplog.records[0].getMessage()}"[:300])
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert failures == []
    # the documents reach the analysis and its limits, not only the config checks
    assert outcomes.get("report", 0) >= 50 and outcomes.get("resource_limit_exceeded", 0) >= 3, outcomes
