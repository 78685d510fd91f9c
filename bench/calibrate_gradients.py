"""Calibrate the gradient-flow verdict on whether networks train.

Run (TensorFlow; about 15-30 minutes on 2 CPU cores)::

    python bench/calibrate_gradients.py                 # the whole labelled set
    python bench/calibrate_gradients.py --only plain    # the architectures whose name has "plain"

Builds a labelled set of small architectures (16x16 inputs; scaled-down Keras Applications at
32x32): plain sigmoid / tanh / ReLU stacks at several depths, with and without
BatchNormalization, with and without skips, LayerScale, squeeze-and-excitation, large dense
heads, poor initialisers, the seed examples and Applications models. Each is trained with one
fixed recipe by the project's own training-run code (:func:`app.worker.training.run_training`:
its synthetic prototype task, SGD with momentum 0.9, learning rate 0.01, batch 32, 150 steps)
and labelled ``trains`` when the loss falls: finite, and the mean of the last 10 steps below
80% of both the mean of the first 5 and the loss of a uniform guess. Then the predicted verdict of the report
(``gradient_flow.predicted``) is compared with the label: a verdict of ``vanishing`` or
``exploding`` predicts ``does not train``. The script also searches the thresholds of the rule
(:func:`app.analysis.gradient_flow.classify`) for the most accurate ones on this set, and
writes everything to ``bench/data/gradient_calibration.json`` (the labelled set, per
architecture: predicted ratio, normalized flag, verdict, losses, label) and the confusion
matrix as a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from app.analysis import analyze, gradient_flow  # noqa: E402

OUT = ROOT / "bench" / "data" / "gradient_calibration.json"
RECIPE = {"steps": 150, "batch_size": 32, "optimizer": "sgd", "learning_rate": 0.01,
          "overfit_check": False, "probe_every": 150, "seed": 0}
SIZE = 16


def _plain(K: Any, depth: int, activation: str, *, bn: bool = False, init: Any = "glorot_uniform",
           size: int = SIZE) -> Any:
    inputs = K.Input(shape=(size, size, 3))
    x = inputs
    for index in range(depth - 1):
        x = K.layers.Conv2D(16, 3, padding="same", kernel_initializer=init,
                            activation=None if bn else activation, name=f"conv{index + 1}")(x)
        if bn:
            x = K.layers.BatchNormalization(name=f"bn{index + 1}")(x)
            x = K.layers.Activation(activation, name=f"act{index + 1}")(x)
    x = K.layers.GlobalAveragePooling2D()(x)
    outputs = K.layers.Dense(10, activation="softmax", kernel_initializer=init, name="head")(x)
    return K.Model(inputs, outputs, name=f"plain{depth}_{activation}{'_bn' if bn else ''}")


def _residual(K: Any, blocks: int, activation: str, *, bn: bool, scale: float | None = None) -> Any:
    inputs = K.Input(shape=(SIZE, SIZE, 3))
    x = K.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    for block in range(blocks):
        y = x
        for half in (1, 2):
            if bn:
                y = K.layers.BatchNormalization(name=f"b{block}_bn{half}")(y)
            y = K.layers.Activation(activation, name=f"b{block}_act{half}")(y)
            y = K.layers.Conv2D(16, 3, padding="same", name=f"b{block}_conv{half}")(y)
        if scale is not None:
            from keras.src.applications.convnext import LayerScale

            y = LayerScale(scale, 16, name=f"b{block}_scale")(y)
        x = K.layers.Add(name=f"b{block}_add")([x, y])
    x = K.layers.Activation(activation)(x)
    x = K.layers.GlobalAveragePooling2D()(x)
    outputs = K.layers.Dense(10, activation="softmax", name="head")(x)
    name = f"residual{blocks}_{activation}{'_bn' if bn else ''}"
    return K.Model(inputs, outputs, name=name + (f"_layerscale{scale:g}" if scale else ""))


def _squeeze_excite(K: Any, blocks: int, activation: str) -> Any:
    inputs = K.Input(shape=(SIZE, SIZE, 3))
    x = K.layers.Conv2D(16, 3, padding="same", activation=activation)(inputs)
    for block in range(blocks):
        x = K.layers.Conv2D(16, 3, padding="same", activation=activation, name=f"conv{block}")(x)
        s = K.layers.GlobalAveragePooling2D(keepdims=True)(x)
        s = K.layers.Conv2D(4, 1, activation="relu", name=f"se{block}_reduce")(s)
        s = K.layers.Conv2D(16, 1, activation="sigmoid", name=f"se{block}_expand")(s)
        x = K.layers.Multiply(name=f"se{block}_gate")([x, s])
    x = K.layers.GlobalAveragePooling2D()(x)
    outputs = K.layers.Dense(10, activation="softmax", name="head")(x)
    return K.Model(inputs, outputs, name=f"se{blocks}_{activation}")


def _dense_head(K: Any, units: int, depth: int, activation: str) -> Any:
    inputs = K.Input(shape=(SIZE, SIZE, 3))
    x = K.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = K.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = K.layers.Flatten()(x)
    for index in range(depth):
        x = K.layers.Dense(units, activation=activation, name=f"fc{index}")(x)
    outputs = K.layers.Dense(10, activation="softmax", name="head")(x)
    return K.Model(inputs, outputs, name=f"dense_head{depth}x{units}_{activation}")


def _seed(number: int, input_shape: list[int] | None = None) -> Callable[[Any], Any]:
    """A seed example, rebuilt at ``input_shape`` (the same layers) where it is large."""
    def build(K: Any) -> Any:
        config = json.loads((ROOT / "tests" / "fixtures" / "seed" / f"example{number}.json")
                            .read_text(encoding="utf-8"))
        from app.worker.loader import load_model

        return load_model(config, None, "json", input_shape=input_shape)

    return build


def _application(name: str, **kwargs: Any) -> Callable[[Any], Any]:
    def build(K: Any) -> Any:
        return getattr(K.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10,
                                             **kwargs)

    return build


def labelled_set() -> dict[str, Callable[[Any], Any]]:
    """Name -> builder (given the keras module) of every architecture in the set."""
    models: dict[str, Callable[[Any], Any]] = {}
    for activation in ("sigmoid", "tanh", "relu"):
        for depth in (4, 10, 20, 30):
            models[f"plain{depth}_{activation}"] = (
                lambda K, d=depth, a=activation: _plain(K, d, a))
        for depth in (10, 30):
            models[f"plain{depth}_{activation}_bn"] = (
                lambda K, d=depth, a=activation: _plain(K, d, a, bn=True))
    models["plain20_relu_he"] = lambda K: _plain(K, 20, "relu", init="he_normal")
    models["plain10_relu_init_large"] = lambda K: _plain(
        K, 10, "relu", init=K.initializers.RandomNormal(stddev=0.5))
    models["plain10_relu_init_small"] = lambda K: _plain(
        K, 10, "relu", init=K.initializers.RandomNormal(stddev=0.01))
    models["plain10_linear_init_large"] = lambda K: _plain(
        K, 10, "linear", init=K.initializers.RandomNormal(stddev=1.0))
    models["plain6_tanh_init_large"] = lambda K: _plain(
        K, 6, "tanh", init=K.initializers.RandomNormal(stddev=1.0))
    for activation in ("relu", "sigmoid"):
        for blocks in (5, 15):
            models[f"residual{blocks}_{activation}"] = (
                lambda K, b=blocks, a=activation: _residual(K, b, a, bn=False))
            models[f"residual{blocks}_{activation}_bn"] = (
                lambda K, b=blocks, a=activation: _residual(K, b, a, bn=True))
    models["residual10_relu_bn_layerscale1e-6"] = lambda K: _residual(
        K, 10, "gelu", bn=True, scale=1e-6)
    models["residual10_relu_bn_layerscale0.1"] = lambda K: _residual(
        K, 10, "gelu", bn=True, scale=0.1)
    models["se4_relu"] = lambda K: _squeeze_excite(K, 4, "relu")
    models["se8_swish"] = lambda K: _squeeze_excite(K, 8, "swish")
    models["dense_head2x1024_relu"] = lambda K: _dense_head(K, 1024, 2, "relu")
    models["dense_head6x256_sigmoid"] = lambda K: _dense_head(K, 256, 6, "sigmoid")
    models["seed_example1"] = _seed(1, [32, 32, 3])  # stored at 256x256
    models["seed_example2"] = _seed(2)  # 28x28
    models["seed_example3"] = _seed(3, [32, 32, 3])  # stored at 128x128
    models["ResNet50"] = _application("ResNet50")
    models["MobileNetV2_a0.35"] = _application("MobileNetV2", alpha=0.35)
    models["MobileNet_a0.25"] = _application("MobileNet", alpha=0.25)
    models["EfficientNetB0"] = _application("EfficientNetB0")
    models["DenseNet121"] = _application("DenseNet121")
    return models


CHANCE_LOSS = math.log(10)
"""Cross-entropy of a uniform guess over the 10 classes of the synthetic task."""


def trains(losses: list[float | None]) -> bool:
    """The label: the loss stays finite and falls, its last 10 steps below 80% of both the
    first 5 and the loss of a uniform guess (a network that blew up and then collapsed to a
    constant output "falls" from its blow-up to chance, but has not learnt).

    >>> trains([2.3] * 5 + [1.0] * 10), trains([2.3] * 15), trains([2.3] * 5 + [None] * 10)
    (True, False, False)
    >>> trains([1e20] * 5 + [2.30] * 10)
    False
    """
    if not losses or any(v is None or not math.isfinite(v) for v in losses):
        return False
    return trains_from_means(_mean(losses[:5]), _mean(losses[-10:]))


def trains_from_means(first5: float | None, last10: float | None) -> bool:
    if first5 is None or last10 is None:
        return False
    return last10 < 0.8 * min(first5, CHANCE_LOSS)


def verdict_with(ratio: float | None, normalized: bool, vanish: float, explode: float,
                 explode_normalized: float) -> str | None:
    """The rule of :func:`gradient_flow.classify` with other thresholds (for the search)."""
    if ratio is None:
        return None
    if ratio < vanish:
        return "vanishing"
    if ratio > (explode_normalized if normalized else explode):
        return "exploding"
    return "healthy"


def confusion(rows: list[dict[str, Any]], key: str = "verdict") -> dict[str, int]:
    """Counts of (verdict says trains / does not) x (label trains / does not)."""
    counts = {"healthy_trains": 0, "healthy_fails": 0, "flagged_trains": 0, "flagged_fails": 0}
    for row in rows:
        flagged = row[key] in ("vanishing", "exploding")
        counts[f"{'flagged' if flagged else 'healthy'}_{'trains' if row['trains'] else 'fails'}"] += 1
    return counts


def search(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The thresholds (decades) that classify the most rows right; ties go to the widest band."""
    best: tuple[int, float, dict[str, float]] | None = None
    for vanish_half in range(-2, -17, -1):  # half decades
        for explode_exp in range(1, 9):
            for norm_exp in range(explode_exp, 13):
                vanish_exp = vanish_half / 2
                thresholds = {"vanish": round(10.0 ** vanish_exp, 6),
                              "explode": 10.0 ** explode_exp,
                              "explode_normalized": 10.0 ** norm_exp}
                right = 0
                for row in rows:
                    verdict = verdict_with(row["ratio"], row["normalized"], **thresholds)
                    right += (verdict == "healthy") == row["trains"]
                width = -vanish_exp + explode_exp + norm_exp
                if best is None or (right, width) > (best[0], best[1]):
                    best = (right, width, thresholds)
    assert best is not None
    return {"correct": best[0], "of": len(rows), **best[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default="", help="only architectures whose name contains this")
    parser.add_argument("--relabel", action="store_true",
                        help="recompute labels and the summary from the stored results")
    args = parser.parse_args()
    if args.relabel:
        import keras

        builders = labelled_set()
        rows = json.loads(OUT.read_text())["architectures"]
        for row in rows:
            row["trains"] = trains_from_means(row["loss_first5"], row["loss_last10"])
            keras.backend.clear_session()
            row.update(_prediction(builders[row["name"]](keras)))  # the engine as it is now
        summarise(rows)
        return
    import keras

    from app.worker.training import run_training

    rows: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}
    if OUT.exists() and args.only:  # rerun some, keep the others
        done = {row["name"]: row for row in json.loads(OUT.read_text())["architectures"]}
    print(f"{'architecture':<36}{'ratio':>10}{'norm':>6}{'verdict':>11}{'loss':>16}{'trains':>8}"
          f"{'s':>6}", flush=True)
    for name, build in labelled_set().items():
        if args.only and args.only not in name:
            if name in done:
                rows.append(done[name])
            continue
        keras.backend.clear_session()
        gc.collect()
        started = time.monotonic()
        model = build(keras)
        prediction = _prediction(model)
        result = run_training(model, dict(RECIPE), time_limit_s=600)
        losses = [None if v is None else float(v) for v in result["history"]["loss"]]
        label = trains(losses)
        row = {
            "name": name, "params": model.count_params(), **prediction,
            "loss_first5": _mean(losses[:5]), "loss_last10": _mean(losses[-10:]),
            "trains": label, "seconds": round(time.monotonic() - started, 1),
        }
        rows.append(row)
        first, last = row["loss_first5"], row["loss_last10"]
        loss_text = f"{first:.2f}->{last:.2f}" if first is not None and last is not None else "n/a"
        ratio = row["ratio"]
        print(f"{name:<36}{(f'{ratio:.2g}' if ratio is not None else 'n/a'):>10}"
              f"{'yes' if row['normalized'] else 'no':>6}{str(row['verdict']):>11}"
              f"{loss_text:>16}{'yes' if label else 'no':>8}{row['seconds']:>6.0f}", flush=True)
        OUT.write_text(json.dumps({"recipe": RECIPE, "architectures": rows}, indent=1) + "\n")
    summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> None:
    """Write the results with the confusion matrix, and print it as a Markdown table."""
    best = search(rows)
    matrix = confusion(rows)
    OUT.write_text(json.dumps({
        "recipe": RECIPE,
        "label": "trains: finite, and the mean loss of the last 10 steps < 0.8 x both the mean "
                 "of the first 5 and ln(10) (a uniform guess)",
        "rule": {"vanishing_below": gradient_flow.VANISHING_RATIO,
                 "exploding_above": gradient_flow.EXPLODING_RATIO,
                 "exploding_above_with_normalization": gradient_flow.NORMALIZED_EXPLODING_RATIO},
        "confusion": matrix, "best_thresholds_on_this_set": best, "architectures": rows,
    }, indent=1) + "\n")
    print()
    print("| predicted verdict | trains | does not train |")
    print("|---|---:|---:|")
    print(f"| healthy | {matrix['healthy_trains']} | {matrix['healthy_fails']} |")
    print(f"| vanishing or exploding | {matrix['flagged_trains']} | {matrix['flagged_fails']} |")
    print(f"\nbest thresholds on this set: {best}")


def _prediction(model: Any) -> dict[str, Any]:
    """The report's predicted ratio, normalization flag and verdict for a built model."""
    predicted = analyze(json.loads(model.to_json()))["gradient_flow"]["predicted"]
    return {"ratio": predicted.get("ratio"), "log10_ratio": predicted.get("log10_ratio"),
            "normalized": bool(predicted.get("normalized")), "verdict": predicted.get("verdict")}


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return round(sum(kept) / len(kept), 4) if kept else None


if __name__ == "__main__":
    main()
