"""The prediction against TensorFlow's measurement on every model of the gradient benchmark
(no TensorFlow here).

``bench/bench_gradients.py`` measures each model with TensorFlow
(:func:`app.worker.gradients.measure`: BatchNormalization in training mode, one batch of 32)
and writes the measured ``ratio`` to ``bench/data/gradient_benchmark.json``. Those
measurements are the independent truth this test holds the prediction to: the prediction is
recomputed here from the stored configs at the benchmark's input size, so a change of the
prediction that moves any model out of :data:`AGREEMENT_FACTOR` of its measurement fails here,
without waiting for the next benchmark run. Rerun the benchmark when Keras or the measurement
changes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from app.analysis import analyze
from app.analysis.gradient_flow import AGREEMENT_FACTOR
from tests.fixtures.load import FIXTURES_DIR, load_config

BENCHMARK = Path(__file__).resolve().parents[2] / "bench" / "data" / "gradient_benchmark.json"
ROWS: list[dict[str, Any]] = json.loads(BENCHMARK.read_text(encoding="utf-8"))["models"]


def _config_and_shape(row: dict[str, Any]) -> tuple[dict[str, Any], list[int] | None]:
    name = row["model"]
    if name.startswith("seed "):
        return load_config(FIXTURES_DIR / "seed" / f"{name.split()[1]}.json"), None
    side = int(row["input"].split("x")[0])
    return load_config(FIXTURES_DIR / "applications" / f"{name.lower()}.json.gz"), [side, side, 3]


def test_the_benchmark_covers_the_seed_and_the_applications_models() -> None:
    names = {row["model"] for row in ROWS}
    assert {"seed example1", "seed example2", "seed example3"} <= names
    assert len(names) == 20, sorted(names)
    assert all(row["measured_ratio"] and row["measured_ratio"] > 0 for row in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row["model"] for row in ROWS])
def test_predicted_ratio_is_within_the_agreement_factor_of_the_measurement(row: dict[str, Any]) -> None:
    config, shape = _config_and_shape(row)
    predicted = analyze(config, input_shape=shape)["gradient_flow"]["predicted"]["ratio"]
    measured = row["measured_ratio"]
    factor = 10.0 ** abs(math.log10(predicted / measured))
    assert factor <= AGREEMENT_FACTOR, (row["model"], predicted, measured, round(factor, 2))
