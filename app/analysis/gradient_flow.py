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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.analysis.graph import AnalysisResult, LayerResult
from app.analysis.skips import find_skips
from app.analysis.traits import SKIP_MERGES, Merge, Trait

VANISHING_RATIO = 1e-3
"""First-to-last gradient ratio below which gradient flow is called vanishing."""
EXPLODING_RATIO = 1e3
"""First-to-last gradient ratio above which gradient flow is called exploding."""

RATIO_DEFINITION = (
    "RMS of the gradient reaching the first weighted layer (w.r.t. its pre-activation) divided by "
    "the RMS reaching the last weighted layer, at initialization; weight_gradient_ratio is the "
    "same for the kernels' own gradients (input second moment x backpropagated variance), the "
    "quantity to compare with measured kernel gradients"
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


def is_normalization(layer: LayerResult) -> bool:
    return Trait.NORMALIZATION in layer.traits


def _rescales_input(layer: LayerResult) -> bool:
    """Preprocessing that changes values (Rescaling, Normalization): inputs are standardized
    after it (see ASSUMPTIONS); augmentation and resizing keep the scale."""
    return Trait.PREPROCESSING in layer.traits and not layer.traits & _PASS_THROUGH_PREPROCESSING

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_LOG_FLOOR = -300.0


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
    return 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0)))


def _gelu_grad(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) + z * math.exp(-0.5 * z * z) / _SQRT_2PI


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _clip_exp(z: float) -> float:
    return math.exp(min(z, 700.0))


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
    cdf = 0.5 * math.erfc(-t / math.sqrt(2.0))
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
    key = _ALIASES.get((name or "linear").lower(), (name or "linear").lower())
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
    return math.log10(value) if value > 0 else _LOG_FLOOR


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


def initializer_variance(value: Any, fan_in: int, fan_out: int) -> tuple[float, str, bool]:
    """Second moment of the weights an initializer draws, its name, and whether it is known.

    >>> initializer_variance("he_normal", 288, 576)[0] == 2 / 288
    True
    """
    name, config = _initializer_parts(value)
    fan_in, fan_out = max(fan_in, 1), max(fan_out, 1)
    fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
    if name in _VARIANCE_SCALING:
        scale, mode = _VARIANCE_SCALING[name]
        return scale / fans[mode], name, True
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
        return (high - low) ** 2 / 12.0 + ((high + low) / 2.0) ** 2, name, True
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


def _as_list(value: Any, rank: int) -> list[int]:
    if isinstance(value, int):
        return [value] * rank
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return list(value)
    return [1] * rank


def _channels(shape: Any, config: dict[str, Any]) -> int | None:
    if not shape:
        return None
    axis = 1 if config.get("data_format") == "channels_first" else -1
    value = shape[axis]
    return value if isinstance(value, int) else None


@dataclass
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
    """The kernels of a weighted layer in forward order, or None if it has no kernel we model."""
    config = layer.node.config
    traits = layer.traits
    if Trait.KERNEL not in traits:
        return None
    in_shape = layer.input_shapes[0] if layer.input_shapes else None
    out_shape = layer.output_shapes[0] if layer.output_shapes else None
    c_in = _channels(in_shape, config)
    c_out = _channels(out_shape, config)
    if Trait.DENSE in traits:
        if layer.fan_in is None or layer.fan_out is None:
            return None
        variance, name, known = initializer_variance(config.get("kernel_initializer"),
                                                     layer.fan_in, layer.fan_out)
        return [KernelModel(layer.fan_in, layer.fan_out, variance, name, layer.fan_in,
                            layer.fan_out, known)]
    if c_in is None or c_out is None:
        return None
    rank = len(in_shape) - 2 if in_shape else 2
    kernel = _as_list(config.get("kernel_size", 1), rank)
    area = math.prod(kernel)
    strides = _as_list(config.get("strides", 1), rank)
    if Trait.DEPTHWISE in traits and Trait.SEPARABLE not in traits:
        multiplier = int(config.get("depth_multiplier", 1) or 1)
        fan_in, fan_out = area * c_in, area * multiplier  # as Keras computes them
        variance, name, known = initializer_variance(
            config.get("depthwise_initializer"), fan_in, fan_out)
        return [KernelModel(area, area * multiplier, variance, name, fan_in, fan_out, known)]
    if Trait.SEPARABLE in traits:
        multiplier = int(config.get("depth_multiplier", 1) or 1)
        d_in, d_out = area * c_in, area * multiplier
        dv, dname, dknown = initializer_variance(config.get("depthwise_initializer"), d_in, d_out)
        p_in, p_out = c_in * multiplier, c_out
        pv, pname, pknown = initializer_variance(config.get("pointwise_initializer"), p_in, p_out)
        return [KernelModel(area, area * multiplier, dv, dname, d_in, d_out, dknown),
                KernelModel(p_in, p_out, pv, pname, p_in, p_out, pknown)]
    groups = int(config.get("groups", 1) or 1)
    if Trait.TRANSPOSED in traits:
        fan_in, fan_out = area * c_out, area * c_in  # Keras reads the transposed kernel shape
        variance, name, known = initializer_variance(config.get("kernel_initializer"),
                                                     fan_in, fan_out)
        overlap = max(area / max(math.prod(strides), 1), 1.0)
        return [KernelModel(overlap * c_in, area * c_out, variance, name, fan_in, fan_out, known)]
    fan_in, fan_out = area * c_in // groups, area * c_out // groups
    variance, name, known = initializer_variance(config.get("kernel_initializer"), fan_in, fan_out)
    return [KernelModel(fan_in, fan_out, variance, name, fan_in, fan_out, known)]


# ---------------------------------------------------------------------------------------------
# The prediction
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stats:
    """Second-order statistics of a tensor, all log10.

    ``fluct``: variance within a channel (over samples and positions: what BatchNormalization
    divides by); ``offset``: variance of per-channel offsets (a convolution of a non-zero-mean
    input adds one constant per channel, random in sign); ``mean_sq``: square of a mean shared
    by all units (sigmoid outputs sit around 1/2, ReLU outputs above 0).
    """

    fluct: float = 0.0
    offset: float = _LOG_FLOOR
    mean_sq: float = _LOG_FLOOR
    total: float = field(init=False)
    """log10 of the second moment E[x^2]."""

    def __post_init__(self) -> None:
        if self.offset <= _LOG_FLOOR and self.mean_sq <= _LOG_FLOOR:
            self.total = self.fluct
        else:
            self.total = _log_sum((self.fluct, self.offset, self.mean_sq))


@dataclass(slots=True)
class _Forward:
    out: _Stats = field(default_factory=_Stats)
    log_pre: float | None = None  # log10 pre-activation variance (weighted layers)
    log_act_grad: float = 0.0  # log10 E[f'(z)^2] of the layer's own activation
    log_kernel_back: float = 0.0  # log10 of prod(backward_fan * Var(W)) over its kernels
    log_norm_back: float = 0.0  # log10 1/Var(input) for normalizations
    log_pass_back: float | None = None  # log10 backward gain of a nested model or a scale layer
    inputs: list[_Stats] = field(default_factory=list)
    kernels: list[KernelModel] | None = None
    treated_as_identity: bool = False

    @property
    def input_log_q(self) -> list[float]:
        return [stats.total for stats in self.inputs]

    @property
    def first_input_log_q(self) -> float:
        return self.inputs[0].total if self.inputs else 0.0


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
    top = max(kept)
    return top + math.log10(sum([10.0 ** (v - top) for v in kept]))


def _apply_activation(name: str, stats: _Stats, layer: str, notes: list[str]
                      ) -> tuple[_Stats, float]:
    """Push a tensor through activation ``name``: new statistics and log10 E[f'(z)^2].

    Channel offsets are treated as part of the spread of z; the shared mean as a shift.
    """
    spread = _log_sum((stats.fluct, stats.offset))
    mean_sq, variance, grad, known = activation_gains(name, spread, stats.mean_sq)
    if not known:
        notes.append(f"{layer}: activation {name!r} treated as linear")
    if name in ("linear", None) or not known:
        return _Stats(stats.fluct, stats.offset, stats.mean_sq), 0.0
    # The output spread keeps the input's split between within-channel and per-channel parts.
    fluct_share = min(stats.fluct - spread, 0.0)
    offset_share = 1.0 - 10.0 ** fluct_share
    offset = variance + math.log10(offset_share) if offset_share > 1e-12 else _LOG_FLOOR
    return _Stats(variance + fluct_share, offset, mean_sq), grad


def _forward(result: AnalysisResult, notes: list[str],
             model_inputs: list[_Stats] | None = None) -> dict[str, _Forward]:
    """Forward statistics per layer; ``model_inputs`` seeds the inputs of a nested model."""
    states: dict[str, _Forward] = {}
    seeded = dict(zip(result.input_layers, model_inputs or [], strict=False))
    for layer in result.layers:
        inputs = []
        for name in layer.inbound:
            known = states.get(name)
            if known is not None:
                inputs.append(known.out)
        state = _Forward(inputs=inputs)
        first = inputs[0] if inputs else _Stats()
        cls = layer.class_name
        traits = layer.traits
        merge = layer.merge
        kernels = state.kernels = kernel_models(layer) if Trait.KERNEL in traits else None
        if Trait.INPUT in traits or not inputs:
            seed = seeded.get(layer.name)
            state.out = _Stats(seed.fluct, seed.offset, seed.mean_sq) if seed else _Stats()
        elif layer.subresult is not None and layer.subresult.output_layers:
            # A model used as a layer: propagate through it, and measure its backward gain
            # as the gradient its inputs receive for a unit gradient at its output.
            inner = _forward(layer.subresult, notes, inputs)
            state.out = inner[layer.subresult.output_layers[0]].out
            inner_pre = _backward(layer.subresult, inner, fold_output=False)
            gains = [inner_pre[name] for name in layer.subresult.input_layers if name in inner_pre]
            state.log_pass_back = gains[0] if gains else 0.0
            if any(inner[name].kernels for name in inner):
                # It holds weights: listed as one weighted entry (its gradient at its output).
                state.log_pre = state.out.total
        elif Trait.SCALE in traits:  # ConvNeXt's LayerScale: a learned per-channel scale
            scale = layer.scale
            gain = 2.0 * _log10(abs(scale)) if scale is not None else 0.0
            state.out = _Stats(first.fluct + gain, first.offset + gain, first.mean_sq + gain)
            state.log_pass_back = gain
        elif kernels is not None:
            forward_gain = sum(_log10(k.forward_fan * k.variance) for k in kernels)
            state.log_kernel_back = sum(_log10(k.backward_fan * k.variance) for k in kernels)
            # A zero-mean kernel turns a shared input mean into per-channel offsets.
            shifted = _log_sum((first.offset, first.mean_sq))
            pre = _Stats(first.fluct + forward_gain,
                         shifted + forward_gain if shifted > _LOG_FLOOR else _LOG_FLOOR,
                         _LOG_FLOOR)
            state.log_pre = pre.total
            state.out, state.log_act_grad = _apply_activation(
                activation_of(layer), pre, layer.name, notes)
        elif Trait.NORMALIZATION in traits:
            state.out = _Stats()
            state.log_norm_back = -first.fluct
        elif Trait.ACTIVATION in traits:
            state.out, state.log_act_grad = _apply_activation(
                activation_of(layer), first, layer.name, notes)
        elif _rescales_input(layer):
            state.out = _Stats()
        elif merge is Merge.SUM or merge is Merge.AVERAGE:
            divisor = 2.0 * math.log10(len(inputs)) if merge is Merge.AVERAGE else 0.0
            mean = sum(10.0 ** (s.mean_sq / 2.0) for s in inputs if s.mean_sq > -290)
            state.out = _Stats(_log_sum(s.fluct for s in inputs) - divisor,
                               _log_sum(s.offset for s in inputs) - divisor,
                               (2.0 * _log10(mean) if mean > 0 else _LOG_FLOOR) - divisor)
        elif merge is Merge.PRODUCT:
            total = sum(s.total for s in inputs)
            mean_sq = sum(s.mean_sq for s in inputs)
            fluct = total + math.log10(max(1.0 - 10.0 ** min(mean_sq - total, 0.0), 1e-300))
            state.out = _Stats(fluct, _LOG_FLOOR, mean_sq)
        elif merge is Merge.SELECT or merge is Merge.CONCAT:
            state.out = _Stats(max(s.fluct for s in inputs), max(s.offset for s in inputs),
                               max(s.mean_sq for s in inputs))
        else:
            state.out = _Stats(first.fluct, first.offset, first.mean_sq)
            if layer.has_weights or layer.unsupported or layer.subresult is not None:
                state.treated_as_identity = True
                notes.append(f"{layer.name} ({cls}): treated as scale-preserving")
        states[layer.name] = state
    return states


def _backward(result: AnalysisResult, states: dict[str, _Forward], *,
              fold_output: bool = True) -> dict[str, float]:
    """log10 variance of the gradient w.r.t. each layer's pre-activation (or output), for a
    unit gradient at each model output (after the output activation when ``fold_output``)."""
    incoming: dict[str, list[float]] = {layer.name: [] for layer in result.layers}
    outputs = set(result.output_layers)
    pre: dict[str, float] = {}
    for layer in reversed(result.layers):
        state = states[layer.name]
        arriving = list(incoming.get(layer.name, []))
        if layer.name in outputs:
            arriving.append(0.0)
        log_out = _log_sum(arriving)
        # The output activation is folded into the loss.
        folded = fold_output and layer.name in outputs
        log_pre = log_out if folded else log_out + state.log_act_grad
        pre[layer.name] = log_pre
        inputs = [name for name in layer.inbound if name in states]
        if not inputs:
            continue
        merge = layer.merge
        if state.log_pass_back is not None:  # nested model or scale layer
            to_input = [log_pre + state.log_pass_back] * len(inputs)
        elif state.log_pre is not None:  # weighted layer
            to_input = [log_pre + state.log_kernel_back] * len(inputs)
        elif Trait.NORMALIZATION in layer.traits:
            to_input = [log_pre + state.log_norm_back] * len(inputs)
        elif merge is Merge.AVERAGE:
            to_input = [log_pre - 2.0 * math.log10(len(inputs))] * len(inputs)
        elif merge is Merge.PRODUCT:
            total = sum(state.input_log_q)
            to_input = [log_pre + total - q for q in state.input_log_q]
        elif merge is Merge.SELECT:
            to_input = [log_pre - math.log10(len(inputs))] * len(inputs)
        else:
            to_input = [log_pre] * len(inputs)
        for name, value in zip(inputs, to_input, strict=False):
            incoming[name].append(value)
    return pre


def _paths(result: AnalysisResult, weighted: set[str]) -> dict[str, dict[str, Any]]:
    """Per layer: fewest/most weighted layers, saturating activations and normalizations on the
    way to an output (the layer itself included), by dynamic programming over the graph."""
    successors = result.successors()
    outputs = set(result.output_layers)
    at_output = (0, 0, 0, 0, 0, 0)
    # Per layer (fewest, most weighted, fewest, most saturating, fewest, most normalizations),
    # or None when no output is reached.
    bounds: dict[str, tuple[int, int, int, int, int, int] | None] = {}
    for layer in reversed(result.layers):
        name = layer.name
        options = []
        for successor in successors.get(name, ()):
            option = bounds.get(successor)
            if option is not None:
                options.append(option)
        if name in outputs:
            options.append(at_output)
        if not options:
            bounds[name] = None
            continue
        own_weighted = 1 if name in weighted else 0
        own_saturating = 1 if (activation_of(layer) in SATURATING_ACTIVATIONS
                               and name not in outputs) else 0
        own_norm = 1 if Trait.NORMALIZATION in layer.traits else 0
        d_min, d_max, s_min, s_max, n_min, n_max = options[0]
        for o_dmin, o_dmax, o_smin, o_smax, o_nmin, o_nmax in options[1:]:
            if o_dmin < d_min:
                d_min = o_dmin
            if o_dmax > d_max:
                d_max = o_dmax
            if o_smin < s_min:
                s_min = o_smin
            if o_smax > s_max:
                s_max = o_smax
            if o_nmin < n_min:
                n_min = o_nmin
            if o_nmax > n_max:
                n_max = o_nmax
        bounds[name] = (own_weighted + d_min, own_weighted + d_max,
                        own_saturating + s_min, own_saturating + s_max,
                        own_norm + n_min, own_norm + n_max)
    info: dict[str, dict[str, Any]] = {}
    for name, found in bounds.items():
        if found is None:
            info[name] = {"depth": None, "saturating": None, "norm": None,
                          "reaches_output": False}
        else:
            info[name] = {"depth": (found[0], found[1]), "saturating": (found[2], found[3]),
                          "norm": (found[4], found[5]), "reaches_output": True}
    return info


def _bypassing_skips(result: AnalysisResult, names: Iterable[str]) -> dict[str, list[str]]:
    """For each named layer, the merge layers (Add, Concatenate, ...) downstream of it that also
    receive an input not computed from it: skip connections that bypass the layer.

    Reachability is kept as bit sets over the merges' input slots, one pass over the graph.
    """
    merges = [layer for layer in result.layers
              if layer.merge in SKIP_MERGES and len(set(layer.inbound)) > 1]
    if not merges:
        return {name: [] for name in names}
    slot_masks: dict[str, int] = {}
    own_slots: dict[str, int] = {}
    bit = 0
    for merge in merges:
        mask = 0
        for source in dict.fromkeys(merge.inbound):
            own_slots[source] = own_slots.get(source, 0) | (1 << bit)
            mask |= 1 << bit
            bit += 1
        slot_masks[merge.name] = mask
    successors = result.successors()
    reach: dict[str, int] = {}
    for layer in reversed(result.layers):
        mask = own_slots.get(layer.name, 0)
        for successor in successors.get(layer.name, []):
            mask |= reach.get(successor, 0)
        reach[layer.name] = mask
    out: dict[str, list[str]] = {}
    for name in names:
        mask = reach.get(name, 0)
        out[name] = [merge.name for merge in merges
                     if mask & slot_masks[merge.name]
                     and mask & slot_masks[merge.name] != slot_masks[merge.name]] if mask else []
    return out


def _scale(log_value: float) -> float | None:
    """10**log_value as a float, None when it does not fit (|log10| > 300)."""
    if log_value != log_value or abs(log_value) > 300:
        return None
    return 10.0 ** log_value


_last_prediction: tuple[AnalysisResult, dict[str, Any]] | None = None


def predict(result: AnalysisResult) -> dict[str, Any]:
    """Predict gradient flow at initialization and call it healthy, vanishing or exploding.

    Returns ``report.gradient_flow.predicted``: ``verdict``, ``ratio`` (first/last, see
    ``ratio_definition``), ``thresholds``, per weighted layer numbers in ``layers`` and the
    ``assumptions`` behind them. The last prediction is remembered for the same result object
    (the findings read it too); callers must not mutate the returned dict.
    """
    global _last_prediction
    cached = _last_prediction
    if cached is not None and cached[0] is result:
        return cached[1]
    prediction = _predict(result)
    _last_prediction = (result, prediction)
    return prediction


def _predict(result: AnalysisResult) -> dict[str, Any]:
    notes: list[str] = []
    states = _forward(result, notes)
    weighted_layers = [layer for layer in result.layers if states[layer.name].log_pre is not None]
    base: dict[str, Any] = {
        "method": METHOD,
        "ratio_definition": RATIO_DEFINITION,
        "thresholds": {"vanishing_below": VANISHING_RATIO, "exploding_above": EXPLODING_RATIO},
        "assumptions": ASSUMPTIONS,
    }
    if not weighted_layers:
        return {**base, "verdict": None, "status": "not_computed",
                "reason": "no weighted layer (convolution or dense) to predict gradients for",
                "layers": [], "notes": notes}
    pre = _backward(result, states)
    weighted = {layer.name for layer in weighted_layers}
    paths = _paths(result, weighted)
    skips = _bypassing_skips(result, weighted)
    reachable = [layer for layer in weighted_layers if paths[layer.name]["reaches_output"]]
    if not reachable:
        return {**base, "verdict": None, "status": "not_computed",
                "reason": "no weighted layer reaches a model output", "layers": [], "notes": notes}
    first, last = reachable[0], reachable[-1]
    log_last = pre[last.name]
    log_last_weight = pre[last.name] + states[last.name].first_input_log_q
    layers_out: list[dict[str, Any]] = []
    for layer in weighted_layers:
        state = states[layer.name]
        info = paths[layer.name]
        kernels = state.kernels or []
        log_rel = pre[layer.name] - log_last
        log_weight = pre[layer.name] + state.first_input_log_q - log_last_weight
        layers_out.append({
            "name": layer.name,
            "class_name": layer.class_name,
            "initializer": kernels[0].initializer if kernels else None,
            "weight_variance": [k.variance for k in kernels],
            "fan_in": kernels[0].keras_fan_in if kernels else None,
            "fan_out": kernels[-1].keras_fan_out if kernels else None,
            "activation": activation_of(layer),
            "activation_gain": _scale(state.log_act_grad),
            "pre_activation_variance": _scale(state.log_pre or 0.0),
            "log10_relative_gradient_scale": round(log_rel, 4),
            "relative_gradient_scale": _scale(log_rel),
            "log10_relative_weight_gradient_scale": round(log_weight / 2.0, 4),
            "depth_to_output": ({"shortest": info["depth"][0] - 1, "longest": info["depth"][1] - 1}
                                if info["reaches_output"] else None),
            "skip_connections": len(skips[layer.name]),
            "skip_layers": skips[layer.name][:8],
            "saturating_activations": ({"fewest": info["saturating"][0],
                                        "most": info["saturating"][1]}
                                       if info["reaches_output"] else None),
            "normalizations": ({"fewest": info["norm"][0], "most": info["norm"][1]}
                               if info["reaches_output"] else None),
        })
    # Variances -> RMS: halve the log.
    for entry in layers_out:
        halved = round(entry["log10_relative_gradient_scale"] / 2, 4)
        entry["log10_relative_gradient_scale"] = halved
        entry["relative_gradient_scale"] = _scale(entry["log10_relative_gradient_scale"])
    by_name = {entry["name"]: entry for entry in layers_out}
    log_ratio = by_name[first.name]["log10_relative_gradient_scale"]
    log_weight_ratio = by_name[first.name]["log10_relative_weight_gradient_scale"]
    ratio = 10.0 ** log_ratio if abs(log_ratio) < 300 else (0.0 if log_ratio < 0 else math.inf)
    verdict = classify_ratio(ratio)
    weakest = min((e for e in layers_out if e["depth_to_output"] is not None),
                  key=lambda e: e["log10_relative_gradient_scale"])
    strongest = max((e for e in layers_out if e["depth_to_output"] is not None),
                    key=lambda e: e["log10_relative_gradient_scale"])
    first_info = paths[first.name]
    reasons = []
    if verdict == "vanishing":
        reasons.append(f"the gradient reaching {first.name} is predicted {_words(log_ratio)} "
                       f"the one reaching {last.name}")
    elif verdict == "exploding":
        reasons.append(f"the gradient reaching {first.name} is predicted {_words(log_ratio)} "
                       f"the one reaching {last.name}")
    unknown_init = [layer.name for layer in weighted_layers
                    if any(not k.known for k in states[layer.name].kernels or [])]
    if unknown_init:
        notes.append("unknown initializers assumed glorot-like: " + ", ".join(unknown_init[:10]))
    return {
        **base,
        "status": "complete" if not notes else "partial",
        "verdict": verdict,
        "ratio": ratio if math.isfinite(ratio) else None,
        "log10_ratio": round(log_ratio, 4),
        "weight_gradient_ratio": _scale(log_weight_ratio),
        "log10_weight_gradient_ratio": log_weight_ratio,
        "weight_gradient_verdict": classify_ratio(_scale(log_weight_ratio)),
        "first_layer": first.name,
        "last_layer": last.name,
        "weighted_layers": len(weighted_layers),
        # the first layer's depth_to_output (weighted layers after it), and the network's
        # skip connections as every section counts them (app.analysis.skips)
        "depth": {"shortest": first_info["depth"][0] - 1, "longest": first_info["depth"][1] - 1},
        "skip_connections": find_skips(result).count,
        "saturating_activations_on_longest_path": first_info["saturating"][1],
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


def _words(log_ratio: float) -> str:
    """'1e-12 times' style wording for a log10 ratio."""
    return f"about 1e{round(log_ratio):+d} times"
