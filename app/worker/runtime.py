"""Start TensorFlow in a worker process: quiet logs, GPU memory growth, seeds.

Example::

    >>> info = init_tensorflow(seed=0)        # doctest: +SKIP
    >>> info["device"]                         # doctest: +SKIP
    'cpu'
"""

from __future__ import annotations

import os
from typing import Any

_initialised: dict[str, Any] | None = None


def init_tensorflow(*, seed: int | None = None) -> dict[str, Any]:
    """Import TensorFlow once, turn memory growth on for every GPU, optionally seed.

    Returns a description of the devices: ``{"device": "gpu"|"cpu", "gpus": [...],
    "tensorflow": version, "keras": version}``. Safe to call many times.
    """
    global _initialised
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if _initialised is None:
        import keras
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised by someone else: keep going
                pass
        _initialised = {
            "device": "gpu" if gpus else "cpu",
            "gpus": [gpu.name for gpu in gpus],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    return dict(_initialised)
