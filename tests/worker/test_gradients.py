"""Measured gradient flow: the probe against a hand-written GradientTape, the seed's claims
(a deep plain sigmoid stack vanishes; Example 3 is healthy and its skips carry gradient),
dead units, and the skip-removal graph rewrite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.analysis import analyze, gradient_flow
from app.analysis.gradient_flow import (
    EXPLODING_RATIO,
    NORMALIZED_EXPLODING_RATIO,
    QUANTITY,
    VANISHING_RATIO,
    attach_measurement,
)
from app.worker.data import describe_model_io, random_inputs, random_targets
from app.worker.gradients import measure, remove_skip_connections
from app.worker.loader import load_model
from tests.fixtures.load import FIXTURES_DIR, load_config
from tests.worker.models import plain_sigmoid_cnn


@pytest.fixture(scope="module")
def example3_small():  # type: ignore[no-untyped-def]
    """The seed's Example 3 from the stored fixture, rebuilt at 32x32x3 (instead of 128x128x3)
    so that it runs in seconds on two CPU cores; the layers and parameters are the same."""
    return load_model(
        load_config(FIXTURES_DIR / "seed" / "example3.json"), None, "json", input_shape=[32, 32, 3]
    )


def test_probe_matches_a_hand_written_gradient_tape() -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    model = plain_sigmoid_cnn(depth=4, input_shape=(8, 8, 3))
    measured = measure(model, batches=1, batch_size=4, seed=7, ablation=False)
    io = describe_model_io(model)
    rng = np.random.default_rng(7)
    x = random_inputs(io, 4, rng)[0]
    y = random_targets(io, 4, rng)[0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    by_name = {row["name"]: row["grad_norm"] for row in measured["weights"]}
    for weight, grad in zip(model.trainable_weights, grads, strict=True):
        assert by_name[weight.path] == pytest.approx(float(tf.norm(grad)), rel=1e-4)
    assert measured["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert measured["io"]["outputs"][0]["loss"] == "categorical_crossentropy"


def test_twenty_layer_plain_sigmoid_cnn_vanishes() -> None:
    model = plain_sigmoid_cnn(depth=20)
    measured = measure(model, batches=4, batch_size=8, seed=0)
    assert measured["verdict"] == "vanishing"
    assert measured["first_layer"] == "conv1" and measured["last_layer"] == "head"
    assert measured["ratio"] < VANISHING_RATIO
    assert measured["log10_ratio"] < -6  # orders of magnitude, not a borderline case
    assert measured["quantity"] == QUANTITY["name"]
    values = list(measured["per_layer"].values())
    assert list(measured["per_layer"]) == [f"conv{i}" for i in range(1, 20)] + ["head"]
    # the gradient shrinks layer after layer going backwards through the sigmoid stack
    assert all(a < b for a, b in zip(values[:-1], values[1:], strict=False))
    assert measured["skip_ablation"]["status"] == "not_applicable"
    assert measured["thresholds"] == {
        "vanishing_ratio": VANISHING_RATIO,
        "exploding_ratio": EXPLODING_RATIO,
        "exploding_ratio_with_normalization": NORMALIZED_EXPLODING_RATIO,
    }
    assert any("training mode" in text for text in measured["assumptions"])
    sigmoid_means = [
        row["activation_mean"] for row in measured["layers"] if row["name"].startswith("conv")
    ]
    assert all(0.0 < m < 1.0 for m in sigmoid_means)
    json.dumps(measured)  # stored as JSON on the job row


def test_example3_is_healthy_and_its_skips_carry_gradient_to_the_early_layers(
    example3_small,
) -> None:  # type: ignore[no-untyped-def]
    measured = measure(example3_small, batches=4, batch_size=8, seed=0)
    assert measured["verdict"] == "healthy"
    assert VANISHING_RATIO < measured["ratio"] < EXPLODING_RATIO
    ablation = measured["skip_ablation"]
    assert ablation["status"] == "measured"
    assert [item["add"] for item in ablation["removed_adds"]] == ["add", "add_1"]
    assert (
        ablation["removed_adds"][0]["shortcut"] == "conv2d"
    )  # the stem's output is the identity path
    assert len(ablation["early_layers"]) >= 2
    early = [row for row in ablation["layers"] if row["name"] in ablation["early_layers"]]
    assert all(row["ratio"] < 1.0 for row in early)
    assert ablation["early_layers_mean_ratio"] < 0.7
    # the first layer loses the most: its gradient crossed both removed skips
    assert ablation["layers"][0]["ratio"] == min(row["ratio"] for row in ablation["layers"])
    relu_rows = [row for row in measured["layers"] if row["class_name"] == "Conv2D"]
    assert all(
        row["dead_fraction"] is not None and 0.0 <= row["dead_fraction"] <= 1.0 for row in relu_rows
    )


def test_measurement_is_deterministic_for_a_seed(example3_small) -> None:  # type: ignore[no-untyped-def]
    first = measure(example3_small, batches=2, batch_size=4, seed=3, ablation=False)
    second = measure(example3_small, batches=2, batch_size=4, seed=3, ablation=False)
    assert [r["grad_norm"] for r in first["weights"]] == pytest.approx(
        [r["grad_norm"] for r in second["weights"]]
    )


def test_dead_relu_units_are_counted() -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    dead = keras.layers.Conv2D(
        4,
        3,
        padding="same",
        activation="relu",
        bias_initializer=keras.initializers.Constant(-1e3),
        name="dead",
    )(inputs)
    alive = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="alive")(inputs)
    # named: Keras numbers unnamed layers per process (concatenate_1 after another test's)
    merged = keras.layers.Concatenate(name="merged")([dead, alive])
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(merged))
    measured = measure(keras.Model(inputs, outputs), batches=2, batch_size=8, ablation=False)
    rows = {row["name"]: row for row in measured["layers"]}
    assert rows["dead"]["dead_fraction"] == 1.0
    assert rows["alive"]["dead_fraction"] < 0.5
    assert rows["merged"]["dead_fraction"] is None  # not a ReLU-family layer
    assert measured["io"]["outputs"][0]["loss"] == "mse"


def test_projection_shortcuts_are_recognised_and_pruned() -> None:
    """A ResNet downsampling block: the 1x1 projection is the shortcut, the 3x3 pair the branch."""
    import keras

    inputs = keras.Input((16, 16, 8))
    branch = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="b1")(
        inputs
    )
    branch = keras.layers.Conv2D(16, 3, padding="same", name="b2")(branch)
    projection = keras.layers.Conv2D(16, 1, strides=2, name="proj")(inputs)
    out = keras.layers.Add(name="merge")([projection, branch])
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(out))
    model = keras.Model(inputs, out)
    config, removed, skipped = remove_skip_connections(model.get_config())
    assert removed == [{"add": "merge", "kept_branch": "b2", "shortcut": "proj"}]
    assert skipped == []
    names = [layer["name"] for layer in config["layers"]]
    assert "merge" not in names and "proj" not in names and "b2" in names
    plain = keras.Model.from_config(config)
    assert plain.count_params() == model.count_params() - model.get_layer("proj").count_params()


def test_an_add_of_two_equal_branches_is_not_called_a_skip() -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(inputs)
    out = keras.layers.Dense(1)(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Add(name="sum")([a, b]))
    )
    _, removed, skipped = remove_skip_connections(keras.Model(inputs, out).get_config())
    assert removed == []
    assert skipped[0]["add"] == "sum"


# -- the quantity, measured: the same definition as predicted ---------------------------------


def test_the_measurement_computes_the_quantity_through_the_one_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    original = gradient_flow.log10_layer_gradient_norm

    def spy(log10_mean_square: float, positions: int, averaged: int = 1) -> float:
        calls.append(positions)
        return original(log10_mean_square, positions, averaged)

    monkeypatch.setattr(gradient_flow, "log10_layer_gradient_norm", spy)
    model = plain_sigmoid_cnn(depth=4, input_shape=(8, 8, 3))
    measured = measure(model, batches=1, batch_size=4, seed=0, ablation=False)
    assert calls == [64, 64, 64, 1]  # three convolutions at 8x8 positions, then the head
    assert list(measured["per_layer"]) == ["conv1", "conv2", "conv3", "head"]


def test_the_pre_activation_gradient_is_the_one_a_tape_sees() -> None:
    """The tap reads the tensor each layer hands to its activation: the measured quantity of a
    single sigmoid Dense layer equals the one computed from a hand-written tape."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(6,))
    hidden = keras.layers.Dense(5, activation="sigmoid", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(hidden)
    model = keras.Model(inputs, outputs)
    measured = measure(model, batches=1, batch_size=4, seed=5, ablation=False)
    io = describe_model_io(model)
    rng = np.random.default_rng(5)
    x = random_inputs(io, 4, rng)[0]
    y = random_targets(io, 4, rng)[0]
    layer = model.get_layer("hidden")
    with tf.GradientTape() as tape:
        z = tf.matmul(x, layer.kernel) + layer.bias
        tape.watch(z)
        logits = tf.matmul(tf.sigmoid(z), model.get_layer("head").kernel) + model.get_layer(
            "head").bias
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, tf.nn.softmax(logits)))
    hidden_rms = float(tf.sqrt(tf.reduce_mean(tape.gradient(loss, z) ** 2)))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, tf.nn.softmax(logits)))
    head_rms = float(tf.sqrt(tf.reduce_mean(tape.gradient(loss, logits) ** 2)))
    assert measured["per_layer"]["hidden"] == pytest.approx(hidden_rms / head_rms, rel=1e-3)
    assert layer.activation.__name__ == "sigmoid"  # the tap is gone after the measurement


def test_plain_sigmoid_vanishes_and_its_residual_batchnorm_twin_is_healthy_measured() -> None:
    import keras

    from tests.fixtures.builders import GRADIENT_MODELS

    keras.utils.set_random_seed(0)
    plain = measure(GRADIENT_MODELS["plain20_sigmoid"](keras), batches=2, batch_size=8,
                    ablation=False)
    twin_model = GRADIENT_MODELS["residual_bn20_sigmoid"](keras)
    twin = measure(twin_model, batches=2, batch_size=8)
    assert plain["verdict"] == "vanishing"
    assert twin["verdict"] == "healthy"
    # the skip-connection ablation runs on the quantity: the same weighted layers, compared by
    # name (with BatchNormalization on every branch the plain twin does not vanish either)
    ablation = twin["skip_ablation"]
    assert ablation["status"] == "measured" and len(ablation["removed_adds"]) == 9
    assert [row["name"] for row in ablation["layers"]] == list(twin["per_layer"])
    assert all(row["ratio"] > 0 for row in ablation["layers"])
    merged = attach_measurement(analyze(json.loads(twin_model.to_json())), twin)["gradient_flow"]
    assert merged["agreement"] == "agree"
    assert merged["comparison"]["within_factor"] >= 0.9


FAMOUS_MEASURED = [("ResNet50", {}, 3.0), ("MobileNetV2", {"alpha": 0.35}, 3.0),
                   ("DenseNet121", {}, 15.0), ("EfficientNetB0", {}, 15.0)]
"""(model, options, the largest predicted/measured factor of the ratio allowed): 3x where the
prediction holds it; DenseNet121 and EfficientNetB0 drift further at 32x32 (BENCHMARKS.md
lists the drift at 64x64), and the bound keeps that drift from growing unnoticed."""


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options", "bound"), FAMOUS_MEASURED,
                         ids=[n for n, _, _ in FAMOUS_MEASURED])
def test_famous_networks_are_neither_vanishing_nor_exploding_measured(
    name: str, options: dict[str, float], bound: float
) -> None:
    """Scaled down to 32x32 inputs: measured and predicted verdicts are healthy, and the
    predicted first-to-last ratio is within ``bound`` of the measured one."""
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10,
                                              **options)
    measured = measure(model, batches=1, batch_size=32, ablation=False)
    merged = attach_measurement(analyze(json.loads(model.to_json())), measured)["gradient_flow"]
    assert merged["predicted"]["verdict"] == "healthy"
    assert merged["measured"]["verdict"] == "healthy", merged["measured"]["ratio"]
    assert merged["agreement"] == "agree"
    assert merged["comparison"]["ratio_factor"] <= bound, merged["comparison"]
