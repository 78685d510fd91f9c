"""Synthetic inputs and targets shaped like a model's inputs and outputs.

Shared by the gradient probe and the training runs. Labels match the output:
a softmax output gets one-hot labels and categorical cross-entropy, any other
output gets real-valued targets and mean squared error.

Example::

    >>> spec = describe_model_io(model)                          # doctest: +SKIP
    >>> [o.loss for o in spec.outputs]                            # doctest: +SKIP
    ['categorical_crossentropy']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from app.errors import InvalidArchitecture

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: Spatial dims left unknown by the model (``None``) are probed at this size.
DEFAULT_UNKNOWN_DIM = 64


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its shape without the batch dim, dtype, and loss."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    loss: str = "mse"  # "categorical_crossentropy" | "binary_crossentropy" | "mse"
    assumed_dims: tuple[int, ...] = field(default=())  # axes whose None was replaced

    @property
    def classes(self) -> int:
        return int(self.shape[-1]) if self.shape else 1


@dataclass(frozen=True)
class ModelIO:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [
                {"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in self.inputs
            ],
            "outputs": [
                {"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "loss": s.loss}
                for s in self.outputs
            ],
        }


def _concrete(
    shape: Any, *, what: str, unknown_dim: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    dims = list(shape)[1:]
    assumed = tuple(i for i, d in enumerate(dims) if d is None)
    concrete = tuple(unknown_dim if d is None else int(d) for d in dims)
    if any(d <= 0 for d in concrete):
        raise InvalidArchitecture(
            f"The model's {what} has a non-positive dimension. Received: {list(shape)}"
        )
    return concrete, assumed


def output_activation_name(model: keras.Model, index: int) -> str | None:
    """The name of the activation that produces output ``index`` (``"softmax"``, ...)."""
    history = getattr(model.outputs[index], "_keras_history", None)
    layer = getattr(history, "operation", None) if history is not None else None
    if layer is None:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", None) or type(activation).__name__.lower()


def describe_model_io(model: keras.Model, *, unknown_dim: int = DEFAULT_UNKNOWN_DIM) -> ModelIO:
    """Concrete shapes and a loss for each input and output of a built model."""
    inputs = []
    for tensor in model.inputs:
        shape, assumed = _concrete(tensor.shape, what="input", unknown_dim=unknown_dim)
        inputs.append(
            TensorSpec(getattr(tensor, "name", "input"), shape, str(tensor.dtype), "none", assumed)
        )
    outputs = []
    for index, tensor in enumerate(model.outputs):
        shape, assumed = _concrete(tensor.shape, what="output", unknown_dim=unknown_dim)
        activation = output_activation_name(model, index)
        if activation == "softmax" and shape and shape[-1] > 1:
            loss = "categorical_crossentropy"
        elif activation == "sigmoid":
            loss = "binary_crossentropy"
        else:
            loss = "mse"
        outputs.append(
            TensorSpec(getattr(tensor, "name", "output"), shape, str(tensor.dtype), loss, assumed)
        )
    return ModelIO(tuple(inputs), tuple(outputs))


def random_inputs(io: ModelIO, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Standard-normal float inputs (small integers for integer inputs)."""
    arrays = []
    for spec in io.inputs:
        if "int" in spec.dtype:
            arrays.append(rng.integers(0, 10, size=(batch_size, *spec.shape)).astype(spec.dtype))
        else:
            arrays.append(rng.standard_normal((batch_size, *spec.shape)).astype("float32"))
    return arrays


def random_targets(io: ModelIO, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Targets that match each output's loss: one-hot, 0/1, or standard normal."""
    arrays = []
    for spec in io.outputs:
        arrays.append(
            _targets_for(spec, rng.integers(0, spec.classes, size=batch_size), rng, batch_size)
        )
    return arrays


def _targets_for(
    spec: TensorSpec, labels: np.ndarray, rng: np.random.Generator, batch_size: int
) -> np.ndarray:
    if spec.loss == "categorical_crossentropy":
        onehot = np.zeros((batch_size, *spec.shape), dtype="float32")
        flat = onehot.reshape(batch_size, -1, spec.classes)
        flat[np.arange(batch_size), :, labels] = 1.0
        return flat.reshape(onehot.shape)
    if spec.loss == "binary_crossentropy":
        return (rng.random((batch_size, *spec.shape)) < 0.5).astype("float32")
    return rng.standard_normal((batch_size, *spec.shape)).astype("float32")


def _class_patterns(classes: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One pattern per class: a per-channel offset plus a smooth (low-frequency) random field.

    Channel offsets survive global pooling and smooth fields survive strides, so
    any reasonable architecture can tell the classes apart.
    """
    if not shape:
        return rng.standard_normal((classes,)).astype("float32")
    channels = shape[-1]
    offsets = rng.standard_normal((classes, *([1] * (len(shape) - 1)), channels))
    spatial = shape[:-1]
    if spatial:
        coarse_shape = tuple(min(4, d) for d in spatial)
        coarse = rng.standard_normal((classes, *coarse_shape, channels))
        field = coarse
        for axis, (size, small) in enumerate(zip(spatial, coarse_shape, strict=True), start=1):
            index = np.minimum((np.arange(size) * small) // size, small - 1)
            field = np.take(field, index, axis=axis)
        patterns = offsets + 0.5 * field
    else:
        patterns = np.broadcast_to(offsets, (classes, channels))
    return np.ascontiguousarray(patterns, dtype="float32")


@dataclass
class PrototypeTask:
    """A learnable synthetic task: K classes, each a fixed random input pattern.

    ``x = pattern[k] + noise`` and the target of class ``k`` is fixed:
    one-hot ``k`` for softmax outputs, a fixed 0/1 pattern for sigmoid outputs,
    a fixed random vector for the rest. A model that can learn anything can
    learn this, so its loss must fall.

    Example::

        >>> task = PrototypeTask.for_model(io, seed=0)        # doctest: +SKIP
        >>> xs, ys = task.batch(32, np.random.default_rng(1))  # doctest: +SKIP
    """

    io: ModelIO
    classes: int
    prototypes: list[np.ndarray]
    class_targets: list[np.ndarray]
    noise: float = 0.5

    @classmethod
    def for_model(cls, io: ModelIO, *, seed: int, noise: float = 0.5) -> PrototypeTask:
        rng = np.random.default_rng(seed)
        softmax_classes = [s.classes for s in io.outputs if s.loss == "categorical_crossentropy"]
        classes = max(2, min(softmax_classes) if softmax_classes else 10)
        prototypes = [_class_patterns(classes, spec.shape, rng) for spec in io.inputs]
        targets = []
        for spec in io.outputs:
            labels = np.arange(classes) % spec.classes
            targets.append(_targets_for(spec, labels, rng, classes))
        return cls(io, classes, prototypes, targets, noise)

    def batch(
        self, batch_size: int, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        labels = rng.integers(0, self.classes, size=batch_size)
        xs = []
        for spec, prototype in zip(self.io.inputs, self.prototypes, strict=True):
            x = prototype[labels] + self.noise * rng.standard_normal(
                (batch_size, *spec.shape)
            ).astype("float32")
            xs.append(
                x.astype("float32") if "int" not in spec.dtype else np.abs(x).astype(spec.dtype)
            )
        ys = [target[labels] for target in self.class_targets]
        return xs, ys


def build_loss(io: ModelIO) -> Any:
    """``loss(y_true: list, y_pred: list) -> scalar`` summing each output's loss (batch mean).

    Categorical cross-entropy for softmax outputs, binary cross-entropy for
    sigmoid outputs, mean squared error otherwise.
    """
    import keras

    functions = {
        "categorical_crossentropy": keras.losses.categorical_crossentropy,
        "binary_crossentropy": keras.losses.binary_crossentropy,
        "mse": keras.losses.mean_squared_error,
    }
    per_output = [functions[spec.loss] for spec in io.outputs]

    def loss(y_true: list[Any], y_pred: list[Any]) -> Any:
        total = 0.0
        for function, truth, prediction in zip(per_output, y_true, y_pred, strict=True):
            total = total + keras.ops.mean(function(truth, prediction))
        return total

    return loss
