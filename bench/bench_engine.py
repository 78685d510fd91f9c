"""Benchmark: the convlens engine against ``keras.models.model_from_json``; growth with depth.

Run::

    python bench/bench_engine.py            # all Applications models
    python bench/bench_engine.py --quick    # ResNet50, VGG16, MobileNetV2 only

Prints, measured in one run, the median time of ``app.analysis.analyze`` and of
``keras.models.model_from_json`` on the Keras Applications configs (weights=None)
with their ratio (goal: at least 100x on ResNet50), and the engine's time for
Sequential chains of 1,000 and 10,000 layers (goal: 10,000 under 1 s, growth
linear in depth).

Engine and Keras runs are interleaved (a Keras build, then a batch of engine
runs, three times) so that both see the same load on a shared machine; the
ratio is of wall-clock medians. The CPU times (this process's, all threads: Keras may use
several) are printed beside the wall times, and their ratio depends less on what else runs on
a shared machine. A breakdown by phase (parse, walk, gradient-flow prediction,
findings, report assembly) shows where the engine's time goes; the ``gradient`` column is the
gradient-flow prediction's share of the engine's CPU time for each model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from app.analysis import analyze, analyze_graph, build_graph, gradient_flow  # noqa: E402
from app.analysis import findings as findings_module  # noqa: E402
from app.analysis import report as report_module  # noqa: E402
from app.analysis.report import build_report  # noqa: E402

MODELS = [
    "VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "InceptionV3",
    "InceptionResNetV2", "Xception", "MobileNet", "MobileNetV2", "MobileNetV3Small",
    "DenseNet121", "NASNetMobile", "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny",
]
QUICK = ["ResNet50", "VGG16", "MobileNetV2"]
KERAS_ROUNDS = 3
PHASES = ("parse", "walk", "gradient", "findings", "report")


def timed(function: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_seconds(function: Callable[[], Any], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls.

    >>> median_seconds(lambda: None, 3) < 0.01
    True
    """
    return statistics.median(timed(function)[0] for _ in range(repeats))


def phase_breakdown(config: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median CPU milliseconds per phase of ``analyze(config)``.

    ``report`` is ``build_report`` given the prediction and findings already computed in
    the same round (both are handed over for the measurement), i.e. the assembly of the
    report dict alone.
    """
    samples: dict[str, list[float]] = {phase: [] for phase in PHASES}
    collecting = gc.isenabled()
    gc.disable()  # as analyze() does
    try:
        for _ in range(repeats):
            clock = time.process_time
            start = clock()
            graph = build_graph(config)
            parsed = clock()
            result = analyze_graph(graph)
            walked = clock()
            prediction = gradient_flow.predict(result)
            predicted = clock()
            found = findings_module.find(result, prediction=prediction)  # as in analyze()
            searched = clock()
            with _already(prediction, found):
                build_report(result)
            built = clock()
            samples["parse"].append(parsed - start)
            samples["walk"].append(walked - parsed)
            samples["gradient"].append(predicted - walked)
            samples["findings"].append(searched - predicted)
            samples["report"].append(built - searched)
    finally:
        if collecting:
            gc.enable()
    return {phase: statistics.median(values) * 1e3 for phase, values in samples.items()}


@contextmanager
def _already(prediction: dict[str, Any], found: list[dict[str, Any]]) -> Iterator[None]:
    """While timing the report assembly, let ``build_report`` take the prediction and the
    findings computed before."""
    original = report_module.gradient_flow_module, report_module.findings_module
    report_module.gradient_flow_module = SimpleNamespace(  # type: ignore[assignment]
        predict=lambda result: prediction, QUANTITY=original[0].QUANTITY)
    report_module.findings_module = SimpleNamespace(find=lambda result, **_: found)  # type: ignore[assignment]
    try:
        yield
    finally:
        report_module.gradient_flow_module, report_module.findings_module = original


def print_phases(label: str, phases: dict[str, float]) -> None:
    total = sum(phases.values())
    parts = ", ".join(
        f"{phase} {value:.2f} ms ({value / total:.0%})" if total else f"{phase} {value:.2f} ms"
        for phase, value in phases.items()
    )
    print(f"  {label} CPU by phase: {parts}")


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


def compare_with_keras(
    keras: Any, text: str, config: dict[str, Any], repeats: int
) -> tuple[float, float, float, float]:
    """(engine wall median, engine CPU median, Keras wall median, Keras CPU median), in
    seconds, interleaved. CPU is this process's (all its threads: Keras may use several)."""
    engine_wall: list[float] = []
    engine_cpu: list[float] = []
    reference: list[float] = []
    reference_cpu: list[float] = []
    per_round = max(repeats // KERAS_ROUNDS, 1)
    analyze(config)  # warm-up (imports, caches)
    for _ in range(KERAS_ROUNDS):
        wall, cpu = timed(lambda: keras.models.model_from_json(text))
        reference.append(wall)
        reference_cpu.append(cpu)
        keras.backend.clear_session()
        for _ in range(per_round):
            wall, cpu = timed(lambda: analyze(config))
            engine_wall.append(wall)
            engine_cpu.append(cpu)
    return (
        statistics.median(engine_wall),
        statistics.median(engine_cpu),
        statistics.median(reference),
        statistics.median(reference_cpu),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only ResNet50, VGG16 and MobileNetV2")
    parser.add_argument("--repeats", type=int, default=21, help="engine runs per model (keras: 3)")
    args = parser.parse_args()

    import keras  # worker-side dependency, only for the reference timing

    print(f"keras {keras.__version__}; engine: median of {args.repeats} runs, keras: median of "
          f"{KERAS_ROUNDS}, interleaved; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'model':<20}{'layers':>7}{'engine ms':>12}{'(CPU ms)':>10}{'keras ms':>12}{'(CPU ms)':>10}"
        f"{'ratio':>9}{'CPU ratio':>11}{'gradient':>10}"
    )
    breakdowns: dict[str, dict[str, float]] = {}
    for name in QUICK if args.quick else MODELS:
        model = getattr(keras.applications, name)(weights=None)
        text = model.to_json()
        config = json.loads(text)
        del model
        keras.backend.clear_session()
        engine, engine_cpu, reference, reference_cpu = compare_with_keras(keras, text, config, args.repeats)
        keras.backend.clear_session()
        layers = len(config["config"]["layers"])
        phases = phase_breakdown(config, args.repeats if name == "ResNet50" else 5)
        gradient_share = phases["gradient"] / sum(phases.values())
        print(f"{name:<20}{layers:>7}{engine * 1e3:>12.2f}{engine_cpu * 1e3:>10.2f}"
              f"{reference * 1e3:>12.1f}{reference_cpu * 1e3:>10.1f}{reference / engine:>8.0f}x"
              f"{reference_cpu / engine_cpu:>10.0f}x{gradient_share:>10.0%}")
        if name == "ResNet50":
            breakdowns[name] = phases
    for name, phases in breakdowns.items():
        print_phases(name, phases)

    print()
    results = {}
    for depth in (1_000, 10_000):
        config = chain_config(depth)
        results[depth] = median_seconds(lambda config=config: analyze(config), 3)
        print(f"chain of {depth:>6} layers: {results[depth] * 1e3:8.1f} ms")
    print_phases("10,000-layer chain", phase_breakdown(chain_config(10_000), 1))
    growth = results[10_000] / results[1_000]
    verdict = "met" if results[10_000] < 1 else "NOT met"
    print(
        f"10,000 / 1,000 time ratio: {growth:.1f} "
        f"(linear growth is 10; goal 10,000 layers < 1 s: {verdict})"
    )


if __name__ == "__main__":
    main()
