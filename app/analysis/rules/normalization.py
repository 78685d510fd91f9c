"""Normalization: BatchNormalization, LayerNormalization, GroupNormalization, UnitNormalization,
RMSNormalization.

Parameters follow Keras's trainable split: BatchNormalization's gamma/beta
are trainable, its moving mean and variance are not (4 x C in all).

>>> from app.analysis.rules.base import Ctx
>>> params_batch_normalization(Ctx("bn", "BatchNormalization", {}, [(None, 8, 8, 16)]))
(32, 32)
"""

from __future__ import annotations

from app.analysis.graph import Shape
from app.analysis.rules.base import Ctx, Params, boolean, positive_int, product, register
from app.analysis.traits import Trait


def shape_identity(ctx: Ctx) -> list[Shape | None]:
    """The output has the input's shape."""
    return [ctx.shape]


def normalized_axes(ctx: Ctx, default: int | list[int] = -1) -> list[int] | None:
    """The config's ``axis`` as non-negative positions in the input shape (None: rank unknown)."""
    axis = ctx.config.get("axis", default)
    if axis is None:
        axis = default
    shape = ctx.shape
    if type(axis) is int and shape is not None:  # the usual single axis (no bool): no loops
        rank = len(shape)
        if -rank <= axis < rank and axis % rank != 0:
            return [axis % rank]
    axes = [axis] if isinstance(axis, int) and not isinstance(axis, bool) else axis
    if not isinstance(axes, (list, tuple)) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in axes
    ):
        raise ctx.fail(f"axis must be an int or a list of ints. Received: axis={axis!r}")
    if shape is None:
        return None
    rank = len(shape)
    out = []
    for a in axes:
        if not -rank <= a < rank or a % rank == 0:
            raise ctx.fail(f"axis {a} is out of range for input_shape={list(shape)}")
        out.append(a % rank)
    return out


def _axis_size(ctx: Ctx, default: int | list[int] = -1) -> int | None:
    axes = normalized_axes(ctx, default)
    if axes is None or ctx.shape is None:
        return None
    if len(axes) == 1:  # product() of one size, without the list
        return ctx.shape[axes[0]]
    return product([ctx.shape[a] for a in axes])


def params_batch_normalization(ctx: Ctx) -> Params:
    size = _axis_size(ctx)
    if size is None:
        return None, None
    learned = int(boolean(ctx, "center", True)) + int(boolean(ctx, "scale", True))
    return learned * size, 2 * size


def params_layer_normalization(ctx: Ctx) -> Params:
    size = _axis_size(ctx)
    if size is None:
        return None, None
    if ctx.config.get("rms_scaling"):
        return size, 0
    learned = int(boolean(ctx, "center", True)) + int(boolean(ctx, "scale", True))
    return learned * size, 0


def params_group_normalization(ctx: Ctx) -> Params:
    groups = positive_int(ctx, "groups", 32)
    size = _axis_size(ctx)
    if size is None:
        return None, None
    if size % groups:
        raise ctx.fail(
            f"the number of channels ({size}) must be a multiple of groups. Received: groups={groups}"
        )
    learned = int(boolean(ctx, "center", True)) + int(boolean(ctx, "scale", True))
    return learned * size, 0


def params_rms_normalization(ctx: Ctx) -> Params:
    """One learned scale per position of the normalized axes (no offset, no statistics)."""
    size = _axis_size(ctx)
    return (None, None) if size is None else (size, 0)


def shape_unit_normalization(ctx: Ctx) -> list[Shape | None]:
    normalized_axes(ctx)
    return [ctx.shape]


_NORMALIZATION = (Trait.NORMALIZATION,)
register("BatchNormalization", "normalization", shape_identity, traits=_NORMALIZATION,
         params=params_batch_normalization)
register("LayerNormalization", "normalization", shape_identity, traits=_NORMALIZATION,
         params=params_layer_normalization)
register("GroupNormalization", "normalization", shape_identity, traits=_NORMALIZATION,
         params=params_group_normalization)
register("UnitNormalization", "normalization", shape_unit_normalization, traits=_NORMALIZATION)
register("RMSNormalization", "normalization", shape_identity, traits=_NORMALIZATION,
         params=params_rms_normalization)
