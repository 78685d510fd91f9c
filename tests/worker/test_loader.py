"""The loader: Keras 3 and Keras 2 (tf.keras) configs, input-shape overrides, uploaded weights,
and safe_mode. Cross-checked against Keras building the same models itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.errors import DomainError, InvalidArchitecture
from app.worker.loader import load_model, normalize_config
from tests.fixtures.load import FIXTURES_DIR, load_config
from tests.worker.models import seed_example3

SEED = FIXTURES_DIR / "seed"


def test_worker_modules_do_not_import_tensorflow_at_import_time() -> None:
    code = (
        "import sys, app.worker, app.worker.loader, app.worker.gradients, app.worker.training, "
        "app.worker.data, app.worker.runtime; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("example", ["example1", "example2", "example3"])
def test_keras3_and_tf_keras_configs_give_the_model_keras_builds(example: str) -> None:
    import keras

    keras3 = load_config(SEED / f"{example}.json")
    reference = keras.models.model_from_json(json.dumps(keras3))  # Keras itself, on its own format
    for config in (keras3, load_config(SEED / f"{example}.tfkeras.json")):
        model = load_model(config, None, "json")
        assert model.count_params() == reference.count_params()
        assert [tuple(w.shape) for w in model.weights] == [
            tuple(w.shape) for w in reference.weights
        ]
        assert model.input_shape == reference.input_shape
        assert model.output_shape == reference.output_shape


def test_tf_keras_functional_config_is_rewritten_for_keras3() -> None:
    config = load_config(SEED / "example3.tfkeras.json")
    assert config["class_name"] in ("Functional", "Model") and "module" not in config
    normalized = normalize_config(config)
    assert normalized["module"].startswith("keras")
    assert config.get("module") is None  # the input is not modified


def test_input_shape_override_rebuilds_every_layer_for_the_new_shape() -> None:
    import keras

    config = json.loads(
        keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Conv2D(4, 3),
                keras.layers.Flatten(),
                keras.layers.Dense(5),
            ]
        ).to_json()
    )
    model = load_model(config, None, "json", input_shape=[16, 16, 1])
    expected = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    assert model.input_shape == (None, 16, 16, 1)
    assert model.count_params() == expected.count_params()  # the Dense shrank with the input


def test_example3_at_a_reduced_input_size_keeps_its_parameters() -> None:
    model = load_model(load_config(SEED / "example3.json"), None, "json", input_shape=[32, 32, 3])
    assert model.input_shape == (None, 32, 32, 3)
    assert model.count_params() == seed_example3((32, 32, 3)).count_params()


@pytest.mark.parametrize("fmt,suffix", [("keras", ".keras"), ("h5", ".h5")])
def test_uploaded_weights_are_loaded_even_from_a_blob_without_extension(
    tmp_path: Path, fmt: str, suffix: str
) -> None:
    import keras

    model = seed_example3((16, 16, 3))
    rng = np.random.default_rng(3)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])
    saved = tmp_path / f"model{suffix}"
    model.save(saved)
    blob = tmp_path / "blob-sha256"  # stored uploads have no extension
    blob.write_bytes(saved.read_bytes())
    loaded = load_model(json.loads(model.to_json()), blob, fmt)
    x = rng.standard_normal((2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert isinstance(loaded, keras.Model)


def test_uploaded_weights_follow_an_input_shape_override(tmp_path: Path) -> None:
    model = seed_example3((16, 16, 3))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_model(json.loads(model.to_json()), path, "keras", input_shape=[24, 24, 3])
    assert loaded.input_shape == (None, 24, 24, 3)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_lambda_layer_is_refused_by_safe_mode() -> None:
    """Second line of defence: even if a Lambda got past the static validator,
    Keras's safe_mode refuses to deserialise its bytecode."""
    import keras

    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(1)]
    )
    config = json.loads(model.to_json())
    with pytest.raises(DomainError) as info:
        load_model(config, None, "json")
    assert "lambda" in info.value.detail.lower()


def test_a_config_keras_cannot_read_raises_a_domain_error_saying_so() -> None:
    bad = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_shape": [None, 4]}},
                {"class_name": "Conv2D", "config": {"filters": "three", "kernel_size": 3}},
            ],
        },
    }
    with pytest.raises(InvalidArchitecture) as info:
        load_model(bad, None, "json")
    assert "Keras could not build the model" in info.value.detail


def test_a_model_without_input_shape_is_refused() -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "config": {"units": 2},
                    "registered_name": None,
                },
            ],
        },
    }
    with pytest.raises(InvalidArchitecture) as info:
        load_model(config, None, "json")
    assert "input shape" in info.value.detail


def test_unknown_format_and_not_a_config() -> None:
    with pytest.raises(InvalidArchitecture):
        load_model({"class_name": "Sequential", "config": {}}, None, "onnx")
    with pytest.raises(InvalidArchitecture) as info:
        normalize_config([1, 2])  # type: ignore[arg-type]
    assert "Received" in info.value.detail


def test_input_shape_per_input_rebuilds_a_two_input_model() -> None:
    """The per-input form the analysis accepts also rebuilds the model for jobs (training runs,
    measured gradients): each named input takes its shape, the others keep theirs."""
    import keras

    def two_input_model() -> dict:
        image, mask = keras.Input((32, 32, 3), name="image"), keras.Input((32, 32, 1), name="mask")
        a = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, 2, "same", name="image_conv")(image))
        b = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 5, padding="same")(mask))
        out = keras.layers.Dense(2)(keras.layers.Concatenate()([a, b]))
        return json.loads(keras.Model([image, mask], out).to_json())

    model = load_model(two_input_model(), None, "json", input_shape={"image": [64, 48, 3]})
    assert [tuple(t.shape) for t in model.inputs] == [(None, 64, 48, 3), (None, 32, 32, 1)]
    assert tuple(model.get_layer("image_conv").output.shape) == (None, 32, 24, 8)
    both = load_model(two_input_model(), None, "json", input_shape={"image": [16, 16, 3], "mask": [8, 8, 1]})
    assert [tuple(t.shape) for t in both.inputs] == [(None, 16, 16, 3), (None, 8, 8, 1)]
    with pytest.raises(InvalidArchitecture, match="does not have"):
        load_model(two_input_model(), None, "json", input_shape={"picture": [16, 16, 3]})
    with pytest.raises(InvalidArchitecture, match="per input name"):
        load_model(two_input_model(), None, "json", input_shape=[16, 16, 3])
