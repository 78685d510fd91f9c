"""Save the real small models the hostile corpus is mutated from (run in a fresh interpreter).

Run as ``python -m tests.security.base_models OUT_DIR CANARY_DIR``. Keras/TensorFlow are
imported only here, never in the test process that serves requests. Writes into OUT_DIR:

- ``base.keras``, ``base.h5``, ``base.json``: a small Keras 3 CNN (Conv2D, BatchNorm, pooling,
  Dense) saved each way;
- ``lambda.keras``, ``lambda.h5``, ``lambda.json``: the same with a Lambda layer whose
  marshalled bytecode writes ``CANARY_DIR/lambda-<format>`` when executed;
- ``tf_keras.json``: a tf.keras 2.x model with a TFOpLambda (``x * 2.0``);
- ``tf_keras_lambda.h5``: a tf.keras 2.x legacy .h5 with a canary-writing Lambda;
- ``manifest.json``: keras / tf_keras versions and the canary paths embedded in the code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _canary_lambda(canary: Path):  # noqa: ANN202 - a lambda built from source
    # eval() so that the canary path is a constant inside the marshalled code object. Keras
    # calls the function while building the model; the environment flag keeps that quiet.
    source = (
        "lambda x: (__import__('os').environ.get('CONVLENS_CORPUS_BUILDING') or "
        f"__import__('pathlib').Path({str(canary)!r}).write_text('ran'), x)[1]"
    )
    return eval(source)  # noqa: S307 - test payload on purpose


def build(out_dir: Path, canary_dir: Path) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["CONVLENS_CORPUS_BUILDING"] = "1"
    import keras

    out_dir.mkdir(parents=True, exist_ok=True)
    canaries: dict[str, str] = {}

    def small_cnn(with_lambda: Path | None) -> keras.Model:
        inputs = keras.Input((16, 16, 3), name="image")
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        if with_lambda is not None:
            x = keras.layers.Lambda(_canary_lambda(with_lambda), name="payload")(x)
        x = keras.layers.MaxPooling2D(name="pool")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
        return keras.Model(inputs, outputs, name="small_cnn")

    base = small_cnn(None)
    base.save(out_dir / "base.keras")
    base.save(out_dir / "base.h5")
    (out_dir / "base.json").write_text(base.to_json())
    for fmt in ("keras", "h5", "json"):
        canary = canary_dir / f"lambda-{fmt}"
        canaries[f"lambda.{fmt}"] = str(canary)
        model = small_cnn(canary)
        if fmt == "json":
            (out_dir / "lambda.json").write_text(model.to_json())
        else:
            model.save(out_dir / f"lambda.{fmt}")
        keras.backend.clear_session()

    import tf_keras

    inputs = tf_keras.Input((16, 16, 3), name="image")
    x = tf_keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = x * 2.0  # recorded as TFOpLambda(function="math.multiply")
    x = tf_keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = tf_keras.layers.Dense(2, name="head")(x)
    tfk_model = tf_keras.Model(inputs, outputs, name="tf_keras_cnn")
    (out_dir / "tf_keras.json").write_text(tfk_model.to_json())

    canary = canary_dir / "lambda-tf-keras-h5"
    canaries["tf_keras_lambda.h5"] = str(canary)
    inputs = tf_keras.Input((16, 16, 3), name="image")
    x = tf_keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = tf_keras.layers.Lambda(_canary_lambda(canary), name="payload")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = tf_keras.layers.Dense(2, name="head")(x)
    tf_keras.Model(inputs, outputs).save(out_dir / "tf_keras_lambda.h5")

    written = [path for path in canaries.values() if Path(path).exists()]
    if written:
        raise RuntimeError(f"building the corpus wrote canaries: {written}")
    manifest = {
        "keras_version": keras.__version__,
        "tf_keras_version": tf_keras.__version__,
        "canaries": canaries,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
