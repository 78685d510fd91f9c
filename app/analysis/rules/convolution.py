"""Convolutions: Conv1D/2D/3D, SeparableConv1D/2D, DepthwiseConv1D/2D, Conv1D/2D/3DTranspose.

MACs per sample (bias additions are not counted):

- convolution: output positions x prod(kernel) x (C_in / groups) x filters
- depthwise: output positions x prod(kernel) x C_in x depth_multiplier
- separable: depthwise + output positions x C_in x depth_multiplier x filters
- transposed: input positions x prod(kernel) x C_in x filters

>>> from app.analysis.rules.base import Ctx
>>> ctx = Ctx("c", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}, [(None, 32, 32, 3)])
>>> shape_convolution(ctx)
[(None, 32, 32, 8)]
>>> params_convolution(ctx), macs_convolution(ctx, shape_convolution(ctx))
((224, 0), 221184)
"""

from __future__ import annotations

from functools import lru_cache

from app.analysis.graph import ReceptiveField, Shape
from app.analysis.rules.base import (
    AxisOp,
    Ctx,
    Params,
    activation_name,
    apply_ops,
    boolean,
    channels_last,
    channels_of,
    choice,
    conv_output_length,
    deconv_output_length,
    int_tuple,
    positive_int,
    product,
    register,
    require_rank,
    same_left_padding,
    spatial_dims,
    union_fields,
    with_spatial,
)
from app.analysis.traits import Trait

RANKS = {
    "Conv1D": 1, "Conv2D": 2, "Conv3D": 3,
    "SeparableConv1D": 1, "SeparableConv2D": 2,
    "DepthwiseConv1D": 1, "DepthwiseConv2D": 2,
    "Conv1DTranspose": 1, "Conv2DTranspose": 2, "Conv3DTranspose": 3,
    # Keras 2 aliases
    "Convolution1D": 1, "Convolution2D": 2, "Convolution3D": 3,
    "SeparableConvolution1D": 1, "SeparableConvolution2D": 2,
    "Convolution2DTranspose": 2, "Convolution3DTranspose": 3,
}


def _rank(ctx: Ctx) -> int:
    return RANKS[ctx.class_name]


def _classify(name: str) -> str:
    if "Transpose" in name or "Deconvolution" in name:
        return "transpose"
    if name.startswith("Separable"):
        return "separable"
    if name.startswith("Depthwise"):
        return "depthwise"
    return "conv"


KINDS = {name: _classify(name) for name in RANKS}
"""Class name -> "conv", "separable", "depthwise" or "transpose"."""


def _kind(ctx: Ctx) -> str:
    kind = KINDS.get(ctx.class_name)
    return kind if kind is not None else _classify(ctx.class_name)


def _positive(ctx: Ctx, key: str, default: int | None = None) -> int:
    """``positive_int(ctx, key, default)``, read once per call of the layer."""
    cache = ctx.cache
    value = cache.get(key)
    if value is None:
        value = cache[key] = positive_int(ctx, key, default)
    return value  # type: ignore[no-any-return]


def _geometry(ctx: Ctx) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str]:
    cached = ctx.cache.get("geometry")
    if cached is None:
        cached = ctx.cache["geometry"] = _read_geometry(ctx)
    return cached  # type: ignore[no-any-return]


def _read_geometry(ctx: Ctx) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str]:
    rank = _rank(ctx)
    kernel = int_tuple(ctx, "kernel_size", rank)
    # Keras refuses null strides, dilation and padding in a convolution: so does convlens.
    strides = int_tuple(ctx, "strides", rank, 1, nullable=False)
    dilation = int_tuple(ctx, "dilation_rate", rank, 1, nullable=False)
    options = ("valid", "same", "causal") if rank == 1 and _kind(ctx) == "conv" else ("valid", "same")
    padding = choice(ctx, "padding", options, "valid", nullable=False)
    return kernel, strides, dilation, padding


def _filters(ctx: Ctx) -> int | None:
    if _kind(ctx) == "depthwise":
        return None
    return _positive(ctx, "filters")


def _groups(ctx: Ctx) -> int:
    groups = ctx.cache.get("groups")
    if groups is None:
        groups = ctx.cache["groups"] = positive_int(ctx, "groups", 1, nullable=False) if _kind(ctx) == "conv" else 1
    return groups  # type: ignore[no-any-return]


def _input_channels(ctx: Ctx) -> int | None:
    cache = ctx.cache
    if "input_channels" in cache:
        return cache["input_channels"]  # type: ignore[no-any-return]
    shape = ctx.shape
    if shape is None:
        return None
    channels = channels_of(shape, channels_last(ctx))
    groups = _groups(ctx)
    if channels is not None and channels % groups:
        raise ctx.fail(
            f"the number of input channels must be divisible by groups. "
            f"Received: groups={groups}, input_shape={list(shape)}"
        )
    cache["input_channels"] = channels
    return channels


def shape_convolution(ctx: Ctx) -> list[Shape | None]:
    kernel, strides, dilation, padding = _geometry(ctx)
    kind = _kind(ctx)
    filters = _filters(ctx)
    if kind == "conv":
        groups = _groups(ctx)
        if filters is not None and filters % groups:
            raise ctx.fail(f"filters must be divisible by groups. Received: filters={filters}, groups={groups}")
    if kind in ("separable", "depthwise"):
        multiplier = _positive(ctx, "depth_multiplier", 1)
    shape = require_rank(ctx, ctx.shape, _rank(ctx) + 2)
    if shape is None:
        return [None]
    last = channels_last(ctx)
    channels = _input_channels(ctx)
    dims = spatial_dims(shape, last)
    if kind == "transpose":
        output_padding_raw = ctx.config.get("output_padding")
        output_padding = (
            None if output_padding_raw is None
            else int_tuple(ctx, "output_padding", _rank(ctx), allow_zero=True)
        )
        out_dims = tuple(
            deconv_output_length(
                n, k, padding, s, d, None if output_padding is None else output_padding[i]
            )
            for i, (n, k, s, d) in enumerate(zip(dims, kernel, strides, dilation, strict=True))
        )
    else:
        out_dims = tuple([
            conv_output_length(n, k, padding, s, d)
            for n, k, s, d in zip(dims, kernel, strides, dilation, strict=True)
        ])
        if any([d is not None and d <= 0 for d in out_dims]):
            raise ctx.fail(
                f"the input is too small for kernel_size={list(kernel)} with padding='{padding}'. "
                f"Received: input_shape={list(shape)}"
            )
    if kind == "depthwise":
        out_channels = None if channels is None else channels * multiplier
    else:
        out_channels = filters
    return [with_spatial(shape, out_dims, out_channels, last)]


def params_convolution(ctx: Ctx) -> Params:
    kernel, _, _, _ = _geometry(ctx)
    channels = _input_channels(ctx)
    if channels is None:
        return None, None
    kind = _kind(ctx)
    use_bias = boolean(ctx, "use_bias", True)
    window = product(kernel) or 0
    if kind == "depthwise":
        multiplier = _positive(ctx, "depth_multiplier", 1)
        weights = window * channels * multiplier + (channels * multiplier if use_bias else 0)
    elif kind == "separable":
        multiplier = _positive(ctx, "depth_multiplier", 1)
        filters = _positive(ctx, "filters")
        weights = window * channels * multiplier + channels * multiplier * filters
        weights += filters if use_bias else 0
    else:
        filters = _positive(ctx, "filters")
        weights = window * (channels // _groups(ctx)) * filters + (filters if use_bias else 0)
    return weights, 0


def macs_convolution(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    kernel, _, _, _ = _geometry(ctx)
    channels = _input_channels(ctx)
    out = outputs[0] if outputs else None
    if channels is None or out is None or ctx.shape is None:
        return None
    last = channels_last(ctx)
    window = product(kernel) or 0
    kind = _kind(ctx)
    out_positions = product(spatial_dims(out, last))
    if kind == "transpose":
        in_positions = product(spatial_dims(ctx.shape, last))
        filters = _positive(ctx, "filters")
        return None if in_positions is None else in_positions * window * channels * filters
    if out_positions is None:
        return None
    if kind == "depthwise":
        return out_positions * window * channels * _positive(ctx, "depth_multiplier", 1)
    if kind == "separable":
        multiplier = _positive(ctx, "depth_multiplier", 1)
        filters = _positive(ctx, "filters")
        return out_positions * channels * multiplier * (window + filters)
    filters = _positive(ctx, "filters")
    return out_positions * window * (channels // _groups(ctx)) * filters


@lru_cache(maxsize=1024)
def window_ops(
    dims: tuple[int | None, ...] | None,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: str,
) -> tuple[AxisOp, ...]:
    """Per-axis sliding windows of a convolution or pooling, with Keras's left padding.

    Pure in its (hashable) arguments, so it is cached: a network repeats a few geometries.

    >>> window_ops((224, 224), (3, 3), (2, 2), (1, 1), "same")[0]
    AxisOp(kind='window', kernel=3, stride=2, pad=0, dilation=1)
    """
    ops: list[AxisOp] = []
    for axis, (k, s, d) in enumerate(zip(kernel, strides, dilation, strict=True)):
        effective = (k - 1) * d + 1
        n = dims[axis] if dims is not None else None
        if padding == "valid":
            pad: int | None = 0
        elif padding == "causal":
            pad = effective - 1
        else:
            pad = same_left_padding(n, k, s, d)
        ops.append(AxisOp("window", effective, s, pad, d))
    return tuple(ops)


def field_convolution(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    kernel, strides, dilation, padding = _geometry(ctx)
    field_in = union_fields(fields, ["input"])
    last = channels_last(ctx)
    dims = spatial_dims(ctx.shape, last) if ctx.shape is not None else None
    if _kind(ctx) == "transpose":
        output_padding = (
            None if ctx.config.get("output_padding") is None
            else int_tuple(ctx, "output_padding", _rank(ctx), allow_zero=True)
        )
        ops = []
        for axis, (k, s, d) in enumerate(zip(kernel, strides, dilation, strict=True)):
            effective = (k - 1) * d + 1
            if padding == "valid":
                crop: int | None = 0
            else:
                n = dims[axis] if dims is not None else None
                extra = None if output_padding is None else output_padding[axis]
                out = None if n is None else deconv_output_length(n, k, padding, s, d, extra)
                # TensorFlow computes the transposed convolution as the gradient of the forward
                # 'same' convolution from `out` (output_padding included) back to `n`: input
                # unit i adds into outputs i * s - left + t * d, left that convolution's padding
                crop = None if out is None else same_left_padding(out, k, s, d)
            ops.append(AxisOp("transpose", effective, s, crop, d))
        return apply_ops(field_in, ops)
    return apply_ops(field_in, window_ops(dims, kernel, strides, dilation, padding))


def activation_convolution(ctx: Ctx) -> str | None:
    return activation_name(ctx.config.get("activation"))


def fans_convolution(ctx: Ctx) -> tuple[int | None, int | None]:
    kernel, _, _, _ = _geometry(ctx)
    window = product(kernel) or 0
    channels = _input_channels(ctx)
    kind = _kind(ctx)
    if kind == "depthwise" or kind == "separable":
        multiplier = _positive(ctx, "depth_multiplier", 1)
        return (None if channels is None else window * channels), window * multiplier
    filters = _positive(ctx, "filters")
    if kind == "transpose":
        return window * filters, (None if channels is None else window * channels)
    return (None if channels is None else window * channels // _groups(ctx)), window * filters


def _traits(name: str) -> tuple[Trait, ...]:
    if "Transpose" in name:
        return (Trait.KERNEL, Trait.SPATIAL_KERNEL, Trait.TRANSPOSED, Trait.UPSAMPLING)
    if name.startswith("Separable"):
        return (Trait.KERNEL, Trait.SPATIAL_KERNEL, Trait.DEPTHWISE, Trait.SEPARABLE)
    if name.startswith("Depthwise"):
        return (Trait.KERNEL, Trait.SPATIAL_KERNEL, Trait.DEPTHWISE)
    return (Trait.KERNEL, Trait.SPATIAL_KERNEL)


def _initializer_key(name: str) -> str:
    if name.startswith("Depthwise"):
        return "depthwise_initializer"
    if name.startswith("Separable"):
        return "depthwise_initializer"
    return "kernel_initializer"


for _name in RANKS:
    register(
        _name,
        "convolution",
        shape_convolution,
        params=params_convolution,
        macs=macs_convolution,
        field=field_convolution,
        activation=activation_convolution,
        initializer_key=_initializer_key(_name),
        fans=fans_convolution,
        traits=_traits(_name),
    )
