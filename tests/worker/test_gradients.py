"""Measured gradient flow: the probe against a hand-written GradientTape, the seed's claims
(a deep plain sigmoid stack vanishes; Example 3 is healthy and its skips carry gradient),
dead units, and the skip-removal graph rewrite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.analysis.gradient_flow import EXPLODING_RATIO, VANISHING_RATIO
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
    assert measured["first_to_last_ratio"] < VANISHING_RATIO
    assert measured["log10_first_to_last_ratio"] < -6  # orders of magnitude, not a borderline case
    norms = [row["grad_norm"] for row in measured["layers"] if row.get("grad_norm") is not None]
    assert len(norms) == 20
    # the gradient shrinks layer after layer going backwards through the sigmoid stack
    assert all(a < b for a, b in zip(norms[:-1], norms[1:], strict=False))
    assert measured["skip_ablation"]["status"] == "not_applicable"
    assert measured["thresholds"] == {
        "vanishing_ratio": VANISHING_RATIO,
        "exploding_ratio": EXPLODING_RATIO,
    }
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
    assert VANISHING_RATIO < measured["first_to_last_ratio"] < EXPLODING_RATIO
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
    merged = keras.layers.Concatenate()([dead, alive])
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(merged))
    measured = measure(keras.Model(inputs, outputs), batches=2, batch_size=8, ablation=False)
    rows = {row["name"]: row for row in measured["layers"]}
    assert rows["dead"]["dead_fraction"] == 1.0
    assert rows["alive"]["dead_fraction"] < 0.5
    assert rows["concatenate"]["dead_fraction"] is None  # not a ReLU-family layer
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
