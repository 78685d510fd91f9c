"""Pooling: Max/Average pooling 1D/2D/3D and all global poolings.

Pooling has no weights and is counted as 0 MACs (it compares or averages,
it does not multiply-accumulate with weights). A global pooling makes every
output unit see the whole input: its receptive field is global.

>>> from app.analysis.rules.base import Ctx
>>> shape_pooling(Ctx("p", "MaxPooling2D", {"pool_size": 2}, [(None, 9, 9, 4)]))
[(None, 4, 4, 4)]
"""

from __future__ import annotations

from app.analysis.graph import ReceptiveField, Shape, Window
from app.analysis.rules.base import (
    Ctx,
    apply_ops,
    boolean,
    channels_last,
    channels_of,
    choice,
    conv_output_length,
    field_global,
    int_tuple,
    register,
    require_rank,
    spatial_dims,
    union_fields,
    with_spatial,
)
from app.analysis.rules.convolution import window_ops
from app.analysis.traits import Trait

POOLING = {}
GLOBAL_POOLING = {}
for _rank in (1, 2, 3):
    for _kind, _aliases in (("Max", ("MaxPooling", "MaxPool")), ("Average", ("AveragePooling", "AvgPool"))):
        for _alias in _aliases:
            POOLING[f"{_alias}{_rank}D"] = _rank
        for _alias in (f"Global{_kind}Pooling", "GlobalMaxPool" if _kind == "Max" else "GlobalAvgPool"):
            GLOBAL_POOLING[f"{_alias}{_rank}D"] = _rank
        GLOBAL_POOLING[f"Global{_kind}Pooling{_rank}D"] = _rank


def _geometry(ctx: Ctx) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """(pool size, strides, padding) of one call, read once (shape, field and window ask)."""
    geometry = ctx.cache.get("pooling")
    if geometry is None:
        rank = POOLING[ctx.class_name]
        pool = int_tuple(ctx, "pool_size", rank, 2)
        strides = (int_tuple(ctx, "strides", rank, pool) if ctx.config.get("strides") is not None
                   else pool)
        padding = choice(ctx, "padding", ("valid", "same"), "valid")
        geometry = ctx.cache["pooling"] = (pool, strides, padding)
    return geometry  # type: ignore[no-any-return]


def shape_pooling(ctx: Ctx) -> list[Shape | None]:
    pool, strides, padding = _geometry(ctx)
    shape = require_rank(ctx, ctx.shape, POOLING[ctx.class_name] + 2)
    if shape is None:
        return [None]
    last = channels_last(ctx)
    dims = tuple(
        conv_output_length(n, k, padding, s)
        for n, k, s in zip(spatial_dims(shape, last), pool, strides, strict=True)
    )
    if any(d is not None and d <= 0 for d in dims):
        raise ctx.fail(
            f"the input is too small for pool_size={list(pool)}. Received: input_shape={list(shape)}"
        )
    return [with_spatial(shape, dims, channels_of(shape, last), last)]


def field_pooling(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    pool, strides, padding = _geometry(ctx)
    dims = spatial_dims(ctx.shape, channels_last(ctx)) if ctx.shape is not None else None
    ops = window_ops(dims, pool, strides, (1,) * len(pool), padding)
    return apply_ops(union_fields(fields, ["input"]), ops)


def window_pooling(ctx: Ctx) -> Window:
    pool, strides, padding = _geometry(ctx)
    return Window(pool, strides, (1,) * len(pool), padding)


def shape_global_pooling(ctx: Ctx) -> list[Shape | None]:
    rank = GLOBAL_POOLING[ctx.class_name]
    keepdims = boolean(ctx, "keepdims", False)
    shape = require_rank(ctx, ctx.shape, rank + 2)
    if shape is None:
        return [None]
    last = channels_last(ctx)
    channels = channels_of(shape, last)
    if keepdims:
        return [with_spatial(shape, (1,) * rank, channels, last)]
    return [(shape[0], channels)]


def field_global_pooling(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    return field_global(ctx, fields)


def _pooling_traits(name: str, kind: Trait) -> tuple[Trait, ...]:
    return (kind, Trait.AVERAGING) if "Av" in name else (kind,)


for _name in POOLING:
    register(_name, "pooling", shape_pooling, field=field_pooling, window=window_pooling,
             traits=_pooling_traits(_name, Trait.POOLING))
for _name in GLOBAL_POOLING:
    register(_name, "pooling", shape_global_pooling, field=field_global_pooling,
             traits=_pooling_traits(_name, Trait.GLOBAL_POOLING))
