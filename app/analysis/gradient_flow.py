"""Gradient flow predicted from the architecture alone, at initialization.

The prediction is a mean-field signal-propagation pass (Glorot & Bengio 2010; He et al. 2015),
done per spatial position as He et al. do for convolutions:

- forward, in topological order, the second moment ``q`` of every layer's output, starting from
  unit-variance inputs; a kernel layer's pre-activation variance is
  ``s = fan_in x Var(W) x q_in`` and its output moment ``E[f(z)^2]`` for ``z ~ N(0, s)``;
- backward, from every model output (gradient variance 1 at the output; the output activation
  is folded into the loss, as softmax/sigmoid with cross-entropy are), the variance ``v`` of the
  gradient reaching each tensor: through a kernel layer ``v_in = fan_out x Var(W) x v_pre`` with
  ``v_pre = v_out x E[f'(z)^2]``; through normalization ``v_in = v_out / Var(input)`` (it resets
  the scale); a tensor feeding several layers (a residual Add's identity path) receives the sum.

``Var(W)`` comes from the initializer (glorot/he/lecun variance scaling, random normal/uniform,
truncated normal, constants) and Keras's own fans. Activation gains ``E[f'(z)^2]`` are
integrated numerically (closed forms for the ReLU family): ReLU passes 1/2 of the variance, a
sigmoid at most 1/16.

For every weighted layer the output gives the predicted gradient scale relative to the last
weighted layer, the backward paths to the output (shortest and longest depth in weighted layers,
the skip connections that bypass it, saturating activations and normalizations on the way) and
the numbers behind them. The verdict compares the first weighted layer with the last:
``vanishing`` below :data:`VANISHING_RATIO`, ``exploding`` above :data:`EXPLODING_RATIO`.
The measured gradients (worker side) use the same thresholds through :func:`classify_ratio`.

Example::

    >>> from app.analysis import analyze
    >>> analyze(config)["gradient_flow"]["predicted"]["verdict"]   # doctest: +SKIP
    'healthy'
    >>> classify_ratio(1e-5)
    'vanishing'
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Any

from app.analysis.graph import AnalysisResult, LayerResult
from app.analysis.skips import find_skips
from app.analysis.traits import SKIP_MERGES, Merge, Trait

VANISHING_RATIO = 1e-3
"""First-to-last gradient ratio below which gradient flow is called vanishing (calibrated:
docs/gradient-flow.md; a 30-layer sigmoid stack with BatchNormalization at 16x16, predicted
2.7e-3, trains, a plain 20-layer ReLU stack's 5.6e-4 does not)."""
EXPLODING_RATIO = 1e3
"""First-to-last gradient ratio above which gradient flow is called exploding."""
NORMALIZED_EXPLODING_RATIO = 1e8
"""The same when normalization layers lie on the path (their growth at initialization is
benign up to here: see :func:`classify`)."""

QUANTITY = {
    "name": "pre_activation_gradient_norm",
    "definition": (
        "per weighted layer (convolution or dense), the root mean square over samples and "
        "output channels of the L2 norm over spatial positions of the loss gradient with "
        "respect to the layer's pre-activation (its output before its activation function), "
        "global average pooling downstream counted as a sum, at initialization, divided by "
        "the same for the last weighted layer"
    ),
    "why": (
        "it is the backward signal of signal-propagation theory (He et al. 2015; Schoenholz "
        "et al. 2017) summed over the positions a kernel's gradient sums over, so resolution "
        "changes (strides, pooling) do not move it while a gradient that shrinks or grows "
        "layer after layer does"
    ),
    "unit": "dimensionless ratio (last weighted layer = 1)",
}
"""The one quantity that the prediction and the measurement both report (docs/gradient-flow.md)."""


def log10_layer_gradient_norm(log10_mean_square: float, positions: int, averaged: int = 1
                              ) -> float:
    """The quantity for one layer, in log10 (values span hundreds of decades in broken
    networks), from the log10 mean square of its pre-activation gradient over samples,
    positions and channels, its number of spatial positions P, and the positions A that a
    global average pooling downstream averages over: sqrt(P x A x mean square), the
    per-channel L2 norm over positions with global averaging counted as a sum (so that the
    input resolution does not scale it; see docs/gradient-flow.md). The prediction calls it
    with the mean-field variance, the measurement with the measured mean square: the one
    definition.

    >>> round(log10_layer_gradient_norm(math.log10(0.25), 16), 6)
    0.30103
    >>> round(log10_layer_gradient_norm(math.log10(0.25 / 64), 16, averaged=64), 6)
    0.30103
    """
    # max(positions, 1) and max(averaged, 1) written out, as max() returns them (the first of
    # equal values): CPython 3.11's min() and max() parse their arguments as keywords, about
    # 1,500 instructions a call more than a comparison (here and in the other per-layer places).
    return (log10_mean_square + math.log10(1 if 1 > positions else positions)
            + math.log10(1 if 1 > averaged else averaged)) / 2.0


def layer_gradient_norm(mean_square: float | None, positions: int, averaged: int = 1
                        ) -> float | None:
    """:func:`log10_layer_gradient_norm` for a plain mean square (None when unknown or 0).

    >>> round(layer_gradient_norm(0.25, 16), 9)
    2.0
    >>> layer_gradient_norm(None, 4) is None
    True
    """
    if mean_square is None or not math.isfinite(mean_square) or mean_square <= 0:
        return None
    return 10.0 ** log10_layer_gradient_norm(math.log10(mean_square), positions, averaged)


def global_averaging(result: AnalysisResult) -> dict[str, int]:
    """Per layer, the spatial positions that global average pooling on its way to an output
    averages over (1 when none), for the quantity's definition: the fewest over its paths, so
    that a squeeze-and-excitation gate's own pooling (a side path) does not count. Both the
    prediction and the measurement read it from the analysed graph.

    >>> global_averaging(result)["conv2d"]   # doctest: +SKIP
    1024
    """
    successors = result.successors()
    by_name = result.by_name()
    outputs = set(result.output_layers)
    global_pooling, averaging = Trait.GLOBAL_POOLING, Trait.AVERAGING  # read once, not per layer
    averaged: dict[str, int] = {}
    for layer in reversed(result.layers):
        found: int | None = 1 if layer.name in outputs else None
        for name in successors.get(layer.name, ()):
            successor = by_name.get(name)
            if successor is None:
                continue
            factor = averaged.get(name, 1)
            if global_pooling in successor.traits and averaging in successor.traits:
                factor *= spatial_positions(
                    successor.input_shapes[0] if successor.input_shapes else None,
                    successor.node.config)
            found = factor if found is None else min(found, factor)
        averaged[layer.name] = found or 1
    return averaged


def relative_profile(norms: list[tuple[str, float | None]]) -> dict[str, Any]:
    """Per-layer values of the quantity relative to the last weighted layer that has one, in
    graph order, and the first-to-last ``ratio``: the same arithmetic for predicted and
    measured values.

    >>> relative_profile([("a", 0.5), ("b", None), ("c", 2.0)])["ratio"]
    0.25
    """
    known = [(name, value) for name, value in norms if value is not None]
    if not known or not known[-1][1]:
        return {"per_layer": {name: None for name, _ in norms}, "ratio": None,
                "log10_ratio": None, "first_layer": None, "last_layer": None}
    last_name, last_value = known[-1]
    per_layer = {name: (value / last_value if value is not None else None)
                 for name, value in norms}
    ratio = per_layer[known[0][0]]
    return {
        "per_layer": per_layer,
        "ratio": ratio,
        "log10_ratio": round(math.log10(ratio), 4) if ratio and math.isfinite(ratio) else None,
        "first_layer": known[0][0],
        "last_layer": last_name,
    }


def spatial_positions(shape: Any, config: dict[str, Any] | None = None) -> int:
    """Spatial positions of a (batch, ..., channels) tensor: the product of the axes between
    batch and channels (1 for a vector; unknown axes count 1).

    >>> spatial_positions([None, 8, 8, 16]), spatial_positions([None, 10])
    (64, 1)
    """
    if not shape or len(shape) < 3:
        return 1
    first = config is not None and config.get("data_format") == "channels_first"
    total = 1  # the product of the known axes (a loop: called for every layer, twice)
    for axis in (shape[2:] if first else shape[1:-1]):
        if isinstance(axis, int) and axis > 0:
            total *= axis
    return total


RATIO_DEFINITION = (
    "the quantity (see gradient_flow.quantity) at the first weighted layer divided by the same "
    "at the last weighted layer; weight_gradient_ratio is a diagnostic for the kernels' own "
    "gradients (input second moment x backpropagated variance)"
)
METHOD = (
    "mean-field signal propagation per spatial position (Glorot & Bengio 2010; He et al. 2015): "
    "forward second moments and backward gradient variances from initializer variances, "
    "Keras fan-in/fan-out and activation gains E[f'(z)^2]"
)
ASSUMPTIONS = [
    "inputs standardized to unit variance after preprocessing layers",
    "pre-activations zero-mean Gaussian; weights independent of activations",
    "pooling, padding, cropping, resizing, reshaping and dropout preserve the scale per position",
    "normalization layers output unit variance (gamma=1, beta=0 at initialization)",
    "the output activation is folded into the loss (gradient variance 1 at the logits)",
    "gradients arriving over several paths add in variance (independent paths)",
]

SATURATING_ACTIVATIONS = frozenset(
    {"sigmoid", "hard_sigmoid", "tanh", "softmax", "softsign", "hard_tanh", "log_sigmoid"}
)
_PASS_THROUGH_PREPROCESSING = frozenset({Trait.IDENTITY, Trait.RESIZING})

# Trait and Merge members that per-layer code reads, bound once: ``Trait.X`` is a lookup on the
# enum class each time, several times slower than a module global (20,000 layers read dozens).
_AVERAGING = Trait.AVERAGING
_DENSE = Trait.DENSE
_DEPTHWISE = Trait.DEPTHWISE
_GLOBAL_POOLING = Trait.GLOBAL_POOLING
_KERNEL = Trait.KERNEL
_NORMALIZATION = Trait.NORMALIZATION
_PADDING = Trait.PADDING
_POOLING = Trait.POOLING
_PREPROCESSING = Trait.PREPROCESSING
_SEPARABLE = Trait.SEPARABLE
_TRANSPOSED = Trait.TRANSPOSED
_AVERAGE = Merge.AVERAGE
_CONCAT = Merge.CONCAT
_PRODUCT = Merge.PRODUCT
_SELECT = Merge.SELECT
_SUM = Merge.SUM


def is_normalization(layer: LayerResult) -> bool:
    return Trait.NORMALIZATION in layer.traits


THRESHOLDS = {"vanishing_below": VANISHING_RATIO, "exploding_above": EXPLODING_RATIO,
              "exploding_above_with_normalization": NORMALIZED_EXPLODING_RATIO}
"""The verdict rule's numbers, as reports show them."""

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)  # read once (the normal CDF is taken for every ReLU)
_LOG_FLOOR = -300.0
_LOG_CEILING = math.log10(sys.float_info.max)
"""log10 of the largest float: what an overflowed second moment (an initializer's stddev of
1e200 squared, a fan times a huge variance) counts as, so that the logs stay finite."""
_MODERATE_LOG = 100.0
"""log10 second moments below this are turned into mixtures in linear units (:func:`_moderate`)."""


def classify(ratio: float | None, *, normalized: bool) -> str | None:
    """The verdict rule, for predicted and measured ratios of the quantity alike.

    ``normalized``: a normalization layer lies on the first weighted layer's path to the
    output. Normalization in training mode makes the backward signal grow with depth at
    initialization (Yang et al. 2019) while such networks train with standard recipes, so
    growth under normalization is called exploding only from
    :data:`NORMALIZED_EXPLODING_RATIO` (see docs/gradient-flow.md for the calibration).

    >>> classify(1e4, normalized=True), classify(1e4, normalized=False)
    ('healthy', 'exploding')
    """
    if ratio is None or math.isnan(ratio):
        return None
    if ratio < VANISHING_RATIO:
        return "vanishing"
    if ratio > (NORMALIZED_EXPLODING_RATIO if normalized else EXPLODING_RATIO):
        return "exploding"
    return "healthy"


def classify_ratio(ratio: float | None) -> str | None:
    """The verdict for a first-to-last gradient ratio (shared with the measured gradients).

    >>> classify_ratio(0.5), classify_ratio(1e-4), classify_ratio(1e4)
    ('healthy', 'vanishing', 'exploding')
    """
    if ratio is None or math.isnan(ratio):
        return None
    if ratio < VANISHING_RATIO:
        return "vanishing"
    if ratio > EXPLODING_RATIO:
        return "exploding"
    return "healthy"


# ---------------------------------------------------------------------------------------------
# Activation gains
# ---------------------------------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _softplus(z: float) -> float:
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


def _gelu(z: float) -> float:
    return 0.5 * z * (1.0 + math.erf(z / _SQRT_2))


def _gelu_grad(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT_2)) + z * math.exp(-0.5 * z * z) / _SQRT_2PI


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _clip_exp(z: float) -> float:
    """exp, its argument clipped at 300 (e^300 ~ 1e130): its square and the quadrature's sums
    stay finite. Float32, which Keras computes in, overflows at e^89 already."""
    return math.exp(min(z, 300.0))


# name -> (f, f'); ReLU-like functions are handled in closed form below.
_SMOOTH: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "softmax": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "hard_sigmoid": (lambda z: min(max(z / 6.0 + 0.5, 0.0), 1.0),
                     lambda z: 1.0 / 6.0 if -3.0 < z < 3.0 else 0.0),
    "tanh": (math.tanh, lambda z: 1.0 - math.tanh(z) ** 2),
    "hard_tanh": (lambda z: min(max(z, -1.0), 1.0), lambda z: 1.0 if -1.0 < z < 1.0 else 0.0),
    "softsign": (lambda z: z / (1.0 + abs(z)), lambda z: 1.0 / (1.0 + abs(z)) ** 2),
    "softplus": (_softplus, _sigmoid),
    "log_sigmoid": (lambda z: -_softplus(-z), lambda z: _sigmoid(-z)),
    "elu": (lambda z: z if z > 0 else math.expm1(z), lambda z: 1.0 if z > 0 else math.exp(z)),
    "selu": (lambda z: _SELU_SCALE * (z if z > 0 else _SELU_ALPHA * math.expm1(z)),
             lambda z: _SELU_SCALE * (1.0 if z > 0 else _SELU_ALPHA * math.exp(z))),
    "gelu": (_gelu, _gelu_grad),
    "silu": (lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))),
    "hard_silu": (lambda z: z * min(max(z / 6.0 + 0.5, 0.0), 1.0),
                  lambda z: 0.0 if z < -3.0 else (1.0 if z > 3.0 else z / 3.0 + 0.5)),
    "mish": (lambda z: z * math.tanh(_softplus(z)),
             lambda z: math.tanh(_softplus(z))
             + z * _sigmoid(z) * (1.0 - math.tanh(_softplus(z)) ** 2)),
    "exponential": (_clip_exp, _clip_exp),
}
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu", "relu6": "relu6", "log_softmax": "linear"}
_RELU_SLOPES = {"relu": 0.0, "relu6": 0.0, "leaky_relu": 0.2, "prelu": 0.25}


_UNIT_GRID = tuple(-10.0 + 0.05 * i for i in range(401))
_ORIGIN_GRID = tuple(-30.0 + 0.05 * i for i in range(1201))


def _expectations(functions: tuple[Callable[[float], float], ...], shift: float, scale: float
                  ) -> list[float]:
    """E[g(z)] for z ~ N(shift, scale^2), for each g, by the trapezoid rule on a grid that
    follows the density (shift + scale * u) and also resolves the region around z = 0, where
    activations bend however wide the distribution is."""
    points = {shift + scale * u for u in _UNIT_GRID}
    low, high = shift - 10.0 * scale, shift + 10.0 * scale
    points.update(z for z in _ORIGIN_GRID if low < z < high)
    grid = sorted(points)
    density = [math.exp(-0.5 * ((z - shift) / scale) ** 2) / (scale * _SQRT_2PI) for z in grid]
    totals = []
    for g in functions:
        values = [g(z) * d for z, d in zip(grid, density, strict=True)]
        totals.append(sum((grid[i + 1] - grid[i]) * (values[i] + values[i + 1]) / 2.0
                          for i in range(len(grid) - 1)))
    return totals


@lru_cache(maxsize=8192)
def _smooth_stats(name: str, log_variance: float, log_mean_sq: float) -> tuple[float, float, float]:
    """E[f(z)], E[f(z)^2], E[f'(z)^2] for z ~ N(m, v), by quadrature (m >= 0: a shared shift)."""
    f, df = _SMOOTH[name]
    scale = 10.0 ** (max(min(log_variance, 30.0), -30.0) / 2.0)
    shift = 0.0 if log_mean_sq <= _LOG_FLOOR else 10.0 ** (min(log_mean_sq, 30.0) / 2.0)
    first, second, slope = _expectations(
        (f, lambda z: f(z) ** 2, lambda z: df(z) ** 2), shift, scale)
    return first, second, slope


def _relu_stats(slope: float, log_variance: float, log_mean_sq: float
                ) -> tuple[float, float, float]:
    """log10 mean^2, log10 variance of max(z, a z) and log10 E[f'^2], z ~ N(m, v), closed form."""
    if log_mean_sq <= _LOG_FLOOR:
        t = 0.0
    else:
        t = min(10.0 ** ((log_mean_sq - log_variance) / 2.0), 40.0)
    cdf = 0.5 * math.erfc(-t / _SQRT_2)
    pdf = math.exp(-0.5 * t * t) / _SQRT_2PI
    positive_first, negative_first = t * cdf + pdf, t * (1.0 - cdf) - pdf
    positive_second = (t * t + 1.0) * cdf + t * pdf
    negative_second = (t * t + 1.0) * (1.0 - cdf) - t * pdf
    first = positive_first + slope * negative_first
    second = positive_second + slope * slope * negative_second
    variance = max(second - first * first, 1e-12 * second)
    grad = cdf + slope * slope * (1.0 - cdf)
    return (log_variance + 2.0 * _log10(abs(first)), log_variance + _log10(variance),
            _log10(grad))


def activation_gains(name: str | None, log10_variance: float,
                     log10_mean_sq: float = -300.0) -> tuple[float, float, float, bool]:
    """Statistics of ``f(z)`` for ``z ~ N(m, v)``, all log10: (mean^2, variance, E[f'(z)^2],
    known). ``m`` is a shift shared by all units (e.g. the 1/2 mean of sigmoid outputs).

    >>> round(10 ** activation_gains("relu", 0.0)[2], 3)
    0.5
    >>> round(10 ** activation_gains("sigmoid", -6.0)[2], 4)   # sigmoid'(0)^2 = 1/16
    0.0625
    """
    lowered = (name or "linear").lower()
    key = _ALIASES.get(lowered, lowered)
    if key == "linear":
        return log10_mean_sq, log10_variance, 0.0, True
    if key in _RELU_SLOPES:
        mean_sq, variance, grad = _relu_stats(_RELU_SLOPES[key], log10_variance, log10_mean_sq)
        return mean_sq, variance, grad, True
    if key in _SMOOTH:
        mean_key = round(log10_mean_sq, 2) if log10_mean_sq > log10_variance - 8 else _LOG_FLOOR
        first, second, slope = _smooth_stats(key, round(log10_variance, 2), mean_key)
        variance = max(second - first * first, 1e-12 * second)
        return 2.0 * _log10(abs(first)), _log10(variance), _log10(slope), True
    return log10_mean_sq, log10_variance, 0.0, False


def _log10(value: float) -> float:
    """log10, with zero, negatives and NaN at the floor and infinity at the ceiling.

    >>> _log10(0.0), _log10(float("nan")), _log10(1e200 * 1e200) == _LOG_CEILING
    (-300.0, -300.0, True)
    """
    if value > 0:
        return math.log10(value) if value != math.inf else _LOG_CEILING
    return _LOG_FLOOR


# ---------------------------------------------------------------------------------------------
# Initializers and fans
# ---------------------------------------------------------------------------------------------


def _initializer_parts(value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value.lower().replace("_", ""), {}
    if isinstance(value, dict):
        name = str(value.get("class_name", "")).lower().replace("_", "")
        config = value.get("config")
        return name, config if isinstance(config, dict) else {}
    return "", {}


_VARIANCE_SCALING = {
    "glorotuniform": (1.0, "fan_avg"), "glorotnormal": (1.0, "fan_avg"),
    "heuniform": (2.0, "fan_in"), "henormal": (2.0, "fan_in"),
    "lecununiform": (1.0, "fan_in"), "lecunnormal": (1.0, "fan_in"),
    "xavieruniform": (1.0, "fan_avg"), "xaviernormal": (1.0, "fan_avg"),
}


_SCALING_CLASS_NAMES = frozenset({
    "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal",
})
"""Keras's class names of the variance-scaling initializers of :data:`_VARIANCE_SCALING`."""
assert all(name.lower() in _VARIANCE_SCALING for name in _SCALING_CLASS_NAMES)


def initializer_variance(value: Any, fan_in: int, fan_out: int) -> tuple[float, str, bool]:
    """Second moment of the weights an initializer draws, its name, and whether it is known.

    >>> initializer_variance("he_normal", 288, 576)[0] == 2 / 288
    True
    """
    if isinstance(value, str):  # a name alone (the usual spelling): once per name and fans
        return _named_initializer_variance(value, fan_in, fan_out)
    if type(value) is dict:
        # Keras 3 writes {"class_name": "GlorotUniform", "config": {"seed": null}, ...}: a
        # variance-scaling class reads nothing from its config, so its answer is the one for
        # its class name alone, the same name as _initializer_parts makes of it.
        class_name = value.get("class_name")
        if type(class_name) is str and class_name in _SCALING_CLASS_NAMES:
            return _named_initializer_variance(class_name, fan_in, fan_out)
    return _initializer_variance(value, fan_in, fan_out)


def _initializer_variance(value: Any, fan_in: int, fan_out: int) -> tuple[float, str, bool]:
    """:func:`initializer_variance` (the one definition; a name's answer is cached)."""
    name, config = _initializer_parts(value)
    fan_in, fan_out = max(fan_in, 1), max(fan_out, 1)
    known_scaling = _VARIANCE_SCALING.get(name)
    if known_scaling is not None:  # the usual case: no fans dict built per layer
        scale, mode = known_scaling
        fan = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2.0  # the table's two modes
        return scale / fan, name, True
    fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
    if name == "variancescaling":
        scale = float(config.get("scale", 1.0))
        mode = str(config.get("mode", "fan_in"))
        return scale / fans.get(mode, fan_in), name, True
    if name in ("randomnormal", "normal"):
        stddev, mean = float(config.get("stddev", 0.05)), float(config.get("mean", 0.0))
        return stddev * stddev + mean * mean, name, True
    if name == "truncatednormal":
        stddev, mean = float(config.get("stddev", 0.05)), float(config.get("mean", 0.0))
        # Truncation at two standard deviations keeps 77.4% of the variance.
        return 0.7737 * stddev * stddev + mean * mean, name, True
    if name in ("randomuniform", "uniform"):
        low, high = float(config.get("minval", -0.05)), float(config.get("maxval", 0.05))
        # Products, not powers: a float power that overflows raises, a product is infinite
        # (and _log10 reads infinity as the ceiling).
        width, middle = high - low, (high + low) / 2.0
        return width * width / 12.0 + middle * middle, name, True
    if name in ("zeros", "zero"):
        return 0.0, name, True
    if name in ("ones", "one"):
        return 1.0, name, True
    if name == "constant":
        constant = float(config.get("value", 0.0))
        return constant * constant, name, True
    if name == "orthogonal":
        gain = float(config.get("gain", 1.0))
        return gain * gain / max(fan_in, fan_out), name, True
    if name == "identity":
        gain = float(config.get("gain", 1.0))
        return gain * gain / max(fan_in, fan_out), name, True
    return 1.0 / ((fan_in + fan_out) / 2.0), name or "unknown", False


_named_initializer_variance = lru_cache(maxsize=1024)(_initializer_variance)
""":func:`_initializer_variance` for an initializer given by name: the same for the same fans
(a 10,000-block network asks the same question 10,000 times)."""


def _channels(shape: Any, channels_first: bool) -> int | None:
    """The channels of a (batch, ..., channels) shape, None when unknown or without a shape."""
    if not shape:
        return None
    value = shape[1 if channels_first else -1]
    return value if isinstance(value, int) else None


_MAX_TAPS = 2**53
"""Taps of a kernel, or channels (units) on either side of it, beyond which it is not modelled:
its fans could be integers past float range (a hostile config's 1e300 x 1e300 kernel or 1.7e308
filters), whose products with a variance raise."""


@dataclass(slots=True)
class KernelModel:
    """How one kernel of a weighted layer moves the signal.

    ``forward_fan``: inputs summed into one output; ``backward_fan``: outputs one input feeds;
    ``variance``: second moment of the weights.
    """

    forward_fan: float
    backward_fan: float
    variance: float
    initializer: str
    keras_fan_in: int
    keras_fan_out: int
    known: bool


def kernel_models(layer: LayerResult) -> list[KernelModel] | None:
    """The kernels of a weighted layer in forward order, or None if it has no kernel we model.
    A convolution's kernel, strides, groups and depth multiplier are its :class:`Window`, as its
    rule read them."""
    traits = layer.traits
    if _KERNEL not in traits:
        return None
    config = layer.node.config
    if _DENSE in traits:
        if (layer.fan_in is None or layer.fan_out is None
                or layer.fan_in > _MAX_TAPS or layer.fan_out > _MAX_TAPS):
            return None
        variance, name, known = initializer_variance(config.get("kernel_initializer"),
                                                     layer.fan_in, layer.fan_out)
        return [KernelModel(layer.fan_in, layer.fan_out, variance, name, layer.fan_in,
                            layer.fan_out, known)]
    window = layer.window
    first = layer.channels_first
    c_in = _channels(layer.input_shapes[0] if layer.input_shapes else None, first)
    c_out = _channels(layer.output_shapes[0] if layer.output_shapes else None, first)
    if c_in is None or c_out is None or window is None:
        return None
    area = window.taps
    if area > _MAX_TAPS or c_in > _MAX_TAPS or c_out > _MAX_TAPS:
        return None  # a kernel no network has (refused for its parameters): not modelled
    if _DEPTHWISE in traits and _SEPARABLE not in traits:
        multiplier = window.multiplier
        fan_in, fan_out = area * c_in, area * multiplier  # as Keras computes them
        variance, name, known = initializer_variance(
            config.get("depthwise_initializer"), fan_in, fan_out)
        return [KernelModel(area, area * multiplier, variance, name, fan_in, fan_out, known)]
    if _SEPARABLE in traits:
        multiplier = window.multiplier
        d_in, d_out = area * c_in, area * multiplier
        dv, dname, dknown = initializer_variance(config.get("depthwise_initializer"), d_in, d_out)
        p_in, p_out = c_in * multiplier, c_out
        pv, pname, pknown = initializer_variance(config.get("pointwise_initializer"), p_in, p_out)
        return [KernelModel(area, area * multiplier, dv, dname, d_in, d_out, dknown),
                KernelModel(p_in, p_out, pv, pname, p_in, p_out, pknown)]
    if _TRANSPOSED in traits:
        fan_in, fan_out = area * c_out, area * c_in  # Keras reads the transposed kernel shape
        variance, name, known = initializer_variance(config.get("kernel_initializer"),
                                                     fan_in, fan_out)
        overlap = max(area / max(math.prod(window.strides), 1), 1.0)
        return [KernelModel(overlap * c_in, area * c_out, variance, name, fan_in, fan_out, known)]
    groups = window.groups
    fan_in, fan_out = area * c_in // groups, area * c_out // groups
    variance, name, known = initializer_variance(config.get("kernel_initializer"), fan_in, fan_out)
    return [KernelModel(fan_in, fan_out, variance, name, fan_in, fan_out, known)]


# ---------------------------------------------------------------------------------------------
# The prediction
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _border_axis(size: int, out: int, kernel: int, stride: int, dilation: int, left: int
                 ) -> tuple[float, float]:
    """Along one axis of a convolution whose input has ``size`` real positions (``left``
    zeros padded before them) and whose output has ``out``: the mean over outputs of the
    share of the ``kernel`` taps that read a real position, and sum_t c_t^2 / (out^2 kernel)
    with c_t the outputs whose tap t is real (what the per-channel mean of a shifted input
    keeps). Both are 1 away from the borders.

    >>> _border_axis(2, 2, 3, 1, 1, 1)   # a 3-tap 'same' convolution on 2 positions
    (0.6666666666666666, 0.5)
    >>> _border_axis(64, 64, 1, 1, 1, 0)
    (1.0, 1.0)
    """
    total = square = 0
    # Only the taps that reach a real position for some output count: those with
    # -size < low <= (out - 1) * stride. The others (a kernel far wider than the input, as a
    # hostile config may declare: 10^12 taps) read padding only and add nothing.
    first_tap = max(0, -(-(left - (out - 1) * stride) // dilation))
    stop_tap = min(kernel, -(-(left + size) // dilation))
    for tap in range(first_tap, stop_tap):
        low = left - tap * dilation  # tap reads a real position: low <= o * stride < size + low
        first = max(0, -(-low // stride))
        stop = min(out, -(-(size + low) // stride))
        count = stop - first if stop > first else 0
        total += count
        square += count * count
    return total / (out * kernel), square / (out * out * kernel)


def _border(layer: LayerResult, padding: LayerResult | None) -> tuple[float, float, float] | None:
    """How zero padding at the borders of a small feature map changes a convolution: (A, B,
    log10 P_padded / P_real) with A the mean share of its taps that read real positions
    (what both its forward variance and its backward fan are multiplied by) and B the share
    of a shifted input's mean kept as a per-channel offset (A - B of it varies over positions,
    which a normalization counts as variance); None when no tap reads padding.
    ``padding``: the ZeroPadding layer feeding it, whose zeros count as padding too.
    Computed once per geometry (a 10,000-block chain has a handful)."""
    window = layer.window
    in_shape = layer.input_shapes[0] if layer.input_shapes else None
    out_shape = layer.output_shapes[0] if layer.output_shapes else None
    if (window is None or not in_shape or not out_shape or len(in_shape) < 3
            or _TRANSPOSED in layer.traits):
        return None
    key = (tuple(in_shape), tuple(out_shape), window.kernel, window.strides, window.dilation,
           window.padding, layer.channels_first,
           None if padding is None else _frozen(padding.node.config.get("padding", 1)))
    try:
        return _border_of(key)
    except TypeError:  # an unhashable value in the padding layer's config: no border share
        return None


def _frozen(value: Any) -> Any:
    """A config value as a hashable key (lists to tuples, nested)."""
    if isinstance(value, (list, tuple)):  # a tuple of types: faster than list | tuple
        for item in value:
            if isinstance(item, (list, tuple)):  # nested: each item frozen in turn
                return tuple([_frozen(inner) for inner in value])
        return tuple(value)  # flat: copied as it is
    return value


@lru_cache(maxsize=4096)
def _border_of(key: tuple[Any, ...]) -> tuple[float, float, float] | None:
    """:func:`_border` for one geometry (its key: the input and output shapes, the
    convolution's kernel, strides, dilation and padding mode as its :class:`Window` holds them,
    channels first or not, the padding layer's padding or None)."""
    in_shape, out_shape, kernels, strides, dilations, mode, first, padded = key
    rank = len(in_shape) - 2
    sizes = list(in_shape[2:] if first else in_shape[1:-1])
    outs = list(out_shape[2:] if first else out_shape[1:-1])
    pads = [(0, 0)] * rank
    if padded is not None:
        value = padded
        if isinstance(value, int):
            pads = [(value, value)] * rank
        elif isinstance(value, list | tuple) and len(value) == rank:
            pads = [(v, v) if isinstance(v, int) else (int(v[0]), int(v[1])) for v in value]
        elif (isinstance(value, list | tuple) and rank == 1 and len(value) == 2
              and all(isinstance(v, int) for v in value)):
            pads = [(int(value[0]), int(value[1]))]
        else:
            return None
    share = kept = 1.0
    log_positions = 0.0
    for size, out, kernel, stride, dilation, (before, after) in zip(
            sizes, outs, kernels, strides, dilations, pads, strict=False):
        if not isinstance(size, int) or not isinstance(out, int) or out <= 0:
            return None
        effective = (kernel - 1) * dilation + 1
        if mode == "same":
            total = max((out - 1) * stride + effective - size, 0)
            left = total // 2
        elif mode == "causal":
            left = effective - 1
        else:
            left = 0
        real = size - before - after
        if real <= 0:
            return None
        a, b = _border_axis(real, out, kernel, stride, dilation, left + before)
        share *= a
        kept *= b
        log_positions += math.log10(size / real)
    if share >= 1.0 and log_positions == 0.0:
        return None
    return share, kept, log_positions


@dataclass(slots=True)
class _Stats:
    """Second-order statistics of a tensor, all log10.

    ``fluct``: variance within a channel (over samples and positions: what BatchNormalization
    divides by); ``offset``: variance of per-channel offsets (a convolution of a non-zero-mean
    input adds one constant per channel, random in sign); ``mean_sq``: square of a mean shared
    by all units (sigmoid outputs sit around 1/2, ReLU outputs above 0).

    The forward pass builds one or more per layer, positionally in the fields' order: keyword
    arguments to a dataclass go through a dict of them (about 1,600 instructions more per
    object in CPython 3.11).
    """

    fluct: float = 0.0
    offset: float = _LOG_FLOOR
    mean_sq: float = _LOG_FLOOR
    harmonic: float | None = None
    """log10 of the harmonic mean of per-channel variances, where channels differ (a
    concatenation): what normalization divides the gradient by, on average over channels."""
    rectified: tuple[float, float] | None = None
    """(mean, variance) of the normal this tensor is the ReLU of, where it is one (the largest
    of a window of them is the ReLU of the largest of the normals)."""
    mixture: tuple[tuple[float, float, float], ...] | None = None
    """Where a unit's distribution is far from normal: components (weight, mean, variance),
    in linear units. A ReLU output is a point mass at 0 and a positive part; a residual sum of
    it and a normal branch two normals (ResNet's identity path: relu(x + branch) again and
    again, a reflected random walk that one shifted normal describes increasingly badly)."""
    routes: tuple[tuple[float, float, int], ...] | None = None
    """On a ReLU's output: per component of its input (weight, P(open), the output component
    its positive part went to), so that the backward pass can follow a unit's gradient through
    the mixture (see :func:`_relu_backward`)."""
    joined: tuple[tuple[int, ...], ...] | None = None
    """On a concatenation of mixtures: per input, per component of it, the component of the
    concatenation's mixture it went to."""

    @property
    def total(self) -> float:
        """log10 of the second moment E[x^2]. Computed where it is read (a weighted layer's
        input and pre-activation, a product's inputs), not for every tensor."""
        fluct, offset, mean_sq = self.fluct, self.offset, self.mean_sq
        if offset <= _LOG_FLOOR and mean_sq <= _LOG_FLOOR:
            return fluct
        if fluct > _LOG_FLOOR and offset > _LOG_FLOOR and mean_sq > _LOG_FLOOR:
            # All three kept (the usual case after a ReLU): _log_sum's arithmetic inline,
            # summed by ``sum`` over the same three terms in the same order.
            top = fluct  # max(fluct, offset, mean_sq), written out (see log10_layer_gradient_norm)
            top = offset if offset > top else top
            top = mean_sq if mean_sq > top else top
            return top + math.log10(sum((10.0 ** (fluct - top), 10.0 ** (offset - top),
                                         10.0 ** (mean_sq - top))))
        if mean_sq <= _LOG_FLOOR:  # no shared mean (a pre-activation): _log_sum of the two kept
            return _log_sum2(fluct, offset)
        return _log_sum((fluct, offset, mean_sq))


@dataclass(slots=True)
class _Forward:
    out: _Stats  # (given: no default to run per layer)
    log_pre: float | None = None  # log10 pre-activation variance (weighted layers)
    # log10 second moment of the first input (weighted layers: read with log_pre, while the
    # input is at hand, not again from memory when the report is built)
    first_input_log_q: float = 0.0
    log_act_grad: float = 0.0  # log10 E[f'(z)^2] of the layer's own activation
    log_kernel_back: float = 0.0  # log10 of prod(backward_fan * Var(W)) over its kernels
    log_norm_back: float = 0.0  # log10 1/Var(input) for normalizations
    log_pass_back: float | None = None  # log10 backward gain of a nested model or a scale layer
    log_scaled_sum: float | None = None  # log10 gain of the scaled inputs of a scaled sum
    kernels: list[KernelModel] | None = None
    # Read in the forward pass, while the layer's shapes are at hand (a kernel layer's were
    # just read), not again from memory by the backward pass and the report:
    log_resampling: float = 0.0  # :func:`_log_resampling` of the layer
    positions: int = 1  # :func:`_positions` of a weighted layer


def activation_of(layer: LayerResult) -> str:
    """The activation a layer applies (``"linear"`` for none), as its rule reads it."""
    return layer.activation or "linear"


def _log_sum(values: Iterable[float]) -> float:
    """log10 of the sum of 10**v over ``values`` (floor values are zeros).

    >>> round(_log_sum((0.0, 0.0)), 4)
    0.301
    """
    kept = [value for value in values if value > _LOG_FLOOR]
    if not kept:
        return _LOG_FLOOR
    if len(kept) == 1:
        return kept[0]
    if len(kept) == 2:  # the common case (a residual sum, a pair): see _log_sum2
        return _log_sum2(kept[0], kept[1])
    top = max(kept)
    return top + math.log10(sum([10.0 ** (v - top) for v in kept]))


def _log_sum2(a: float, b: float) -> float:
    """``_log_sum((a, b))`` without building sequences: the same arithmetic in the same order
    (``max`` keeps the first of equal values; ``sum`` of two floats is ``a + b``), so the
    result is bit for bit the same. Called for every layer, twice for most.

    >>> _log_sum2(0.0, 0.0) == _log_sum((0.0, 0.0)) and _log_sum2(-1.5, _LOG_FLOOR) == -1.5
    True
    """
    if a > _LOG_FLOOR:
        if b > _LOG_FLOOR:
            top = b if b > a else a
            return top + math.log10(10.0 ** (a - top) + 10.0 ** (b - top))
        return a
    return b if b > _LOG_FLOOR else _LOG_FLOOR


def _apply_activation(name: str, stats: _Stats, layer: str, notes: list[str]
                      ) -> tuple[_Stats, float]:
    """Push a tensor through activation ``name``: new statistics and log10 E[f'(z)^2].

    Channel offsets are treated as part of the spread of z; the shared mean as a shift.
    """
    spread = _log_sum2(stats.fluct, stats.offset)
    mixture = routes = None
    if name == "relu":
        if stats.mixture is None and stats.mean_sq <= _LOG_FLOOR:  # a pre-activation
            mean_sq, variance, grad, mixture, routes = _centred_rectified(spread)
        else:
            mean_sq, variance, grad, mixture, routes = _rectified(stats, spread)
        known = True
    else:
        mean_sq, variance, grad, known = activation_gains(name, spread, stats.mean_sq)
    if not known:
        notes.append(f"{layer}: activation {name!r} treated as linear")
    if name in ("linear", None) or not known:
        return _Stats(stats.fluct, stats.offset, stats.mean_sq), 0.0
    # The output spread keeps the input's split between within-channel and per-channel parts.
    fluct_share = stats.fluct - spread  # min(fluct_share, 0.0), written out (see
    fluct_share = 0.0 if 0.0 < fluct_share else fluct_share  # log10_layer_gradient_norm)
    offset_share = 1.0 - 10.0 ** fluct_share
    offset = variance + math.log10(offset_share) if offset_share > 1e-12 else _LOG_FLOOR
    rectified = None
    if (name == "relu" and stats.mixture is None
            and spread < _MODERATE_LOG and stats.mean_sq < _MODERATE_LOG):  # _moderate
        rectified = (10.0 ** (stats.mean_sq / 2.0) if stats.mean_sq > _LOG_FLOOR else 0.0,
                     10.0 ** spread if spread > _LOG_FLOOR else 0.0)
    # (fluct, offset, mean_sq, harmonic, rectified, mixture, routes): positional, see _Stats
    return _Stats(variance + fluct_share, offset, mean_sq, None, rectified, mixture, routes), grad


def _relu_of_pre_activation(fluct: float, offset: float, spread: float) -> tuple[_Stats, float]:
    """``_apply_activation("relu", _Stats(fluct, offset, _LOG_FLOOR), ...)`` for a weighted
    layer's pre-activation (no mixture, no shared mean; ``spread``: ``_log_sum2(fluct,
    offset)``, which the caller has as the pre-activation's total where the offset is kept),
    bit for bit: the same operations in the same order, without the general path's name
    tests, its statistics object and its keyword arguments (a ReLU convolution, the usual
    weighted layer, calls it once per layer).

    >>> pre = _Stats(0.3, -0.7, _LOG_FLOOR)
    >>> spread = _log_sum2(pre.fluct, pre.offset)
    >>> _relu_of_pre_activation(0.3, -0.7, spread) == _apply_activation("relu", pre, "x", [])
    True
    """
    mean_sq, variance, grad, mixture, routes = _centred_rectified(spread)
    fluct_share = fluct - spread  # (min(fluct_share, 0.0), written out)
    fluct_share = 0.0 if 0.0 < fluct_share else fluct_share
    offset_share = 1.0 - 10.0 ** fluct_share
    offset = variance + math.log10(offset_share) if offset_share > 1e-12 else _LOG_FLOOR
    # (_apply_activation's test for a rectified normal: the shared mean is the floor, below
    # 100, and its square root 0)
    rectified = ((0.0, 10.0 ** spread if spread > _LOG_FLOOR else 0.0)
                 if spread < _MODERATE_LOG else None)
    return _Stats(variance + fluct_share, offset, mean_sq, None, rectified, mixture, routes), grad


def _rectified(stats: _Stats, spread: float
               ) -> tuple[float, float, float, tuple[tuple[float, float, float], ...] | None,
                          tuple[tuple[float, float, int], ...] | None]:
    """ReLU of a tensor: log10 mean^2, log10 variance, log10 E[f'^2], the output's mixture
    (zero with the probability that the input is negative, else the positive part as one
    normal of the same moments) and its routes (per input component: weight, P(open), the
    output component it went to; see :attr:`_Stats.routes`). A normal input gives the closed
    forms of :func:`activation_gains`; a mixture input (a residual sum) is rectified per
    component."""
    if stats.mixture is None:  # activation_gains("relu", ...) without its name lookups
        mean_sq, variance, grad = _relu_stats(_RELU_SLOPES["relu"], spread, stats.mean_sq)
        if not _moderate(spread, stats.mean_sq):  # no mixture in linear units
            return mean_sq, variance, grad, None, None
        shift = 10.0 ** (stats.mean_sq / 2.0) if stats.mean_sq > _LOG_FLOOR else 0.0
        components: tuple[tuple[float, float, float], ...] = (
            (1.0, shift, 10.0 ** spread if spread > _LOG_FLOOR else 0.0),)
    else:
        components = stats.mixture
    positive = first = second = 0.0
    parts: list[tuple[float, float, float]] = []
    opens: list[tuple[float, float, int]] = []  # per component: weight, P(open), its part
    for weight, mean, variance_c in components:
        if variance_c <= 0.0:
            if mean > 0.0:
                positive += weight
                first += weight * mean
                second += weight * mean * mean
                opens.append((weight, 1.0, len(parts)))
                parts.append((weight, mean, 0.0))
            else:
                opens.append((weight, 0.0, -1))
            continue
        scale = math.sqrt(variance_c)
        t = mean / scale  # max(min(mean / scale, 40.0), -40.0), written out (see
        t = 40.0 if 40.0 < t else t  # log10_layer_gradient_norm)
        t = -40.0 if -40.0 > t else t
        cdf = 0.5 * math.erfc(-t / _SQRT_2)
        pdf = math.exp(-0.5 * t * t) / _SQRT_2PI
        part_first = scale * (t * cdf + pdf)
        part_second = variance_c * ((t * t + 1.0) * cdf + t * pdf)
        positive += weight * cdf
        first += weight * part_first
        second += weight * part_second
        if cdf > 1e-12:  # each component's positive part as a normal of the same moments
            part_mean = part_first / cdf
            opens.append((weight, cdf, len(parts)))
            part_variance = part_second / cdf - part_mean ** 2  # (max(part_variance, 0.0))
            parts.append((weight * cdf, part_mean, 0.0 if 0.0 > part_variance else part_variance))
        else:
            opens.append((weight, 0.0, -1))
    if positive <= 1e-12 or second <= 0.0:
        return _LOG_FLOOR, _LOG_FLOOR, _LOG_FLOOR, None, None
    merged, groups = _merged_groups(parts)
    closed = 1.0 - positive  # (max(closed, 0.0), written out)
    mixture = ((0.0 if 0.0 > closed else closed, 0.0, 0.0), *merged)
    routes = tuple([(weight, cdf, 1 + groups[part] if part >= 0 else 0)
                    for weight, cdf, part in opens])
    if stats.mixture is None:
        return mean_sq, variance, grad, mixture, routes
    variance = max(second - first * first, 1e-12 * second)
    return 2.0 * _log10(first), _log10(variance), _log10(positive), mixture, routes


# The ReLU of a centred normal at t = mean / scale = 0, by the expressions of _relu_stats and
# _rectified: constants, computed once (their arithmetic at t = 0, in the same order).
_CENTRED_CDF = 0.5 * math.erfc(-0.0 / _SQRT_2)
_CENTRED_PDF = math.exp(-0.5 * 0.0 * 0.0) / _SQRT_2PI
_CENTRED_FIRST = 0.0 * _CENTRED_CDF + _CENTRED_PDF  # t cdf + pdf
_CENTRED_SECOND = (0.0 * 0.0 + 1.0) * _CENTRED_CDF + 0.0 * _CENTRED_PDF  # (t^2 + 1) cdf + t pdf
_CENTRED_LOGS = _relu_stats(_RELU_SLOPES["relu"], 0.0, _LOG_FLOOR)
_CENTRED_CLOSED = max(1.0 - _CENTRED_CDF, 0.0)  # the weight of the closed part (the point mass)
"""_relu_stats of a centred normal of log10 variance 0: its mean^2 and variance move with the
input's log10 variance (added to it), its gain E[f'^2] does not."""


def _centred_rectified(spread: float
                       ) -> tuple[float, float, float, tuple[tuple[float, float, float], ...] | None,
                                  tuple[tuple[float, float, int], ...] | None]:
    """:func:`_rectified` of a normal with no shared mean (every convolution's or dense
    layer's pre-activation, the ReLU called once per weighted layer), bit for bit: with
    t = 0, its normal CDF and density are the constants above and the one component needs no
    merging, so only the arithmetic that involves ``spread`` is left.

    >>> zero_mean = _Stats(-0.5, -1.0, _LOG_FLOOR)
    >>> spread = _log_sum2(zero_mean.fluct, zero_mean.offset)
    >>> _centred_rectified(spread) == _rectified(zero_mean, spread)
    True
    """
    log_mean_sq, log_variance, log_grad = _CENTRED_LOGS
    mean_sq, variance, grad = spread + log_mean_sq, spread + log_variance, log_grad
    if not spread < _MODERATE_LOG:  # _moderate: no mixture in linear units
        return mean_sq, variance, grad, None, None
    variance_c = 10.0 ** spread if spread > _LOG_FLOOR else 0.0
    if variance_c <= 0.0:  # a point mass at 0: never open
        return _LOG_FLOOR, _LOG_FLOOR, _LOG_FLOOR, None, None
    part_first = math.sqrt(variance_c) * _CENTRED_FIRST
    part_second = variance_c * _CENTRED_SECOND
    if part_second <= 0.0:
        return _LOG_FLOOR, _LOG_FLOOR, _LOG_FLOOR, None, None
    part_mean = part_first / _CENTRED_CDF
    part_variance = part_second / _CENTRED_CDF - part_mean ** 2
    # max(part_variance, 0.0) written out (see log10_layer_gradient_norm); the closed part's
    # weight max(1.0 - _CENTRED_CDF, 0.0) is a constant, computed once
    part = (1.0 * _CENTRED_CDF, part_mean, 0.0 if 0.0 > part_variance else part_variance)
    return (mean_sq, variance, grad, ((_CENTRED_CLOSED, 0.0, 0.0), part),
            ((1.0, _CENTRED_CDF, 1),))


def _moderate(*logs: float) -> bool:
    """Whether log10 second moments are small enough for a mixture in linear units (broken
    networks reach hundreds of decades; they keep the log-domain statistics alone): each below
    :data:`_MODERATE_LOG` (the hot paths test that constant inline)."""
    for value in logs:  # a loop, not all(<generator>): twice per ReLU
        if not value < _MODERATE_LOG:
            return False
    return True


_MIXTURE_PARTS = 3
"""Positive components a mixture keeps (the nearest in mean are merged beyond that)."""


def _merged_groups(parts: list[tuple[float, float, float]]
                   ) -> tuple[tuple[tuple[float, float, float], ...], list[int]]:
    """At most :data:`_MIXTURE_PARTS` components: the two nearest in mean merged into one of
    the same weight, mean and second moment, until few enough; and for each of ``parts`` (in
    the given order) the index of the merged component it went to."""
    if len(parts) == 1:  # the usual case (the ReLU of a normal): nothing to sort or merge
        return (parts[0],), [0]
    order = sorted(range(len(parts)), key=lambda i: parts[i][1])
    merged = [parts[i] for i in order]
    members = [[i] for i in order]
    while len(merged) > _MIXTURE_PARTS:
        index = min(range(len(merged) - 1), key=lambda i: merged[i + 1][1] - merged[i][1])
        (w1, m1, v1), (w2, m2, v2) = merged[index], merged[index + 1]
        weight = w1 + w2
        mean = (w1 * m1 + w2 * m2) / weight
        second = (w1 * (m1 * m1 + v1) + w2 * (m2 * m2 + v2)) / weight
        merged[index:index + 2] = [(weight, mean, max(second - mean * mean, 0.0))]
        members[index:index + 2] = [members[index] + members[index + 1]]
    groups = [0] * len(parts)
    for position, group in enumerate(members):
        for i in group:
            groups[i] = position
    return tuple(merged), groups


def _shifted_mixture(a: _Stats, b: _Stats) -> tuple[tuple[float, float, float], ...] | None:
    """The mixture of a sum of two independent tensors of which exactly one has a mixture: its
    components shifted and widened by the other (a normal)."""
    if (a.mixture is None) == (b.mixture is None):
        return None
    mixed, normal = (a, b) if a.mixture is not None else (b, a)
    spread = _log_sum2(normal.fluct, normal.offset)
    if not (spread < _MODERATE_LOG and normal.mean_sq < _MODERATE_LOG):  # _moderate
        return None
    shift = 10.0 ** (normal.mean_sq / 2.0) if normal.mean_sq > _LOG_FLOOR else 0.0
    width = 10.0 ** spread if spread > _LOG_FLOOR else 0.0
    # (a list comprehension, not a generator: every other sum of a residual chain)
    return tuple([(weight, mean + shift, variance + width)
                  for weight, mean, variance in mixed.mixture or ()])


def _concatenated(layer: LayerResult, inputs: list[_Stats]) -> _Stats:
    """Statistics of a concatenation: channel-weighted means of its inputs' (a convolution
    after it sums over all channels), and the harmonic mean of their variances (a
    normalization after it divides each channel's gradient by that channel's variance)."""
    first = layer.channels_first
    widths = [(_channels(shape, first) or 1) if shape else 1 for shape in layer.input_shapes]
    if len(widths) != len(inputs):
        widths = [1] * len(inputs)
    log_total = math.log10(sum(widths))

    def mean(values: list[float]) -> float:
        kept = [(v + math.log10(w)) for v, w in zip(values, widths, strict=True) if v > _LOG_FLOOR]
        return _log_sum(kept) - log_total if kept else _LOG_FLOOR

    mixture = joined = None
    if all(s.mixture is not None for s in inputs):
        # A unit of the concatenation is a unit of input i with probability width_i / total:
        # the point masses at zero added up, the rest as one normal of the same moments.
        total = sum(widths)
        zero = 0.0
        parts: list[tuple[float, float, float]] = []
        places: list[list[int]] = []  # per input, per component: its part (-1: the zeros)
        for stats, width in zip(inputs, widths, strict=True):
            places.append([])
            for w, m, v in stats.mixture or ():
                share = w * width / total
                if v <= 0.0 and m == 0.0:
                    zero += share
                    places[-1].append(-1)
                else:
                    places[-1].append(len(parts))
                    parts.append((share, m, v))
        merged, groups = _merged_groups(parts)
        mixture = ((zero, 0.0, 0.0), *merged)
        joined = tuple(tuple(1 + groups[part] if part >= 0 else 0 for part in place)
                       for place in places)
    out = _Stats(mean([s.fluct for s in inputs]), mean([s.offset for s in inputs]),
                 mean([s.mean_sq for s in inputs]), mixture=mixture, joined=joined)
    if all(s.fluct > _LOG_FLOOR for s in inputs):
        out.harmonic = -mean([-(s.harmonic if s.harmonic is not None else s.fluct)
                              for s in inputs])
    return out


@lru_cache(maxsize=256)
def _normal_maximum(count: int) -> tuple[float, float]:
    """Mean and variance of the largest of ``count`` independent standard normals.

    >>> [round(v, 3) for v in _normal_maximum(9)]
    [1.485, 0.357]
    """
    first = second = 0.0
    step = 0.01
    for i in range(-1000, 1001):
        z = i * step
        density = count * math.exp(-0.5 * z * z) / _SQRT_2PI * (
            0.5 * math.erfc(-z / _SQRT_2)) ** (count - 1)
        first += z * density * step
        second += z * z * density * step
    return first, max(second - first * first, 1e-12)


def _mixture_maximum(stats: _Stats, count: int) -> _Stats:
    """The largest of ``count`` independent values of a mixture (a max pooling after a ReLU):
    its moments from the distribution function F^count, integrated on a grid; the point mass
    at zero survives only where every value is zero."""
    components = stats.mixture or ()
    if stats.rectified is not None and stats.rectified[1] > 0.0:
        # relu(max z) with z normal: the maximum's moments, rectified as a normal of them.
        shift, variance = stats.rectified
        mean, spread = _normal_maximum(count)
        maximum = _Stats(math.log10(variance * spread), _LOG_FLOOR,
                         2.0 * _log10(abs(shift + math.sqrt(variance) * mean)))
        mean_sq, log_variance, _, mixture, _ = _rectified(maximum, maximum.fluct)
        spread_in = _log_sum2(stats.fluct, stats.offset)
        fluct_share = min(stats.fluct - spread_in, 0.0)
        offset_share = 1.0 - 10.0 ** fluct_share
        return _Stats(log_variance + fluct_share,
                      log_variance + math.log10(offset_share) if offset_share > 1e-12
                      else _LOG_FLOOR, mean_sq, mixture=mixture)
    low = min([0.0] + [m - 8.0 * math.sqrt(v) for _, m, v in components])
    high = max([0.0] + [m + 8.0 * math.sqrt(v) for _, m, v in components])
    if high <= low:
        return _Stats(stats.fluct, stats.offset, stats.mean_sq, mixture=stats.mixture)
    steps = 800
    width = (high - low) / steps
    grid = [low + i * width for i in range(steps + 1)]
    # F on the whole grid, one comprehension per component rather than a Python loop per
    # point and component; each point still adds its components' terms in their order.
    # Components of equal mean and variance (a concatenation of like branches) share their
    # erfc values, computed once.
    cdfs = [0.0] * len(grid)
    erfcs: dict[tuple[float, float], list[float]] = {}
    for weight, mean, variance in components:
        if variance <= 0.0:
            cdfs = [cdf + (weight if x >= mean else 0.0) for cdf, x in zip(cdfs, grid, strict=True)]
            continue
        values = erfcs.get((mean, variance))
        if values is None:
            scale = math.sqrt(2.0 * variance)
            values = erfcs[mean, variance] = [math.erfc(-(x - mean) / scale) for x in grid]
        half = weight * 0.5
        cdfs = [cdf + half * value for cdf, value in zip(cdfs, values, strict=True)]
    # E[M] = int_0^inf (1 - F^n) - int_-inf^0 F^n; E[M^2] = int 2|x| (same tails), by the
    # trapezoid rule. (``1.0 if cdf > 1.0 else cdf`` is min(cdf, 1.0) without the call.)
    first = second = last_tail = last_moment = 0.0
    for i, (x, cdf) in enumerate(zip(grid, cdfs, strict=True)):
        power = (1.0 if cdf > 1.0 else cdf) ** count
        tail = 1.0 - power if x >= 0 else -power
        moment = 2.0 * abs(x) * tail
        if i:
            first += width * (last_tail + tail) / 2.0
            second += width * (last_moment + moment) / 2.0
        last_tail, last_moment = tail, moment
    zero = sum(w for w, m, v in components if v <= 0.0 and m == 0.0) ** count
    variance = max(second - first * first, 1e-12 * max(second, 1e-300))
    rest = 1.0 - zero
    mixture = None
    if rest > 1e-12:
        mean_rest = first / rest
        mixture = ((zero, 0.0, 0.0), (rest, mean_rest, max(second / rest - mean_rest ** 2, 0.0)))
    # The spread keeps the input's split between within-channel and per-channel parts.
    spread = _log_sum2(stats.fluct, stats.offset)
    fluct_share = stats.fluct - spread  # min(fluct_share, 0.0), written out (see
    fluct_share = 0.0 if 0.0 < fluct_share else fluct_share  # log10_layer_gradient_norm)
    offset_share = 1.0 - 10.0 ** fluct_share
    log_variance = _log10(variance)
    return _Stats(log_variance + fluct_share,
                  log_variance + math.log10(offset_share) if offset_share > 1e-12 else _LOG_FLOOR,
                  2.0 * _log10(abs(first)), mixture=mixture)


def _max_window(layer: LayerResult) -> int | None:
    """Positions one output of a max pooling reads (None for other layers)."""
    traits = layer.traits
    if Trait.AVERAGING in traits:
        return None
    if Trait.GLOBAL_POOLING in traits:
        return spatial_positions(layer.input_shapes[0] if layer.input_shapes else None,
                                 layer.node.config)
    if Trait.POOLING in traits:
        return _pool_area(layer)
    return None


def _pool_area(layer: LayerResult) -> int:
    """Positions one output of a (non-global) pooling reads: its window's taps."""
    window = layer.window
    return window.taps if window is not None else 1


def _max_pooled(result: AnalysisResult) -> dict[str, int]:
    """Layers whose every consumer is a max pooling (directly or through zero padding), with
    its window: their gradient reaches only each window's largest value, where a ReLU is
    almost surely open."""
    successors = result.successors()
    by_name = result.by_name()
    found: dict[str, int] = {}
    for layer in result.layers:
        if _POOLING not in layer.traits and _GLOBAL_POOLING not in layer.traits:
            continue
        window = _max_window(layer)
        if not window or window < 2 or len(layer.inbound) != 1:
            continue
        source = by_name.get(layer.inbound[0])
        if (source is not None and _PADDING in source.traits
                and successors.get(source.name, []) == [layer.name] and len(source.inbound) == 1):
            source = by_name.get(source.inbound[0])
        if source is not None and all(
                name == layer.name or (by_name.get(name) is not None
                                       and _PADDING in by_name[name].traits)
                for name in successors.get(source.name, [])):
            found[source.name] = window
    return found


def _padding_input(layer: LayerResult, layers: list[LayerResult], inputs: list[int]
                   ) -> LayerResult | None:
    """The ZeroPadding layer a convolution reads, if any (its zeros are the convolution's
    border); ``inputs``: the places in ``layers`` of its inputs."""
    if len(layer.inbound) != 1 or not inputs:
        return None
    source = layers[inputs[0]]
    return source if _PADDING in source.traits else None


Places = tuple[dict[str, int], list[list[int]], list[int]]
"""Each layer's place in ``result.layers`` by name, per layer the places of its inputs that
are layers of the result (in inbound order, repeats kept), and the places of the layers whose
inbound names more than one layer (the merges' candidates): see :func:`_places`."""


def _places(result: AnalysisResult) -> Places:
    """The graph's inputs by place, found once per prediction: the passes over 20,000 layers
    read a layer's inputs as list indices, not as names looked up in a dict (each lookup
    reads both strings from memory, the passes' largest cost at that size). The layers whose
    inbound names several layers are noted on the way (the merges among them are the skip
    connections' candidates), so that no other pass reads every layer's inbound again."""
    order = {layer.name: place for place, layer in enumerate(result.layers)}
    found = order.get
    inputs: list[list[int]] = []
    several: list[int] = []
    for own, layer in enumerate(result.layers):
        inbound = layer.inbound
        if len(inbound) == 1:  # the usual layer: no comprehension (a call of its own)
            place = found(inbound[0])
            inputs.append([] if place is None else [place])
        elif len(inbound) == 2:  # a pair (a residual sum): the general branch without its
            first, second = found(inbound[0]), found(inbound[1])  # comprehension
            if first is None or second is None:
                inputs.append([place for place in (first, second) if place is not None])
            else:
                inputs.append([first, second])
            if inbound[0] != inbound[1]:  # not one name twice
                several.append(own)
        else:
            inputs.append([place for place in map(found, inbound) if place is not None])
            if len(inbound) > 1 and inbound.count(inbound[0]) != len(inbound):  # not one name
                several.append(own)
    return order, inputs, several


def _forward(result: AnalysisResult, notes: list[str],
             model_inputs: list[_Stats] | None = None, places: Places | None = None
             ) -> list[_Forward]:
    """Forward statistics per layer, by place in ``result.layers`` (the later passes read
    them by index, not by name); ``model_inputs`` seeds the inputs of a nested model;
    ``places``: :func:`_places` of ``result`` where the caller has it."""
    by_place: list[_Forward] = []  # an input comes before its layer
    input_places = (places or _places(result))[1]
    seeded = dict(zip(result.input_layers, model_inputs or [], strict=False))
    # Enum members read once, not per layer (a class attribute lookup each time).
    kernel_trait, input_trait, scale_trait = Trait.KERNEL, Trait.INPUT, Trait.SCALE
    normalization_trait, activation_trait = Trait.NORMALIZATION, Trait.ACTIVATION
    merge_sum, merge_average = Merge.SUM, Merge.AVERAGE
    layers = result.layers
    for own, layer in enumerate(layers):
        places_in = input_places[own]
        if len(places_in) == 1 and places_in[0] < own:  # the usual layer: no comprehension
            inputs = [by_place[places_in[0]].out]
        elif len(places_in) == 2 and places_in[0] < own and places_in[1] < own:  # a pair
            inputs = [by_place[places_in[0]].out, by_place[places_in[1]].out]
        else:
            inputs = [by_place[place].out for place in places_in if place < own]
        first = inputs[0] if inputs else _Stats()
        # Every branch below sets ``out``: ``first`` stands in so that no default _Stats is
        # built only to be replaced.
        state = _Forward(first)
        traits = layer.traits
        merge = layer.merge
        kernels = state.kernels = kernel_models(layer) if kernel_trait in traits else None
        if not traits.isdisjoint(_RESAMPLING):  # (_log_resampling's own first test: most
            state.log_resampling = _log_resampling(layer)  # layers resample nothing)
        if input_trait in traits or not inputs:
            seed = seeded.get(layer.name)
            state.out = _Stats(seed.fluct, seed.offset, seed.mean_sq) if seed else _Stats()
        elif layer.subresult is not None and layer.subresult.output_layers:
            # A model used as a layer: propagate through it, and measure its backward gain
            # as the gradient its inputs receive for a unit gradient at its output.
            subresult = layer.subresult
            inner_places = _places(subresult)
            inner_order = inner_places[0]
            inner = _forward(subresult, notes, inputs, places=inner_places)
            state.out = inner[inner_order[subresult.output_layers[0]]].out
            inner_pre = _backward(subresult, inner, fold_output=False, places=inner_places)
            gains = [inner_pre[inner_order[name]] for name in subresult.input_layers
                     if name in inner_order]
            state.log_pass_back = gains[0] if gains else 0.0
            if any(inner_state.kernels for inner_state in inner):
                # It holds weights: listed as one weighted entry (its gradient at its output).
                state.log_pre = state.out.total
                state.positions = _positions(layer)
                state.first_input_log_q = first.total
        elif scale_trait in traits and len(inputs) > 1:
            # A scaled residual sum (Inception-ResNet's CustomScaleLayer): first + scale x rest.
            scale = layer.scale
            gain = 2.0 * _log10(abs(scale)) if scale is not None else 0.0
            scaled = [first] + [_Stats(s.fluct + gain, s.offset + gain, s.mean_sq + gain)
                                for s in inputs[1:]]
            log_mean = _log_sum(s.mean_sq / 2.0 for s in scaled if s.mean_sq > -290)
            state.out = _Stats(_log_sum(s.fluct for s in scaled), _log_sum(s.offset for s in scaled),
                               2.0 * log_mean if log_mean > _LOG_FLOOR else _LOG_FLOOR,
                               mixture=(_shifted_mixture(scaled[0], scaled[1])
                                        if len(scaled) == 2 and scaled[1].mixture is None
                                        else None))
            state.log_scaled_sum = gain
        elif scale_trait in traits:  # ConvNeXt's LayerScale: a learned per-channel scale
            scale = layer.scale
            gain = 2.0 * _log10(abs(scale)) if scale is not None else 0.0
            state.out = _Stats(first.fluct + gain, first.offset + gain, first.mean_sq + gain)
            state.log_pass_back = gain
        elif kernels is not None:
            if len(kernels) == 1:  # one kernel (all but separable): ``sum`` of one term, 0 + x
                kernel = kernels[0]
                forward_gain = 0 + _log10(kernel.forward_fan * kernel.variance)
                state.log_kernel_back = 0 + _log10(kernel.backward_fan * kernel.variance)
            else:
                forward_gain = sum(_log10(k.forward_fan * k.variance) for k in kernels)
                state.log_kernel_back = sum(_log10(k.backward_fan * k.variance) for k in kernels)
            # A zero-mean kernel turns a shared input mean into per-channel offsets.
            shifted = _log_sum2(first.offset, first.mean_sq)
            border = (_border(layer, _padding_input(layer, layers, input_places[own]))
                      if _DENSE not in traits else None)
            if border is None:
                fluct = first.fluct + forward_gain
                offset = shifted + forward_gain if shifted > _LOG_FLOOR else _LOG_FLOOR
            else:
                # Taps reading padding: a share A of the variance in both directions; of a
                # shifted input's mean, B stays a per-channel offset and A - B varies over
                # positions. Per real input position (not per padded one) on the way back.
                share, kept, log_positions = border
                # (no tap reads the input at all, share 0: an even kernel of dilation 10^5
                # 'same' on 8 positions: nothing passes, the logs at the floor)
                fluct = first.fluct + forward_gain + _log10(share)
                offset = _LOG_FLOOR
                if shifted > _LOG_FLOOR:
                    if share - kept > 1e-12:
                        fluct = _log_sum2(fluct, shifted + forward_gain + math.log10(share - kept))
                    offset = shifted + forward_gain + _log10(kept)
                state.log_kernel_back += _log10(share) + log_positions
            # The pre-activation _Stats(fluct, offset, _LOG_FLOOR)'s total without building
            # it: with no shared mean, the fluct alone or _log_sum2 of the two kept, as
            # _Stats.total finds them.
            state.log_pre = log_pre = fluct if offset <= _LOG_FLOOR else _log_sum2(fluct, offset)
            state.positions = spatial_positions(  # _positions(layer)
                layer.output_shapes[0] if layer.output_shapes else None, layer.node.config)
            state.first_input_log_q = first.total
            activation = layer.activation or "linear"  # activation_of(layer)
            if activation == "relu":  # the usual weighted layer: the general path's ReLU
                state.out, state.log_act_grad = _relu_of_pre_activation(
                    fluct, offset, log_pre if offset > _LOG_FLOOR else _log_sum2(fluct, offset))
            else:
                state.out, state.log_act_grad = _apply_activation(
                    activation, _Stats(fluct, offset, _LOG_FLOOR), layer.name, notes)
        elif normalization_trait in traits:
            state.out = _Stats()
            state.log_norm_back = -(first.harmonic if first.harmonic is not None
                                    else first.fluct)
        elif activation_trait in traits:
            state.out, state.log_act_grad = _apply_activation(
                activation_of(layer), first, layer.name, notes)
        elif _PREPROCESSING in traits and not traits & _PASS_THROUGH_PREPROCESSING:
            # Preprocessing that changes values (Rescaling, Normalization): inputs are
            # standardized after it (see ASSUMPTIONS); augmentation and resizing keep the scale.
            state.out = _Stats()
        elif merge is merge_sum or merge is merge_average:
            divisor = 2.0 * math.log10(len(inputs)) if merge is _AVERAGE else 0.0
            # Shared means add as amplitudes: log10 of the sum of sqrt(mean_sq), doubled.
            if len(inputs) == 2:  # a residual sum: the same sums, by _log_sum2 (a mean left
                a, b = inputs     # out is passed as the floor, which it drops)
                log_mean = _log_sum2(a.mean_sq / 2.0 if a.mean_sq > -290 else _LOG_FLOOR,
                                     b.mean_sq / 2.0 if b.mean_sq > -290 else _LOG_FLOOR)
                log_fluct, log_offset = _log_sum2(a.fluct, b.fluct), _log_sum2(a.offset, b.offset)
                # (_shifted_mixture's own first test, without its call: it builds one only
                # where exactly one of the two has a mixture)
                mixture = (_shifted_mixture(a, b) if merge is merge_sum
                           and (a.mixture is None) != (b.mixture is None) else None)
            else:
                log_mean = _log_sum(s.mean_sq / 2.0 for s in inputs if s.mean_sq > -290)
                log_fluct = _log_sum(s.fluct for s in inputs)
                log_offset = _log_sum(s.offset for s in inputs)
                mixture = None
            state.out = _Stats(log_fluct - divisor, log_offset - divisor,
                               (2.0 * log_mean if log_mean > _LOG_FLOOR else _LOG_FLOOR)
                               - divisor, None, None, mixture)  # (positional, see _Stats)
        elif ((_POOLING in traits or _GLOBAL_POOLING in traits)
              and first.mixture is not None and (_max_window(layer) or 1) > 1):
            state.out = _mixture_maximum(first, _max_window(layer) or 1)
        elif ((_POOLING in traits or _GLOBAL_POOLING in traits)
              and first.mixture is None and (_max_window(layer) or 1) > 1
              and _moderate(first.fluct, first.mean_sq)):
            # The largest of a window of normal values: a shifted, narrower distribution.
            mean, variance = _normal_maximum(_max_window(layer) or 1)
            shift = 10.0 ** (first.mean_sq / 2.0) if first.mean_sq > _LOG_FLOOR else 0.0
            shift += mean * 10.0 ** (first.fluct / 2.0)
            state.out = _Stats(first.fluct + math.log10(variance), first.offset,
                               2.0 * math.log10(shift) if shift > 0 else _LOG_FLOOR)
        elif _POOLING in traits and _AVERAGING in traits:
            # The mean of a window of (independent) positions: the spread within a channel
            # shrinks by the window's area; per-channel offsets and shared means stay.
            area = _pool_area(layer)
            state.out = _Stats(first.fluct - math.log10(max(area, 1)), first.offset,
                               first.mean_sq)
        elif merge is _PRODUCT:
            total = sum(s.total for s in inputs)
            mean_sq = sum(s.mean_sq for s in inputs)
            fluct = total + math.log10(max(1.0 - 10.0 ** min(mean_sq - total, 0.0), 1e-300))
            state.out = _Stats(fluct, _LOG_FLOOR, mean_sq)
        elif merge is _CONCAT:
            state.out = _concatenated(layer, inputs)
        elif merge is _SELECT:
            state.out = _Stats(max(s.fluct for s in inputs), max(s.offset for s in inputs),
                               max(s.mean_sq for s in inputs))
        else:
            state.out = _Stats(first.fluct, first.offset, first.mean_sq, None, first.rectified,
                               first.mixture)  # (harmonic None; positional, see _Stats)
            if layer.has_weights or layer.unsupported or layer.subresult is not None:
                notes.append(f"{layer.name} ({layer.class_name}): treated as scale-preserving")
        by_place.append(state)
    return by_place


def _backward(result: AnalysisResult, by_place: list[_Forward], *,
              fold_output: bool = True, places: Places | None = None) -> list[float]:
    """log10 variance of the gradient w.r.t. each layer's pre-activation (or output), by
    place, for a unit gradient at each model output (after the output activation when
    ``fold_output``); ``by_place``: :func:`_forward` of ``result``. ``places``:
    :func:`_places` of ``result`` where the caller has it."""
    layers = result.layers
    order, input_places, _ = places or _places(result)
    incoming: list[list[float]] = [[] for _ in layers]  # per place: the gradients arriving
    outputs = {order[name] for name in result.output_layers if name in order}  # by place
    pre = [0.0] * len(layers)  # every place is set below
    pooled = _max_pooled(result)
    by_name = result.by_name()
    concat_sources: dict[str, tuple[str, ...] | None] = {}
    # Gradients that are not spread evenly over a tensor's mixture components: per tensor
    # (by place), (log10 variance, relative variance per component) of each such gradient.
    profiles: dict[int, list[tuple[float, tuple[float, ...]]]] = {}
    for own in range(len(layers) - 1, -1, -1):
        layer = layers[own]
        state = by_place[own]
        # Every consumer of this layer came before it in reversed order: the list is complete
        # and no longer needed elsewhere, so the output's unit gradient is appended in place.
        arriving = incoming[own]
        is_output = own in outputs
        if is_output:
            arriving.append(0.0)
        count = len(arriving)
        if count == 1 and arriving[0] > _LOG_FLOOR:
            log_out = arriving[0]
        elif count == 2:  # a layer feeding a residual block and its shortcut
            log_out = _log_sum2(arriving[0], arriving[1])
        else:
            log_out = _log_sum(arriving)
        # The output activation is folded into the loss.
        folded = fold_output and is_output
        log_gain = state.log_act_grad
        if log_gain < 0.0 and pooled and layer.name in pooled and (
                activation_of(layer) in ("relu", "relu6")):
            # Only each window's largest value receives a gradient: open unless all are shut.
            log_gain = _log10(1.0 - (1.0 - 10.0 ** log_gain) ** pooled[layer.name])
        uneven = profiles.pop(own, None) if profiles else None
        profile = _profile(uneven, log_out) if uneven else None
        profile_in = None
        # (the output's statistics are read only where the rest can hold: not for a weighted
        # layer whose gradient arrives evenly, most of them)
        if ((profile is not None or state.log_pre is None)
                and (routes := state.out.routes) is not None
                and (profile is not None or len(routes) > 1)
                and not folded and not (pooled and layer.name in pooled)):
            # (a ReLU of a mixture, or one whose gradient arrives unevenly)
            gain, profile_in = _relu_backward(routes, profile)
            if profile is not None and gain > 0.0:
                log_gain = math.log10(gain)
        log_pre = log_out if folded else log_out + log_gain
        pre[own] = log_pre
        inputs = input_places[own]
        if not inputs:
            continue
        merge = layer.merge
        resampling = state.log_resampling
        if state.log_pass_back is not None:  # nested model or scale layer
            to_input = [log_pre + state.log_pass_back] * len(inputs)
        elif state.log_scaled_sum is not None:
            to_input = [log_pre] + [log_pre + state.log_scaled_sum] * (len(inputs) - 1)
        elif state.log_pre is not None:  # weighted layer
            to_input = [log_pre + state.log_kernel_back + resampling] * len(inputs)
        elif resampling:
            to_input = [log_pre + resampling] * len(inputs)
        elif _NORMALIZATION in layer.traits:
            sources = (_concatenated_sources(layers[inputs[0]], by_name, concat_sources)
                       if len(inputs) == 1 else None)
            if sources:
                # A normalization of a concatenation divides each channel by its own
                # variance: each source receives its share directly (the concatenation only
                # routes channels), not the average over all of them.
                for source in sources:
                    out = by_place[order[source]].out
                    incoming[order[source]].append(
                        log_pre - (out.harmonic if out.harmonic is not None else out.fluct))
                continue
            to_input = [log_pre + state.log_norm_back] * len(inputs)
        elif merge is _AVERAGE:
            to_input = [log_pre - 2.0 * math.log10(len(inputs))] * len(inputs)
        elif merge is _PRODUCT:
            input_log_q = [by_place[place].out.total for place in inputs if place < own]
            total = sum(input_log_q)
            to_input = [log_pre + total - q for q in input_log_q]
        elif merge is _SELECT:
            to_input = [log_pre - math.log10(len(inputs))] * len(inputs)
        else:
            to_input = [log_pre] * len(inputs)
        broadcast = False
        if merge is not None and len(layer.input_shapes) == len(inputs) and layer.output_shapes:
            # some input shape differs from the output's (``count``: no Python loop per merge)
            broadcast = layer.input_shapes.count(layer.output_shapes[0]) != len(inputs)
        if broadcast:
            # An input broadcast over positions (a squeeze-and-excitation gate) receives the
            # sum of the gradients of every position it was repeated over.
            config = layer.node.config
            p_out = spatial_positions(layer.output_shapes[0] if layer.output_shapes else None,
                                      config)
            to_input = [value + math.log10(p_out / max(spatial_positions(shape, config), 1))
                        if spatial_positions(shape, config) < p_out else value
                        for value, shape in zip(to_input, layer.input_shapes, strict=True)]
        if profile_in is not None and len(inputs) == 1 and state.log_pre is None:
            # An activation layer: its input's units get their own share (per component).
            mixture = by_place[inputs[0]].out.mixture
            if mixture is not None and len(mixture) == len(profile_in):
                profiles.setdefault(inputs[0], []).append((to_input[0], profile_in))
        elif profile is not None and state.out.joined is not None and merge is _CONCAT:
            # A concatenation: each input's units are the concatenation's units it went to.
            for index, (input_place, targets) in enumerate(zip(inputs, state.out.joined, strict=False)):
                mixture = by_place[input_place].out.mixture
                if mixture is None or len(mixture) != len(targets):
                    continue
                shares = [profile[place] if place < len(profile) else 1.0 for place in targets]
                norm = sum(w * share for (w, _, _), share in zip(mixture, shares, strict=True))
                if norm > 0.0:
                    to_input[index] += math.log10(norm)
                    profiles.setdefault(input_place, []).append(
                        (to_input[index], tuple(share / norm for share in shares)))
        elif (profile is not None and state.out.mixture is not None and len(inputs) == 2
                and (merge is _SUM or state.log_scaled_sum is not None)):
            # A residual sum: the identity input's units are the sum's (one component each).
            mixed = [i for i, place in enumerate(inputs) if by_place[place].out.mixture is not None]
            if len(mixed) == 1 and len(by_place[inputs[mixed[0]]].out.mixture or ()) == len(profile):
                profiles.setdefault(inputs[mixed[0]], []).append((to_input[mixed[0]], profile))
        if len(inputs) == 1:  # the usual layer: no zip
            incoming[inputs[0]].append(to_input[0])
        else:
            for place, value in zip(inputs, to_input, strict=False):
                incoming[place].append(value)
    return pre


def _profile(arriving: list[tuple[float, tuple[float, ...]]] | None, log_total: float
             ) -> tuple[float, ...] | None:
    """The relative gradient variance per mixture component of a tensor whose gradient
    (log10 variance ``log_total`` in all) arrives partly unevenly: the uneven parts as given,
    the rest evenly (None: all even)."""
    if not arriving:
        return None
    size = len(arriving[0][1])
    combined = [1.0] * size
    for log_value, shares in arriving:
        if len(shares) != size:
            continue
        relative = log_value - log_total  # (min(relative, 0.0), written out)
        weight = 10.0 ** (0.0 if 0.0 < relative else relative)
        for index, share in enumerate(shares):
            combined[index] += weight * (share - 1.0)
    return tuple(combined)


def _relu_backward(routes: tuple[tuple[float, float, int], ...], profile: tuple[float, ...] | None
                   ) -> tuple[float, tuple[float, ...]]:
    """A ReLU on the way back, per component of its input (``routes``: weight, P(open), the
    output component it went to): the gradient variance it passes, relative to its output's
    (``profile``: relative variance per output component, None for even), and how that is
    spread over the input's components (relative, weighted mean 1).

    A unit open after a residual sum is most likely one that was far above zero before it,
    and stays open in the next sums too (ResNet's and Inception-ResNet's identity paths:
    relu(x + branch) again and again): the gradient arriving through the identity path sits
    on the units that stay open, which each ReLU on the way back passes almost whole. Followed
    per component, this counts those masks as correlated over all consecutive sums, not as
    independent (the product of the P(open)s).

    >>> _relu_backward(((0.5, 0.0, 0), (0.5, 1.0, 1)), None)
    (0.5, (0.0, 2.0))
    """
    gain = 0.0
    for weight, opened, index in routes:
        if opened > 0.0:
            gain += weight * opened * (profile[index] if profile is not None
                                       and index < len(profile) else 1.0)
    if gain <= 0.0:
        return 0.0, tuple(0.0 for _ in routes)
    return gain, tuple(opened * (profile[index] if profile is not None and index < len(profile)
                                 else 1.0) / gain if opened > 0.0 else 0.0
                       for _, opened, index in routes)


_MAX_SOURCES = 256
"""Channel groups a concatenation is split into for the normalization after it (beyond that,
the harmonic mean of their variances stands for all)."""


def _concatenated_sources(layer: LayerResult | None, by_name: dict[str, LayerResult],
                          memo: dict[str, tuple[str, ...] | None]) -> tuple[str, ...] | None:
    """The layers whose channels a concatenation (of concatenations, as in DenseNet) joins, in
    order; None for another layer, an unknown shape or too many sources."""
    if layer is None or layer.merge is not Merge.CONCAT or len(layer.inbound) < 2:
        return None
    if layer.name in memo:
        return memo[layer.name]
    found: list[str] = []
    for name in layer.inbound:
        source = by_name.get(name)
        if source is None:
            memo[layer.name] = None
            return None
        nested = _concatenated_sources(source, by_name, memo)
        if nested is not None:
            found.extend(nested)
        else:
            found.append(name)
        if len(found) > _MAX_SOURCES:
            memo[layer.name] = None
            return None
    # Only a concatenation along channels splits into channel groups.
    config = layer.node.config
    axis = config.get("axis", -1)
    rank = len(layer.output_shapes[0]) if layer.output_shapes and layer.output_shapes[0] else 0
    channel_axis = 1 if config.get("data_format") == "channels_first" else rank - 1
    if not rank or (axis if axis >= 0 else rank + axis) != channel_axis:
        memo[layer.name] = None
        return None
    memo[layer.name] = tuple(found)
    return memo[layer.name]


_RESAMPLING = frozenset({Trait.POOLING, Trait.GLOBAL_POOLING, Trait.UPSAMPLING, Trait.CROPPING,
                         Trait.RESIZING, Trait.KERNEL})


def _log_resampling(layer: LayerResult) -> float:
    """log10 of the factor a layer that changes the number of spatial positions applies to the
    per-position gradient variance on its way back: each input position receives, on average,
    P_out / P_in of the output gradients (a stride-2 convolution or max pooling: 1/4; nearest
    upsampling by 2: 4); an averaging window also divides each share by its area (global
    average pooling over P positions: 1/P^2). Transposed convolutions' fans already count
    their outputs per input; padding passes the gradient of the positions it keeps."""
    traits = layer.traits
    if traits.isdisjoint(_RESAMPLING) or _TRANSPOSED in traits or _PADDING in traits:
        return 0.0
    if not layer.input_shapes or not layer.output_shapes:
        return 0.0
    if (layer.input_shapes[0] == layer.output_shapes[0] and _AVERAGING not in traits
            and _GLOBAL_POOLING not in traits):
        return 0.0  # same positions (a stride-1 "same" convolution): the common case
    config = layer.node.config
    p_in = spatial_positions(layer.input_shapes[0], config)
    p_out = spatial_positions(layer.output_shapes[0], config)
    if _GLOBAL_POOLING in traits:
        p_out = 1
    if p_in == p_out and _AVERAGING not in traits:
        return 0.0
    log_factor = math.log10(p_out / p_in)
    if _AVERAGING in traits:
        area = p_in if _GLOBAL_POOLING in traits else _pool_area(layer)
        log_factor -= math.log10(max(area, 1))
    return log_factor


Bounds = tuple[int, int, int, int, int, int]
"""(fewest, most) weighted layers, (fewest, most) saturating activations and (fewest, most)
normalizations on the way to an output: see :func:`_paths`."""


def _paths(result: AnalysisResult, weighted: set[int], places: Places
           ) -> tuple[list[Bounds | None], list[int] | None]:
    """Per layer, by place: (fewest, most) weighted layers, (fewest, most) saturating
    activations and (fewest, most) normalizations on the way to an output (the layer itself
    included), as one tuple of six, or None when it reaches no output; by dynamic programming
    over the graph (every layer is walked; only the weighted ones are read afterwards).
    ``weighted``: the places of the weighted layers; ``places``: :func:`_places` of ``result``.
    Found in the same walk, :func:`global_averaging` by place, or None where a layer reads a
    later one (see below).

    Walked backwards, each layer's bounds are merged into those of its inputs as soon as they
    are known, so that a layer finds its consumers' bounds merged, by index, when its turn
    comes (its inputs are the producers the graph's edges name). A consumer placed before its
    input (a shared layer called again on a later layer's output) has not been walked when
    the input's bounds are read: it is not counted. :func:`global_averaging` counts such a
    consumer as averaging nothing further, a value this walk would hand over too late: the
    averaging is then None, for the caller to ask global_averaging itself."""
    layers = result.layers
    order, input_places, _ = places
    outputs = {order[name] for name in result.output_layers if name in order}
    normalization_trait = _NORMALIZATION
    global_pooling, averaging = _GLOBAL_POOLING, _AVERAGING
    saturating = SATURATING_ACTIVATIONS
    at_output = (0, 0, 0, 0, 0, 0)
    bounds: list[Bounds | None] = [None] * len(layers)
    # Per place: its consumers' bounds so far, merged (min of the fewest, max of the most).
    downstream: list[Bounds | None] = [None] * len(layers)
    averaged = [1] * len(layers)
    # Per place: the fewest positions averaged on the way through its consumers so far (0:
    # no consumer yet; every count is at least 1).
    averaged_below = [0] * len(layers)
    exact = True
    for own in range(len(layers) - 1, -1, -1):
        layer = layers[own]
        traits = layer.traits
        is_output = own in outputs
        below = averaged_below[own]
        factor = averaged[own] = 1 if is_output or not below else below  # an output: 1
        if global_pooling in traits and averaging in traits:
            factor *= spatial_positions(layer.input_shapes[0] if layer.input_shapes else None,
                                        layer.node.config)
        option = downstream[own]
        if is_output:
            option = at_output if option is None else _merged_bounds(option, at_output)
        bound = None
        if option is not None:  # else: reaches no output
            own_weighted = 1 if own in weighted else 0
            own_saturating = 1 if ((layer.activation or "linear") in saturating
                                   and not is_output) else 0  # activation_of(layer)
            own_norm = 1 if normalization_trait in traits else 0
            d_min, d_max, s_min, s_max, n_min, n_max = option
            bound = bounds[own] = (own_weighted + d_min, own_weighted + d_max,
                                   own_saturating + s_min, own_saturating + s_max,
                                   own_norm + n_min, own_norm + n_max)
        for place in input_places[own]:
            if place < own:
                if bound is not None:
                    merged = downstream[place]
                    downstream[place] = (bound if merged is None
                                         else _merged_bounds(merged, bound))
                below = averaged_below[place]
                averaged_below[place] = factor if not below or factor < below else below
            else:
                exact = False
    return bounds, averaged if exact else None


def _merged_bounds(a: Bounds, b: Bounds) -> Bounds:
    """The bounds of two ways to an output together: the fewer of the fewest, the more of the
    most.

    >>> _merged_bounds((1, 4, 0, 2, 0, 0), (2, 3, 0, 3, 1, 1))
    (1, 4, 0, 3, 0, 1)
    """
    a_dmin, a_dmax, a_smin, a_smax, a_nmin, a_nmax = a
    b_dmin, b_dmax, b_smin, b_smax, b_nmin, b_nmax = b
    return (b_dmin if b_dmin < a_dmin else a_dmin, b_dmax if b_dmax > a_dmax else a_dmax,
            b_smin if b_smin < a_smin else a_smin, b_smax if b_smax > a_smax else a_smax,
            b_nmin if b_nmin < a_nmin else a_nmin, b_nmax if b_nmax > a_nmax else a_nmax)


SKIP_LAYERS_LISTED = 8
"""Merges named per weighted layer in ``skip_layers`` (``skip_connections`` counts them all)."""
_ONE_PASS_SPANS_PER_LAYER = 4
"""Merges' spans per layer above which the skips are found in one pass over the graph rather
than by a walk per merge (the pass costs per layer about what the walks cost per 2 to 3 layers
of a region: measured on a residual chain and InceptionV3, whose spans are 0.5 and 1.05 per
layer; NASNetMobile's are 32)."""


def _bypassing_skips(result: AnalysisResult, names: Iterable[str], places: Places | None = None
                     ) -> dict[str, list[str]]:
    """For each named layer, the merge layers (Add, Concatenate, ...) downstream of it that also
    receive an input not computed from it: skip connections that bypass the layer.

    A merge ``M`` bypasses exactly the layers strictly between ``M`` and its immediate
    dominator ``D`` (the last layer every path from the inputs to ``M`` crosses: the fork of a
    residual block): each of them feeds some input of ``M`` while the fork's other branch
    reaches ``M`` without it. Dominators come from one topological pass (Cooper, Harvey &
    Kennedy 2001, "A simple, fast dominance algorithm"). (A layer inside the region that feeds
    every input of ``M`` is counted too; no standard block has one.) ``places``:
    :func:`_places` of ``result`` where the caller has it.
    """
    wanted: dict[str, list[str]] = {name: [] for name in names}
    places = places or _places(result)
    order = places[0]
    by_place: list[list[str] | None] = [None] * len(result.layers)
    for name, bypassed in wanted.items():
        place = order.get(name)
        if place is not None:
            by_place[place] = bypassed
    _bypassing_skips_by_place(result, by_place, places)
    return wanted


def _bypassing_skips_by_place(result: AnalysisResult, wanted: list[list[str] | None],
                              places: Places, listed: int | None = None) -> list[int]:
    """:func:`_bypassing_skips` by place: appends to ``wanted[place]`` the first ``listed``
    (all when None) of the merges that bypass the layer at that place, in graph order (None:
    not asked for), and returns per place how many merges bypass it (0 where not asked).
    ``places``: :func:`_places` of ``result``.

    The merges' regions (the layers strictly between a merge and its fork) are found by one of
    two means with the same answer: walking each region back to its fork
    (:func:`_walk_merge_regions`), which costs the regions' sizes, or one backward pass over
    every layer (:func:`_merge_regions_in_one_pass`), which needs every layer's inputs before
    it. The pass is taken where the regions may be several times larger together than the
    graph (:data:`_ONE_PASS_SPANS_PER_LAYER`): where they nest and overlap (NASNet's cells
    join maps from two cells back, so that a merge's fork lies far back), not in a chain of
    residual blocks."""
    layers = result.layers
    counts = [0] * len(layers)
    merges = [place for place in places[2]  # those that read more than one layer
              if layers[place].merge in SKIP_MERGES]
    if not merges:
        return counts
    # Layers by their place in topological order: a dominator is a place (-1: the virtual
    # root), so that comparing two is comparing ints, with no name looked up.
    input_places = places[1]
    # Per place: the places of its distinct known inputs (its inputs' own list, replaced below
    # where one repeats).
    parents: list[list[int]] = list(input_places)
    dominator: list[int] = []

    def meet(a: int, b: int) -> int:
        while a >= 0 and b >= 0 and a != b:
            while a >= 0 and b >= 0 and a > b:
                a = dominator[a]
            while a >= 0 and b >= 0 and b > a:
                b = dominator[b]
        return a if a == b else -1

    for own, inputs in enumerate(input_places):
        count = len(inputs)
        if count <= 1:  # the usual layer: its input dominates it if earlier
            # (none: a model input, dominated by the virtual root; a later one: a shared layer
            # called again on a later layer's output, no dominator below the root)
            dominator.append(inputs[0] if inputs and inputs[0] < own else -1)
            continue
        if count == 2 and inputs[0] != inputs[1]:  # a pair (a residual sum): the loop below
            first, second = inputs
            dominator.append(-1 if first >= own or second >= own else meet(first, second))
            continue
        distinct = parents[own] = list(dict.fromkeys(inputs))
        if max(distinct) >= own:  # a shared layer called again on a later layer's output
            dominator.append(-1)
            continue
        found = distinct[0]
        for place in distinct[1:]:
            found = meet(found, place)
            if found < 0:
                break
        dominator.append(found)
    # Where every layer's inputs come before it, a region lies between its fork and its
    # merge: the walks cost at most the sum of those spans, sum(merge - fork - 1).
    spans = sum(merges) - sum(map(dominator.__getitem__, merges)) - len(merges)
    if (spans > _ONE_PASS_SPANS_PER_LAYER * len(layers)
            and all(not inputs or max(inputs) < own for own, inputs in enumerate(parents))):
        _merge_regions_in_one_pass(layers, merges, dominator, parents, wanted, counts, listed)
    else:
        _walk_merge_regions(layers, merges, dominator, parents, wanted, counts, listed)
    return counts


def _walk_merge_regions(layers: list[LayerResult], merges: list[int], dominator: list[int],
                        parents: list[list[int]], wanted: list[list[str] | None],
                        counts: list[int], listed: int | None) -> None:
    """:func:`_bypassing_skips_by_place`'s regions, each walked back from its merge to its
    fork (``dominator``: per place its immediate dominator, -1 for the virtual root;
    ``parents``: per place its distinct inputs' places)."""
    limit = len(merges) if listed is None else listed
    for merge in merges:
        fork = dominator[merge]
        merge_name = layers[merge].name
        pending = [place for place in parents[merge] if place != fork]
        region: set[int] = set(pending)
        while pending:
            place = pending.pop()
            bypassed = wanted[place]
            if bypassed is not None:
                counts[place] += 1
                if len(bypassed) < limit:
                    bypassed.append(merge_name)
            for parent in parents[place]:
                if parent != fork and parent not in region:
                    region.add(parent)
                    pending.append(parent)


def _merge_regions_in_one_pass(layers: list[LayerResult], merges: list[int],
                               dominator: list[int], parents: list[list[int]],
                               wanted: list[list[str] | None], counts: list[int],
                               listed: int | None) -> None:
    """:func:`_walk_merge_regions`'s answer in one backward pass, where every layer's inputs
    come before it: the merges whose regions hold a layer are those whose regions hold, or
    that are, one of its consumers, less those whose fork it is (the walk stops there). They
    are kept per layer as the bits of an int, bit i for the i-th merge after its place (a
    chain of residual blocks keeps small ints)."""
    rank_of = [-1] * len(layers)  # per place: its rank among the merges, -1 for another layer
    is_merge = [0] * len(layers)
    for rank, place in enumerate(merges):
        rank_of[place] = rank
        is_merge[place] = 1
    after = list(accumulate(is_merge))  # per place: merges at or before it (bit 0's rank)
    forks = [0] * len(layers)  # per place: the bits of the merges whose fork it is
    for rank, place in enumerate(merges):
        fork = dominator[place]
        if fork >= 0:
            forks[fork] |= 1 << (rank - after[fork])
    arriving = [0] * len(layers)  # per place: its consumers' merges so far, as its bits
    # Backwards, each place's lists read by iterators (a place's arriving bits are complete
    # when its turn comes: its consumers come after it).
    limit = len(merges) if listed is None else listed
    for own, bits, rank, fork_bits, bypassed, first_rank, inputs in zip(
            range(len(layers) - 1, -1, -1), reversed(arriving), reversed(rank_of),
            reversed(forks), reversed(wanted), reversed(after), reversed(parents), strict=True):
        if bits:
            if fork_bits:
                bits &= ~fork_bits
            if bypassed is not None and bits:
                count = counts[own] = bits.bit_count()
                remaining = bits
                for _ in range(min(count, limit)):
                    lowest = remaining & -remaining
                    bypassed.append(layers[merges[first_rank + lowest.bit_length() - 1]].name)
                    remaining ^= lowest
        if rank >= 0:  # a merge hands itself on too, as the bit below the ones it has
            bits = bits << 1 | 1
            first_rank = rank
        elif not bits:
            continue
        for parent in inputs:
            arriving[parent] |= bits << (first_rank - after[parent])


def _scale(log_value: float) -> float | None:
    """10**log_value as a float, None when it does not fit (|log10| > 300)."""
    if log_value != log_value or abs(log_value) > 300:
        return None
    return 10.0 ** log_value


def predict(result: AnalysisResult) -> dict[str, Any]:
    """Predict gradient flow at initialization and call it healthy, vanishing or exploding.

    Returns ``report.gradient_flow.predicted``: ``verdict``, ``ratio`` (first/last, see
    ``ratio_definition``), ``thresholds``, per weighted layer numbers in ``layers`` and the
    ``assumptions`` behind them. The report builder computes it once and hands it to the
    findings (nothing is remembered between analyses: a module-level cache kept the last
    analysed graph alive, 53 MB after the 10,000-block residual chain).
    """
    return _predict(result)


def _predict(result: AnalysisResult) -> dict[str, Any]:
    notes: list[str] = []
    places = _places(result)
    layers = result.layers
    states = _forward(result, notes, places=places)
    weighted_places = [place for place, state in enumerate(states) if state.log_pre is not None]
    base: dict[str, Any] = {
        "method": METHOD,
        "ratio_definition": RATIO_DEFINITION,
        "thresholds": THRESHOLDS,
        "assumptions": ASSUMPTIONS,
    }
    if not weighted_places:
        return {**base, "verdict": None, "status": "not_computed",
                "reason": "no weighted layer (convolution or dense) to predict gradients for",
                "layers": [], "notes": notes}
    pre = _backward(result, states, places=places)
    paths, averaged = _paths(result, set(weighted_places), places)
    skips: list[list[str] | None] = [None] * len(layers)  # by place: the weighted layers'
    for place in weighted_places:
        skips[place] = []
    skip_counts = _bypassing_skips_by_place(result, skips, places, listed=SKIP_LAYERS_LISTED)
    reachable = [index for index, place in enumerate(weighted_places)
                 if paths[place] is not None]  # their indices in weighted_places
    if not reachable:
        return {**base, "verdict": None, "status": "not_computed",
                "reason": "no weighted layer reaches a model output", "layers": [], "notes": notes}
    first_place, last_place = weighted_places[reachable[0]], weighted_places[reachable[-1]]
    first, last = layers[first_place], layers[last_place]
    log_last_weight = pre[last_place] + states[last_place].first_input_log_q
    layers_out: list[dict[str, Any]] = []
    per_layer: dict[str, float | None] = {}
    unknown_init: list[str] = []  # weighted layers with an initializer assumed glorot-like
    # The quantity: sqrt(P x per-position variance), in log10, relative to the last layer
    # (in logs: the values span hundreds of orders of magnitude in broken networks).
    if averaged is None:  # a layer reads a later one: global_averaging's own reading
        by_name = global_averaging(result)
        averaged = [by_name.get(layer.name, 1) for layer in layers]
    log_norms = []
    for place in weighted_places:
        log_norms.append(log10_layer_gradient_norm(pre[place], states[place].positions,
                                                   averaged[place]))
    log_last_norm = log_norms[reachable[-1]]
    # The first layer's entry and the weakest and strongest of those reaching an output, as
    # min/max would pick them (the first of equal values), found in the same loop.
    first_entry: dict[str, Any] | None = None
    weakest: dict[str, Any] | None = None
    strongest: dict[str, Any] | None = None
    for place, log_norm in zip(weighted_places, log_norms, strict=True):
        layer = layers[place]
        name = layer.name
        state = states[place]
        found = paths[place]
        log_pre = pre[place]
        relative = round(log_norm - log_last_norm, 4)
        kernels = state.kernels or []
        if len(kernels) == 1:  # all but separable layers: no loop, no comprehension
            kernel = kernels[0]
            if not kernel.known:
                unknown_init.append(name)
            variance = kernel.variance
            # beyond float range (a stddev of 1e200 squared): null, as JSON has no infinity
            variances = [variance if variance != math.inf else None]
        else:
            for kernel in kernels:
                if not kernel.known:
                    unknown_init.append(name)
                    break
            variances = [k.variance if k.variance != math.inf else None for k in kernels]
        log_weight = log_pre + state.first_input_log_q - log_last_weight
        # _scale's test and power inline (three per layer): a NaN fails both comparisons,
        # as it fails _scale's, and gives None as there.
        scale = 10.0 ** relative if -300 <= relative <= 300 else None
        log_gain = state.log_act_grad
        log_pre_variance = state.log_pre or 0.0
        bypassed = skips[place] or []
        entry: dict[str, Any] = {
            "name": name,
            "class_name": layer.class_name,
            "initializer": kernels[0].initializer if kernels else None,
            "weight_variance": variances,
            "fan_in": kernels[0].keras_fan_in if kernels else None,
            "fan_out": kernels[-1].keras_fan_out if kernels else None,
            "activation": layer.activation or "linear",  # activation_of(layer)
            "activation_gain": 10.0 ** log_gain if -300 <= log_gain <= 300 else None,
            "pre_activation_variance": (10.0 ** log_pre_variance
                                        if -300 <= log_pre_variance <= 300 else None),
            "log10_relative_gradient_scale": relative,
            "relative_gradient_scale": scale,
            "log10_relative_weight_gradient_scale": round(log_weight / 2.0, 4),
            "depth_to_output": ({"shortest": found[0] - 1, "longest": found[1] - 1}
                                if found is not None else None),
            "skip_connections": skip_counts[place],
            "skip_layers": bypassed,
            "saturating_activations": ({"fewest": found[2], "most": found[3]}
                                       if found is not None else None),
            "normalizations": ({"fewest": found[4], "most": found[5]}
                               if found is not None else None),
        }
        layers_out.append(entry)
        per_layer[name] = scale
        if layer is first:
            first_entry = entry
        if found is not None:
            if weakest is None or relative < weakest["log10_relative_gradient_scale"]:
                weakest = entry
            if strongest is None or relative > strongest["log10_relative_gradient_scale"]:
                strongest = entry
    assert first_entry is not None and weakest is not None and strongest is not None
    log_ratio = first_entry["log10_relative_gradient_scale"]
    log_weight_ratio = first_entry["log10_relative_weight_gradient_scale"]
    ratio = 10.0 ** log_ratio if abs(log_ratio) < 300 else (0.0 if log_ratio < 0 else math.inf)
    first_info = paths[first_place]
    assert first_info is not None
    normalized = bool(first_info[5])
    verdict = classify(ratio, normalized=normalized)
    growth_under_normalization = bool(normalized and verdict == "healthy"
                                      and ratio > EXPLODING_RATIO)
    reasons = []
    if verdict == "vanishing":
        reasons.append(f"the gradient reaching {first.name} is predicted {_words(log_ratio)} "
                       f"the one reaching {last.name}")
    elif verdict == "exploding":
        reasons.append(f"the gradient reaching {first.name} is predicted {_words(log_ratio)} "
                       f"the one reaching {last.name}")
    if unknown_init:
        notes.append("unknown initializers assumed glorot-like: " + ", ".join(unknown_init[:10]))
    return {
        **base,
        "status": "complete" if not notes else "partial",
        "verdict": verdict,
        "quantity": QUANTITY["name"],
        "ratio": ratio if math.isfinite(ratio) else None,
        "log10_ratio": round(log_ratio, 4),
        "normalized": normalized,
        "growth_under_normalization": growth_under_normalization,
        "per_layer": per_layer,
        "weight_gradient_ratio": _scale(log_weight_ratio),
        "log10_weight_gradient_ratio": log_weight_ratio,
        "weight_gradient_verdict": classify_ratio(_scale(log_weight_ratio)),
        "first_layer": first.name,
        "last_layer": last.name,
        "weighted_layers": len(weighted_places),
        # the first layer's depth_to_output (weighted layers after it), and the network's
        # skip connections as every section counts them (app.analysis.skips)
        "depth": {"shortest": first_info[0] - 1, "longest": first_info[1] - 1},
        "skip_connections": find_skips(result).count,
        "saturating_activations_on_longest_path": first_info[3],
        "weakest_layer": {"name": weakest["name"],
                          "log10_relative_gradient_scale":
                              weakest["log10_relative_gradient_scale"]},
        "strongest_layer": {"name": strongest["name"],
                            "log10_relative_gradient_scale":
                                strongest["log10_relative_gradient_scale"]},
        "reasons": reasons,
        "layers": layers_out,
        "notes": notes[:50],
    }


def _positions(layer: LayerResult) -> int:
    return spatial_positions(layer.output_shapes[0] if layer.output_shapes else None,
                             layer.node.config)


def _words(log_ratio: float) -> str:
    """'1e-12 times' style wording for a log10 ratio."""
    return f"about 1e{round(log_ratio):+d} times"


# ---------------------------------------------------------------------------------------------
# A measurement meets the prediction
# ---------------------------------------------------------------------------------------------

AGREEMENT_FACTOR = 3.0
"""Per-layer predicted and measured values within this factor of each other agree."""
GRADIENT_FINDINGS = frozenset({"gradient_flow_vanishing", "gradient_flow_exploding",
                               "gradient_flow_normalization_growth"})
"""Findings that state the predicted verdict, marked once a measurement arrives."""


def compare(predicted: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """How far the measured per-layer values are from the predicted ones (same quantity, both
    relative to the last weighted layer): the median and largest factor, and the share of
    layers within :data:`AGREEMENT_FACTOR`.

    >>> compare({"per_layer": {"a": 1.0, "b": 4.0}, "ratio": 4.0},
    ...         {"per_layer": {"a": 1.0, "b": 2.0}, "ratio": 2.0})["median_factor"]
    1.4142
    """
    expected = predicted.get("per_layer") or {}
    observed = measured.get("per_layer") or {}
    factors = []
    for name, value in expected.items():
        other = observed.get(name)
        if value and other and value > 0 and other > 0:
            factors.append(abs(math.log10(value / other)))
    factors.sort()
    if not factors:
        return {"layers": 0, "median_factor": None, "max_factor": None, "within_factor": None,
                "agreement_factor": AGREEMENT_FACTOR, "ratio_factor": None}
    middle = len(factors) // 2
    median = factors[middle] if len(factors) % 2 else (factors[middle - 1] + factors[middle]) / 2
    ratio_factor = None
    p_ratio, m_ratio = predicted.get("ratio"), measured.get("ratio")
    if p_ratio and m_ratio and p_ratio > 0 and m_ratio > 0:
        log_factor = abs(math.log10(p_ratio) - math.log10(m_ratio))
        ratio_factor = round(10.0 ** log_factor, 4) if log_factor < 300 else None
    limit = math.log10(AGREEMENT_FACTOR)
    # Factors beyond 1e300 (a prediction near the float range against a float32 measurement)
    # are null, as the per-layer scales are: 10.0 ** 309 raises.
    return {
        "layers": len(factors),
        "median_factor": round(10.0 ** median, 4) if median < 300 else None,
        "max_factor": round(10.0 ** factors[-1], 4) if factors[-1] < 300 else None,
        "within_factor": round(sum(f <= limit for f in factors) / len(factors), 4),
        "agreement_factor": AGREEMENT_FACTOR,
        "ratio_factor": ratio_factor,
    }


def measured_summary(verdict: str | None, ratio: float | None, *, non_finite: bool) -> str:
    """The measured verdict in one sentence (the worker's record and attach_measurement).

    >>> measured_summary("healthy", 0.5, non_finite=False)
    'Measured healthy: first and last layers get gradients of comparable size (first-to-last ratio 0.5).'
    """
    words = {
        "vanishing": "the first layer's gradient is orders of magnitude below the last layer's",
        "exploding": ("some gradients are not finite" if non_finite else
                      "the first layer's gradient is orders of magnitude above the last layer's"),
        "healthy": "first and last layers get gradients of comparable size",
    }.get(verdict or "", "no verdict")
    ratio_text = "n/a" if ratio is None else f"{ratio:.3g}"
    return f"Measured {verdict}: {words} (first-to-last ratio {ratio_text})."


def attach_measurement(report: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` with ``measured`` as ``gradient_flow.measured``: the one place a
    measurement meets the prediction. The measured verdict is given by the same rule as the
    predicted one (:func:`classify`, with the architecture's ``normalized`` flag); the
    per-layer comparison goes to ``gradient_flow.comparison``, whether the two verdicts agree
    to ``gradient_flow.agreement``, and each finding stating the predicted verdict is marked
    ``confirmed`` or ``contradicted`` by the measurement.

    >>> report = {"gradient_flow": {"predicted": {"verdict": "exploding", "normalized": False,
    ...           "per_layer": {"a": 5e3, "b": 1.0}, "ratio": 5e3}}, "findings": [
    ...           {"code": "gradient_flow_exploding", "message": "..."}]}
    >>> out = attach_measurement(report, {"status": "measured", "ratio": 2.0,
    ...                                   "per_layer": {"a": 2.0, "b": 1.0}})
    >>> out["gradient_flow"]["measured"]["verdict"], out["gradient_flow"]["agreement"]
    ('healthy', 'disagree')
    >>> out["findings"][0]["measurement"]
    'contradicted'
    """
    report = dict(report)
    flow = dict(report.get("gradient_flow") or {})
    report["gradient_flow"] = flow
    predicted = flow.get("predicted") or {}
    flow.setdefault("quantity", QUANTITY)
    measured = dict(measured)
    comparison = None
    if measured.get("status") == "failed":  # the reason; the job row keeps the whole error
        error = measured.get("error")
        code = error.get("code") if isinstance(error, dict) else measured.get("code")
        measured = {"status": "failed", "verdict": None,
                    "reason": str(measured.get("reason") or "the measurement failed"),
                    "code": code if isinstance(code, str) else None}
    if measured.get("status") == "measured":
        order = [name for name in predicted.get("per_layer") or {}]
        observed = measured.get("per_layer") or {}
        order += [name for name in observed if name not in set(order)]
        profile = relative_profile([(name, observed.get(name)) for name in order])
        measured["per_layer"] = {name: value for name, value in profile["per_layer"].items()
                                 if name in observed}
        measured["ratio"] = profile["ratio"]
        measured["log10_ratio"] = profile["log10_ratio"]
        measured["first_layer"], measured["last_layer"] = (profile["first_layer"],
                                                           profile["last_layer"])
        if not measured.get("non_finite_gradients"):
            measured["verdict"] = classify(profile["ratio"],
                                           normalized=bool(predicted.get("normalized")))
        if "summary" in measured:
            measured["summary"] = measured_summary(
                measured.get("verdict"), measured.get("ratio"),
                non_finite=bool(measured.get("non_finite_gradients")))
        comparison = compare(predicted, measured) if predicted.get("per_layer") else None
    flow["measured"] = measured
    flow["comparison"] = comparison
    p_verdict, m_verdict = predicted.get("verdict"), measured.get("verdict")
    if m_verdict is None or p_verdict is None:
        flow["agreement"] = None
    else:
        flow["agreement"] = "agree" if p_verdict == m_verdict else "disagree"
    findings = []
    for finding in report.get("findings") or []:
        if finding.get("code") in GRADIENT_FINDINGS:
            finding = dict(finding)
            if m_verdict is None:
                finding.pop("measurement", None)
                finding.pop("measurement_note", None)
            else:
                stated = ("healthy" if finding["code"] == "gradient_flow_normalization_growth"
                          else finding["code"].removeprefix("gradient_flow_"))
                confirmed = m_verdict == stated
                finding["measurement"] = "confirmed" if confirmed else "contradicted"
                ratio = measured.get("ratio")
                ratio_text = f"{ratio:.3g}" if isinstance(ratio, float) else "n/a"
                finding["measurement_note"] = (
                    f"The measurement {'confirms' if confirmed else 'contradicts'} this: "
                    f"measured {m_verdict} (first-to-last ratio {ratio_text}).")
        findings.append(finding)
    if "findings" in report:
        report["findings"] = findings
    return report
