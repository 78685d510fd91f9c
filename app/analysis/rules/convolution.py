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

from dataclasses import dataclass
from functools import lru_cache

from app.analysis.graph import ReceptiveField, Shape, Window
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


@dataclass(slots=True, unsafe_hash=True, kw_only=True)
class _Conv(Window):
    """What one call of a convolution reads from its config and input, read and checked once
    (the shape rule runs first; params, MACs, field and fans reuse it). Its :class:`Window`
    (kernel, strides, dilation, padding, groups, depth multiplier) is the layer's window."""

    kind: str
    """"conv", "separable", "depthwise" or "transpose" (:data:`KINDS`)."""
    rank: int
    filters: int | None
    """None for a depthwise convolution (its output channels follow its input's)."""
    last: bool
    """Channels last (``data_format``)."""
    channels: int | None
    """Input channels, None when the input shape is unknown."""
    area: int
    """Taps of the kernel, ``prod(kernel)``."""


def _conv(ctx: Ctx) -> _Conv:
    """The call's :class:`_Conv`, read once per call, in the order Keras would refuse the
    values: geometry, filters, groups, depth multiplier, input rank, data format, channels."""
    conv = ctx.cache.get("conv")
    if conv is None:
        conv = ctx.cache["conv"] = _read_conv(ctx)
    return conv  # type: ignore[no-any-return]


def _read_conv(ctx: Ctx) -> _Conv:
    rank = RANKS[ctx.class_name]
    kind = KINDS.get(ctx.class_name) or _classify(ctx.class_name)
    kernel = int_tuple(ctx, "kernel_size", rank)
    # Keras refuses null strides, dilation and padding in a convolution: so does convlens.
    strides = int_tuple(ctx, "strides", rank, 1, nullable=False)
    dilation = int_tuple(ctx, "dilation_rate", rank, 1, nullable=False)
    options = ("valid", "same", "causal") if rank == 1 and kind == "conv" else ("valid", "same")
    padding = choice(ctx, "padding", options, "valid", nullable=False)
    filters = None if kind == "depthwise" else positive_int(ctx, "filters")
    groups = 1
    if kind == "conv":
        groups = positive_int(ctx, "groups", 1, nullable=False)
        if filters is not None and filters % groups:
            raise ctx.fail(f"filters must be divisible by groups. Received: filters={filters}, groups={groups}")
    multiplier = 1
    if kind in ("separable", "depthwise"):
        multiplier = positive_int(ctx, "depth_multiplier", 1)
    shape = require_rank(ctx, ctx.shape, rank + 2)
    last = channels_last(ctx)
    channels = None
    if shape is not None:
        channels = channels_of(shape, last)
        if channels is not None and channels % groups:
            raise ctx.fail(
                f"the number of input channels must be divisible by groups. "
                f"Received: groups={groups}, input_shape={list(shape)}"
            )
    return _Conv(kernel, strides, dilation, padding, groups, multiplier, kind=kind, rank=rank,
                 filters=filters, last=last, channels=channels, area=product(kernel) or 0)


def shape_convolution(ctx: Ctx) -> list[Shape | None]:
    conv = _conv(ctx)
    shape = ctx.shape
    if shape is None:
        return [None]
    kernel, strides, dilation, padding = conv.kernel, conv.strides, conv.dilation, conv.padding
    dims = spatial_dims(shape, conv.last)
    if conv.kind == "transpose":
        output_padding_raw = ctx.config.get("output_padding")
        output_padding = (
            None if output_padding_raw is None
            else int_tuple(ctx, "output_padding", conv.rank, allow_zero=True)
        )
        out_dims = tuple(
            deconv_output_length(
                n, k, padding, s, d, None if output_padding is None else output_padding[i]
            )
            for i, (n, k, s, d) in enumerate(zip(dims, kernel, strides, dilation, strict=True))
        )
    else:
        if len(dims) == 2 and len(kernel) == 2:  # the usual 2D convolution: no comprehensions
            height = conv_output_length(dims[0], kernel[0], padding, strides[0], dilation[0])
            width = conv_output_length(dims[1], kernel[1], padding, strides[1], dilation[1])
            out_dims = (height, width)
            empty = (height is not None and height <= 0) or (width is not None and width <= 0)
        else:
            out_dims = tuple([
                conv_output_length(n, k, padding, s, d)
                for n, k, s, d in zip(dims, kernel, strides, dilation, strict=True)
            ])
            empty = any([d is not None and d <= 0 for d in out_dims])
        if empty:
            raise ctx.fail(
                f"the input is too small for kernel_size={list(kernel)} with padding='{padding}'. "
                f"Received: input_shape={list(shape)}"
            )
    if conv.kind == "depthwise":
        out_channels = None if conv.channels is None else conv.channels * conv.multiplier
    else:
        out_channels = conv.filters
    return [with_spatial(shape, out_dims, out_channels, conv.last)]


def params_convolution(ctx: Ctx) -> Params:
    conv = _conv(ctx)
    channels = conv.channels
    if channels is None:
        return None, None
    use_bias = boolean(ctx, "use_bias", True)
    window, multiplier = conv.area, conv.multiplier
    if conv.kind == "depthwise":
        weights = window * channels * multiplier + (channels * multiplier if use_bias else 0)
    elif conv.kind == "separable":
        filters = conv.filters or 0
        weights = window * channels * multiplier + channels * multiplier * filters
        weights += filters if use_bias else 0
    else:
        filters = conv.filters or 0
        weights = window * (channels // conv.groups) * filters + (filters if use_bias else 0)
    return weights, 0


def macs_convolution(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    conv = _conv(ctx)
    channels = conv.channels
    out = outputs[0] if outputs else None
    if channels is None or out is None or ctx.shape is None:
        return None
    window, kind = conv.area, conv.kind
    filters = conv.filters or 0
    if kind == "transpose":
        in_positions = product(spatial_dims(ctx.shape, conv.last))
        return None if in_positions is None else in_positions * window * channels * filters
    out_positions = product(spatial_dims(out, conv.last))
    if out_positions is None:
        return None
    if kind == "depthwise":
        return out_positions * window * channels * conv.multiplier
    if kind == "separable":
        return out_positions * channels * conv.multiplier * (window + filters)
    return out_positions * window * (channels // conv.groups) * filters


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
    conv = _conv(ctx)
    kernel, strides, dilation, padding = conv.kernel, conv.strides, conv.dilation, conv.padding
    field_in = fields[0] if len(fields) == 1 else union_fields(fields, ["input"])
    dims = spatial_dims(ctx.shape, conv.last) if ctx.shape is not None else None
    if conv.kind == "transpose":
        output_padding = (
            None if ctx.config.get("output_padding") is None
            else int_tuple(ctx, "output_padding", conv.rank, allow_zero=True)
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
    conv = _conv(ctx)
    window, channels, kind = conv.area, conv.channels, conv.kind
    if kind == "depthwise" or kind == "separable":
        return (None if channels is None else window * channels), window * conv.multiplier
    filters = conv.filters or 0
    if kind == "transpose":
        return window * filters, (None if channels is None else window * channels)
    return (None if channels is None else window * channels // conv.groups), window * filters


def window_convolution(ctx: Ctx) -> Window:
    return _conv(ctx)


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
        window=window_convolution,
        traits=_traits(_name),
    )
