"""Benchmark: the convlens engine against ``keras.models.model_from_json``, and its growth with depth.

Run::

    python bench/bench_engine.py            # all Applications models
    python bench/bench_engine.py --quick    # ResNet50, VGG16, MobileNetV2 only

Prints, measured in one run, the median time of ``app.analysis.analyze`` and of
``keras.models.model_from_json`` on the Keras Applications configs (weights=None)
with their ratio, and the engine's time for Sequential chains of 1,000 and
10,000 layers (goal: 10,000 under 1 s, growth linear in depth).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from app.analysis import analyze  # noqa: E402

MODELS = [
    "VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "InceptionV3",
    "InceptionResNetV2", "Xception", "MobileNet", "MobileNetV2", "MobileNetV3Small",
    "DenseNet121", "NASNetMobile", "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny",
]
QUICK = ["ResNet50", "VGG16", "MobileNetV2"]


def median_seconds(function: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def chain_config(depth: int) -> dict[str, Any]:
    """A Sequential chain: input 32x32x8, then ``depth`` layers cycling conv / BN / ReLU."""
    layers: list[dict[str, Any]] = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 32, 32, 8], "name": "input"}}
    ]
    for index in range(depth):
        kind = index % 3
        if kind == 0:
            layers.append({"class_name": "Conv2D", "config": {
                "name": f"conv_{index}", "filters": 8, "kernel_size": [3, 3], "padding": "same",
                "strides": [1, 1], "activation": "linear", "use_bias": True}})
        elif kind == 1:
            layers.append({"class_name": "BatchNormalization", "config": {"name": f"bn_{index}", "axis": -1}})
        else:
            layers.append({"class_name": "ReLU", "config": {"name": f"relu_{index}"}})
    return {"class_name": "Sequential", "config": {"name": f"chain_{depth}", "layers": layers}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only ResNet50, VGG16 and MobileNetV2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import keras  # worker-side dependency, only for the reference timing

    print(f"keras {keras.__version__}; median of {args.repeats} runs (keras: of 3)")
    print(f"{'model':<20}{'layers':>7}{'engine ms':>12}{'keras ms':>12}{'ratio':>9}")
    for name in QUICK if args.quick else MODELS:
        model = getattr(keras.applications, name)(weights=None)
        text = model.to_json()
        config = json.loads(text)
        del model
        keras.backend.clear_session()
        engine = median_seconds(lambda config=config: analyze(config), args.repeats)
        reference = median_seconds(lambda text=text: keras.models.model_from_json(text), 3)
        keras.backend.clear_session()
        layers = len(config["config"]["layers"])
        print(f"{name:<20}{layers:>7}{engine * 1e3:>12.2f}{reference * 1e3:>12.1f}{reference / engine:>8.0f}x")

    print()
    results = {}
    for depth in (1_000, 10_000):
        config = chain_config(depth)
        results[depth] = median_seconds(lambda config=config: analyze(config), 3)
        print(f"chain of {depth:>6} layers: {results[depth] * 1e3:8.1f} ms")
    growth = results[10_000] / results[1_000]
    print(f"10,000 / 1,000 time ratio: {growth:.1f} (linear growth is 10; goal 10,000 layers < 1 s: "
          f"{'met' if results[10_000] < 1 else 'NOT met'})")


if __name__ == "__main__":
    main()
