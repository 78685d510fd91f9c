"""Benchmark: predicted against measured gradient flow, on the seed examples and the 17 Keras
Applications models (weights=None, inputs scaled down to keep CPU time sane).

Run (TensorFlow; about 10-20 minutes on 2 CPU cores)::

    python bench/bench_gradients.py                  # everything
    python bench/bench_gradients.py --quick          # seed examples, ResNet50, MobileNetV2
    python bench/bench_gradients.py --only ResNet    # models whose name contains "ResNet"

For each model the report's prediction (``gradient_flow.predicted``, no TensorFlow) is put next
to the measurement (:func:`app.worker.gradients.measure`: BatchNormalization in training mode,
standardised inputs, Keras's initialisers; one batch of 32, large enough that the per-channel
mean and scale a training-mode BatchNormalization projects out of the gradient cost little
even at 2x2 positions) through :func:`app.analysis.gradient_flow.attach_measurement`, the
function the service uses. Prints
per model: predicted and measured ``ratio`` (the quantity at the first weighted layer over the
last), their factor, both verdicts, and per weighted layer the median factor and the share
within 3x; then the median model's ratio factor and the share of all weighted layers within
3x. Results go to ``bench/data/gradient_benchmark.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from app.analysis import analyze  # noqa: E402
from app.analysis.gradient_flow import AGREEMENT_FACTOR, attach_measurement  # noqa: E402

OUT = ROOT / "bench" / "data" / "gradient_benchmark.json"
APPLICATIONS = [
    "VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "InceptionV3",
    "InceptionResNetV2", "Xception", "MobileNet", "MobileNetV2", "MobileNetV3Small",
    "DenseNet121", "NASNetMobile", "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny",
]
LARGER_INPUT = {"InceptionV3": 96, "InceptionResNetV2": 96, "Xception": 96}
"""Models whose stem needs more than 64 pixels (Keras requires at least 75)."""
SIDE = 64
QUICK = ("ResNet50", "MobileNetV2")


def _models(keras: Any, only: str) -> list[tuple[str, str, Any]]:
    """(name, input description, builder) of every benchmarked model."""
    from app.worker.loader import load_model

    found: list[tuple[str, str, Any]] = []
    for number in (1, 2, 3):
        name = f"seed example{number}"
        path = ROOT / "tests" / "fixtures" / "seed" / f"example{number}.json"
        found.append((name, "as stored", lambda p=path: load_model(
            json.loads(p.read_text(encoding="utf-8")), None, "json")))
    for name in APPLICATIONS:
        side = LARGER_INPUT.get(name, SIDE)
        found.append((name, f"{side}x{side}x3", lambda n=name, s=side: getattr(
            keras.applications, n)(weights=None, input_shape=(s, s, 3))))
    return [entry for entry in found if only.lower() in entry[0].lower()]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default="", help="only models whose name contains this")
    parser.add_argument("--quick", action="store_true",
                        help="the seed examples, ResNet50 and MobileNetV2 only")
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import keras

    from app.worker.gradients import measure

    rows = []
    print(f"{'model':<20}{'input':>11}{'layers':>7}{'predicted':>11}{'measured':>11}{'factor':>8}"
          f"{'verdicts (p/m)':>22}{'median':>8}{'in 3x':>7}{'s':>5}", flush=True)
    models = _models(keras, args.only)
    if args.quick:
        models = [m for m in models if m[0].startswith("seed") or m[0] in QUICK]
    for name, inputs, build in models:
        keras.backend.clear_session()
        gc.collect()
        started = time.monotonic()
        model = build()
        report = analyze(json.loads(model.to_json()))
        measured = measure(model, batches=args.batches, batch_size=args.batch_size, seed=0,
                           ablation=False)
        merged = attach_measurement(report, measured)["gradient_flow"]
        predicted, observed = merged["predicted"], merged["measured"]
        comparison = merged["comparison"] or {}
        expected = predicted.get("per_layer") or {}
        factors = [10.0 ** abs(math.log10(expected[n] / v))
                   for n, v in (observed.get("per_layer") or {}).items()
                   if v and expected.get(n) and v > 0 and expected[n] > 0]
        row = {
            "model": name, "input": inputs, "weighted_layers": len(expected),
            "compared_layers": comparison.get("layers"),
            "predicted_ratio": predicted.get("ratio"), "measured_ratio": observed.get("ratio"),
            "ratio_factor": comparison.get("ratio_factor"),
            "predicted_verdict": predicted.get("verdict"), "measured_verdict": observed.get("verdict"),
            "median_layer_factor": comparison.get("median_factor"),
            "within_3x": comparison.get("within_factor"), "layer_factors": factors,
            "seconds": round(time.monotonic() - started, 1),
        }
        rows.append(row)
        print(f"{name:<20}{inputs:>11}{row['weighted_layers']:>7}"
              f"{_g(row['predicted_ratio']):>11}{_g(row['measured_ratio']):>11}"
              f"{_g(row['ratio_factor']):>8}"
              f"{str(row['predicted_verdict']) + '/' + str(row['measured_verdict']):>22}"
              f"{_g(row['median_layer_factor']):>8}{_pct(row['within_3x']):>7}"
              f"{row['seconds']:>5.0f}", flush=True)
        OUT.write_text(json.dumps({"models": rows}, indent=1) + "\n")
    ratio_factors = [r["ratio_factor"] for r in rows if r["ratio_factor"] is not None]
    every = [f for r in rows for f in r["layer_factors"]]
    summary = {
        "models": len(rows),
        "median_ratio_factor": statistics.median(ratio_factors) if ratio_factors else None,
        "models_within_3x": sum(f <= AGREEMENT_FACTOR for f in ratio_factors),
        "weighted_layers": len(every),
        "layers_within_3x": (sum(f <= AGREEMENT_FACTOR for f in every) / len(every)
                             if every else None),
        "verdicts_agree": sum(r["predicted_verdict"] == r["measured_verdict"] for r in rows),
    }
    OUT.write_text(json.dumps({"summary": summary, "models": rows}, indent=1) + "\n")
    print(f"\nmedian model: predicted ratio within {_g(summary['median_ratio_factor'])}x of "
          f"measured; {summary['models_within_3x']}/{len(ratio_factors)} models within 3x; "
          f"{_pct(summary['layers_within_3x'])} of {len(every)} weighted layers within 3x; "
          f"verdicts agree on {summary['verdicts_agree']}/{len(rows)}")


def _g(value: float | None) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "n/a"


def _pct(value: float | None) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "n/a"


if __name__ == "__main__":
    main()
