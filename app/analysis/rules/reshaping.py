"""Reshaping: Flatten, Reshape, Permute, RepeatVector, ZeroPadding, Cropping, UpSampling.

Padding and cropping move the receptive field (they are windows of size 1
with a left offset); upsampling divides the effective stride. Flatten keeps
each unit's local field but loses the spatial layout, so the Dense layer
after it sees the whole field (global).

>>> from app.analysis.rules.base import Ctx
>>> shape_zero_padding(Ctx("z", "ZeroPadding2D", {"padding": [[3, 3], [3, 3]]}, [(None, 224, 224, 3)]))
[(None, 230, 230, 3)]
"""

from __future__ import annotations

from typing import Any

from app.analysis.graph import ReceptiveField, Shape
from app.analysis.rules.base import (
    FLAT,
    GLOBAL,
    AxisOp,
    Ctx,
    apply_ops,
    channels_last,
    channels_of,
    choice,
    field_flatten,
    int_tuple,
    positive_int,
    product,
    register,
    require_rank,
    spatial_dims,
    union_fields,
    with_spatial,
)
from app.analysis.rules.periodic import repeat_reads, resample_reads
from app.analysis.traits import Trait

SPATIAL_RANK = {
    "ZeroPadding1D": 1, "ZeroPadding2D": 2, "ZeroPadding3D": 3,
    "Cropping1D": 1, "Cropping2D": 2, "Cropping3D": 3,
    "UpSampling1D": 1, "UpSampling2D": 2, "UpSampling3D": 3,
}


def shape_flatten(ctx: Ctx) -> list[Shape | None]:
    shape = ctx.shape
    if shape is None:
        return [None]
    if len(shape) < 1:
        raise ctx.fail(f"expects a batched input. Received: input_shape={list(shape)}")
    return [(shape[0], product(shape[1:]))]


def _target_shape(ctx: Ctx) -> tuple[int, ...]:
    value = ctx.config.get("target_shape")
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) and (v > 0 or v == -1) for v in value
    ) and sum(1 for v in value if v == -1) <= 1:
        return tuple(value)
    raise ctx.fail(
        f"target_shape must be a list of positive ints (at most one -1). Received: target_shape={value!r}"
    )


def shape_reshape(ctx: Ctx) -> list[Shape | None]:
    target = _target_shape(ctx)
    shape = ctx.shape
    if shape is None:
        return [None]
    total = product(shape[1:])
    if -1 in target:
        known = product([v for v in target if v != -1]) or 1
        if total is None:
            return [(shape[0], *[None if v == -1 else v for v in target])]
        if total % known:
            raise ctx.fail(
                f"cannot reshape {list(shape)} to target_shape={list(target)}"
            )
        return [(shape[0], *[total // known if v == -1 else v for v in target])]
    if total is not None and total != product(target):
        raise ctx.fail(
            f"total size of the new shape must equal the input's. Received: "
            f"input_shape={list(shape)}, target_shape={list(target)}"
        )
    return [(shape[0], *target)]


def field_reshape(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    field = union_fields(fields, ["input"])
    if field is None or field.unknown or field.axes is None:
        return field
    outputs = shape_reshape(ctx)
    shape, out = ctx.shape, outputs[0]
    if shape is not None and out is not None and len(shape) == len(out) and shape[1:-1] == out[1:-1]:
        return field
    return GLOBAL if field.is_global else FLAT


def _permutation(ctx: Ctx, rank: int) -> tuple[int, ...]:
    dims = ctx.config.get("dims")
    if (
        isinstance(dims, (list, tuple))
        and sorted(dims) == list(range(1, len(dims) + 1))
        and (rank < 0 or len(dims) == rank)
    ):
        return tuple(dims)
    raise ctx.fail(
        f"dims must be a permutation of 1..{rank if rank >= 0 else 'n'}. Received: dims={dims!r}"
    )


def shape_permute(ctx: Ctx) -> list[Shape | None]:
    shape = ctx.shape
    if shape is None:
        _permutation(ctx, -1)
        return [None]
    dims = _permutation(ctx, len(shape) - 1)
    return [(shape[0], *[shape[d] for d in dims])]


def field_permute(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    field = union_fields(fields, ["input"])
    dims = _permutation(ctx, -1)
    if field is None or field.unknown or field.axes is None:
        return field
    if dims == tuple(range(1, len(dims) + 1)):
        return field
    return GLOBAL if field.is_global else FLAT


def shape_repeat_vector(ctx: Ctx) -> list[Shape | None]:
    times = positive_int(ctx, "n")
    shape = require_rank(ctx, ctx.shape, 2)
    if shape is None:
        return [None]
    return [(shape[0], times, shape[1])]


def _pairs(ctx: Ctx, key: str, rank: int, default: Any) -> tuple[tuple[int, int], ...]:
    value = ctx.config.get(key, default)
    if value is None:
        value = default
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return ((value, value),) * rank
        if isinstance(value, (list, tuple)):
            if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
                return ((int(value[0]), int(value[1])),)
            if len(value) == rank:
                pairs: list[tuple[int, int]] = []
                for item in value:
                    if isinstance(item, int) and not isinstance(item, bool):
                        pairs.append((item, item))
                    elif isinstance(item, (list, tuple)) and len(item) == 2:
                        pairs.append((int(item[0]), int(item[1])))
                    else:
                        raise ValueError
                if all(a >= 0 and b >= 0 for a, b in pairs):
                    return tuple(pairs)
    except (TypeError, ValueError):
        pass
    raise ctx.fail(
        f"{key} must be a non-negative int, a tuple of {rank} ints or of {rank} (before, after) "
        f"pairs. Received: {key}={value!r}"
    )


def _data_format_last(ctx: Ctx) -> bool:
    if SPATIAL_RANK[ctx.class_name] == 1:
        return True
    return channels_last(ctx)


def shape_zero_padding(ctx: Ctx) -> list[Shape | None]:
    rank = SPATIAL_RANK[ctx.class_name]
    pads = _pairs(ctx, "padding", rank, 1)
    shape = require_rank(ctx, ctx.shape, rank + 2)
    if shape is None:
        return [None]
    last = _data_format_last(ctx)
    dims = [
        None if n is None else n + a + b for n, (a, b) in zip(spatial_dims(shape, last), pads, strict=True)
    ]
    return [with_spatial(shape, dims, channels_of(shape, last), last)]


def field_zero_padding(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    pads = _pairs(ctx, "padding", SPATIAL_RANK[ctx.class_name], 1)
    return apply_ops(union_fields(fields, ["input"]), [AxisOp("window", 1, 1, a) for a, _ in pads])


def shape_cropping(ctx: Ctx) -> list[Shape | None]:
    rank = SPATIAL_RANK[ctx.class_name]
    crops = _pairs(ctx, "cropping", rank, 1 if rank == 1 else 0)
    shape = require_rank(ctx, ctx.shape, rank + 2)
    if shape is None:
        return [None]
    last = _data_format_last(ctx)
    dims = []
    for n, (a, b) in zip(spatial_dims(shape, last), crops, strict=True):
        if n is not None and n - a - b <= 0:
            raise ctx.fail(
                f"cropping {[list(c) for c in crops]} leaves nothing of input_shape={list(shape)}"
            )
        dims.append(None if n is None else n - a - b)
    return [with_spatial(shape, dims, channels_of(shape, last), last)]


def field_cropping(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    rank = SPATIAL_RANK[ctx.class_name]
    crops = _pairs(ctx, "cropping", rank, 1 if rank == 1 else 0)
    return apply_ops(union_fields(fields, ["input"]), [AxisOp("window", 1, 1, -a) for a, _ in crops])


def _size(ctx: Ctx) -> tuple[int, ...]:
    rank = SPATIAL_RANK[ctx.class_name]
    key = "length" if rank == 1 and "length" in ctx.config else "size"
    return int_tuple(ctx, key, rank, 2)


def shape_upsampling(ctx: Ctx) -> list[Shape | None]:
    rank = SPATIAL_RANK[ctx.class_name]
    size = _size(ctx)
    if rank == 2:
        choice(ctx, "interpolation", ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area"), "nearest")
    shape = require_rank(ctx, ctx.shape, rank + 2)
    if shape is None:
        return [None]
    last = _data_format_last(ctx)
    dims = [None if n is None else n * u for n, u in zip(spatial_dims(shape, last), size, strict=True)]
    return [with_spatial(shape, dims, channels_of(shape, last), last)]


def field_upsampling(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    """Nearest-neighbour upsampling: output unit j reads input unit floor(j / size); the
    interpolating modes of UpSampling2D resize by ``size`` (bilinear reads two input units)."""
    interpolation = ctx.config.get("interpolation") or "nearest"
    if SPATIAL_RANK[ctx.class_name] != 2 or interpolation == "nearest":
        ops = [repeat_reads(u) for u in _size(ctx)]
    else:
        ops = [resample_reads(1, u, str(interpolation).lower()) for u in _size(ctx)]
    return apply_ops(union_fields(fields, ["input"]), ops)


_RESHAPE = (Trait.RESHAPE,)
register("Flatten", "reshaping", shape_flatten, field=field_flatten, traits=(Trait.RESHAPE, Trait.FLATTEN))
register("Reshape", "reshaping", shape_reshape, field=field_reshape, traits=_RESHAPE)
register("Permute", "reshaping", shape_permute, field=field_permute, traits=_RESHAPE)
register("RepeatVector", "reshaping", shape_repeat_vector, traits=_RESHAPE)
for _name, _rank in SPATIAL_RANK.items():
    if _name.startswith("ZeroPadding"):
        register(_name, "reshaping", shape_zero_padding, field=field_zero_padding, traits=(Trait.PADDING,))
    elif _name.startswith("Cropping"):
        register(_name, "reshaping", shape_cropping, field=field_cropping, traits=(Trait.CROPPING,))
    else:
        register(_name, "reshaping", shape_upsampling, field=field_upsampling, traits=(Trait.UPSAMPLING,))
