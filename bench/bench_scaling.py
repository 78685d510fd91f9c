"""Benchmark: the engine's time grows linearly with graph size, with and without skips.

Run::

    python bench/bench_scaling.py            # 1,000 / 5,000 / 10,000 blocks, median of 3
    python bench/bench_scaling.py --quick    # 1,000 / 5,000 blocks, median of 1

Two graph shapes of the same number of blocks, built as Keras 3 functional configs (no
TensorFlow): a plain chain (one 3x3 ReLU convolution per block) and a residual chain (the same
convolution, then an Add with the block's input: ``x = x + relu(conv(x))``, the identity
shortcut of a ResNet). The residual chain has one
skip connection per block, so any bookkeeping over skips that is quadratic (a bit set over
every merge for every layer) shows here and not in the plain chain. Goal: the 10,000-block
residual chain analyses in under 1 s, and time per block stays flat from 1,000 to 10,000.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.analysis import analyze  # noqa: E402


def _tensor(layer: str) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, 0, 0]}}


def _call(class_name: str, name: str, config: dict[str, Any], *inputs: str) -> dict[str, Any]:
    args: list[Any] = [[_tensor(i) for i in inputs]] if len(inputs) > 1 else [_tensor(inputs[0])]
    return {"class_name": class_name, "name": name, "config": dict(config, name=name),
            "inbound_nodes": [{"args": args, "kwargs": {}}]}


def chain_config(blocks: int, *, residual: bool) -> dict[str, Any]:
    """``blocks`` ReLU convolutions on an 8x8x8 input; ``residual`` adds each block's input
    back (an identity shortcut per block). Ends in global pooling and a Dense classifier.

    >>> len(chain_config(3, residual=True)["config"]["layers"])
    9
    """
    conv = {"filters": 8, "kernel_size": [3, 3], "padding": "same", "strides": [1, 1],
            "activation": "relu", "use_bias": True, "kernel_initializer": "he_normal"}
    layers: list[dict[str, Any]] = [{
        "class_name": "InputLayer", "name": "input",
        "config": {"batch_shape": [None, 8, 8, 8], "name": "input"}, "inbound_nodes": []}]
    previous = "input"
    for index in range(blocks):
        layers.append(_call("Conv2D", f"conv_{index}", conv, previous))
        previous = f"conv_{index}"
        if residual:
            shortcut = "input" if index == 0 else f"add_{index - 1}"
            layers.append(_call("Add", f"add_{index}", {}, f"conv_{index}", shortcut))
            previous = f"add_{index}"
    layers.append(_call("GlobalAveragePooling2D", "gap", {}, previous))
    layers.append(_call("Dense", "classifier", {"units": 10, "activation": "softmax"}, "gap"))
    kind = "residual" if residual else "plain"
    return {"class_name": "Functional", "config": {
        "name": f"{kind}_{blocks}", "layers": layers, "input_layers": [["input", 0, 0]],
        "output_layers": [["classifier", 0, 0]]}}


def median_seconds(config: dict[str, Any], repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``analyze(config)`` over ``repeats`` runs, after a warm-up
    run that also checks the gradient-flow prediction was computed (not skipped by an error)."""
    report = analyze(config)
    status = report["gradient_flow"]["predicted"]["status"]
    if status == "not_computed" or report["coverage"]["metrics"]["gradient_flow"]["status"] == "failed":
        raise SystemExit(f"gradient flow was not computed for {config['config']['name']}")
    walls, cpus = [], []
    for _ in range(repeats):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        analyze(config)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 5,000 blocks, 1 run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = (1_000, 5_000) if args.quick else (1_000, 5_000, 10_000)
    repeats = 1 if args.quick else args.repeats
    print(f"median of {repeats} run(s); load average {os.getloadavg()[0]:.1f}")
    print(f"{'blocks':>8}{'plain ms':>10}{'(CPU)':>8}{'residual ms':>13}{'(CPU)':>8}"
          f"{'residual/plain':>16}{'us/block':>10}")
    results: dict[int, tuple[float, float]] = {}
    for blocks in sizes:
        plain, plain_cpu = median_seconds(chain_config(blocks, residual=False), repeats)
        residual, residual_cpu = median_seconds(chain_config(blocks, residual=True), repeats)
        results[blocks] = (plain, residual)
        print(f"{blocks:>8,}{plain * 1e3:>10.1f}{plain_cpu * 1e3:>8.1f}{residual * 1e3:>13.1f}"
              f"{residual_cpu * 1e3:>8.1f}{residual / plain:>16.2f}"
              f"{residual / blocks * 1e6:>10.1f}")
    small, large = sizes[0], sizes[-1]
    growth = results[large][1] / results[small][1]
    print(f"residual {large:,} / {small:,} blocks: time ratio {growth:.1f} "
          f"(linear is {large / small:.0f})")
    if large == 10_000:
        verdict = "met" if results[large][1] < 1.0 else "NOT met"
        print(f"goal: 10,000-block residual chain < 1 s: {verdict}")


if __name__ == "__main__":
    main()
