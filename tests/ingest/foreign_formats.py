"""Write the model files of other frameworks that people upload by mistake (never run by the tests).

The 415 for these names the format and says how to export to Keras; the tests read the files
written here (``tests/ingest/foreign/``):

- ``model.tflite``: a small Keras CNN converted with ``tf.lite.TFLiteConverter``;
- ``saved_model.zip`` / ``saved_model.tar.gz``: the same model written by
  ``tf.saved_model.save``, zipped and tarred as people send a SavedModel directory;
- ``model.onnx``: a small convolution graph built with the ``onnx`` package
  (``pip install onnx`` to regenerate; convlens itself does not depend on it);
- ``model.pt`` / ``legacy.pt``: PyTorch's ``torch.save`` formats. PyTorch is not installed
  here, so they are written to its documented layouts: the zip format (``<name>/data.pkl``,
  ``<name>/version``, ``<name>/byteorder``, ``<name>/data/0``) and the legacy format (a
  pickle that starts with torch's magic number).

Run::

    python -m tests.ingest.foreign_formats
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "foreign"
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _keras_model():  # noqa: ANN202
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def write_tensorflow(out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    model = _keras_model()
    (out / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "exported"
        tf.saved_model.save(model, str(directory))
        with zipfile.ZipFile(out / "saved_model.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    archive.write(path, f"exported/{path.relative_to(directory)}")
        with tarfile.open(out / "saved_model.tar.gz", "w:gz") as archive:
            archive.add(directory, arcname="exported")


def write_onnx(out: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
        "tiny_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        initializer=[weight],
    )
    model = helper.make_model(graph, producer_name="pytorch", producer_version="2.5")
    onnx.checker.check_model(model)
    (out / "model.onnx").write_bytes(model.SerializeToString())


def write_pytorch(out: Path) -> None:
    state = {"conv.weight": [[0.0] * 9] * 4, "conv.bias": [0.0] * 4}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model/data.pkl", pickle.dumps(state, protocol=2))
        archive.writestr("model/byteorder", b"little")
        archive.writestr("model/data/0", struct.pack("<36f", *([0.0] * 36)))
        archive.writestr("model/version", b"3\n")
    (out / "model.pt").write_bytes(buffer.getvalue())
    legacy = io.BytesIO()
    for value in (TORCH_LEGACY_MAGIC, 1001, {"protocol_version": 1001}, state):
        pickle.dump(value, legacy, protocol=2)
    (out / "legacy.pt").write_bytes(legacy.getvalue())


def main() -> int:
    OUT.mkdir(exist_ok=True)
    write_pytorch(OUT)
    write_onnx(OUT)
    write_tensorflow(OUT)
    for path in sorted(OUT.iterdir()):
        print(f"{path.name:22} {path.stat().st_size:>9,} bytes")
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
