"""Preprocessing layers: Rescaling, Normalization, Resizing, CenterCrop, random augmentation.

Random augmentation layers are the identity at inference (RandomCrop crops
to its target size). Normalization's mean, variance and count are
non-trainable weights (2 x C + 1), unless the config fixes mean/variance.

>>> from app.analysis.rules.base import Ctx
>>> params_normalization(Ctx("n", "Normalization", {"axis": [3]}, [(None, 224, 224, 3)]))
(0, 7)
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from app.analysis.graph import AxisField, ReceptiveField, Shape
from app.analysis.rules.base import (
    AxisOp,
    Ctx,
    Params,
    apply_ops,
    channels_last,
    channels_of,
    positive_int,
    product,
    register,
    spatial_dims,
    union_fields,
    with_spatial,
)
from app.analysis.rules.normalization import normalized_axes, shape_identity
from app.analysis.traits import Trait

RANDOM_IDENTITY = (
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomInvert", "RandomPosterization",
    "RandomSharpness", "RandomShear", "RandomSaturation", "RandomHue", "RandomColorJitter",
    "RandomGrayscale", "RandomColorDegeneration", "RandomErasing", "RandomGaussianBlur",
    "RandomPerspective", "RandomElasticTransform", "AutoContrast", "Solarization", "Equalization",
)


def params_normalization(ctx: Ctx) -> Params:
    if ctx.config.get("mean") is not None and ctx.config.get("variance") is not None:
        return 0, 0
    axis = ctx.config.get("axis", -1)
    if axis is None or axis == []:
        return 0, 3
    axes = normalized_axes(ctx)
    if axes is None or ctx.shape is None:
        return None, None
    size = product([ctx.shape[a] for a in axes])
    return (None, None) if size is None else (0, 2 * size + 1)


def _height_width(ctx: Ctx) -> tuple[int, int]:
    return positive_int(ctx, "height"), positive_int(ctx, "width")


def _image_last(ctx: Ctx) -> bool:
    return channels_last(ctx) if "data_format" in ctx.config else True


def shape_resize(ctx: Ctx) -> list[Shape | None]:
    height, width = _height_width(ctx)
    shape = ctx.shape
    if shape is None:
        return [None]
    if len(shape) not in (3, 4):
        raise ctx.fail(f"expects images of rank 3 or 4. Received: input_shape={list(shape)}")
    last = _image_last(ctx)
    if len(shape) == 3:  # unbatched image
        return [(height, width, shape[2]) if last else (shape[0], height, width)]
    return [with_spatial(shape, (height, width), channels_of(shape, last), last)]


def field_resize(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    """Resampling by in/out per axis; a crop when CenterCrop fits inside the input."""
    field = union_fields(fields, ["input"])
    shape = ctx.shape
    if field is None or field.axes is None or shape is None or len(shape) != 4:
        return field
    height, width = _height_width(ctx)
    dims = spatial_dims(shape, _image_last(ctx))
    if ctx.class_name in ("CenterCrop", "RandomCrop") and all(
        n is not None and n >= t for n, t in zip(dims, (height, width), strict=True)
    ):
        return apply_ops(field, [AxisOp("window", 1, 1, -(((n or 0) - t) // 2))
                                 for n, t in zip(dims, (height, width), strict=True)])
    axes: list[Any] = []
    for axis, target in zip(field.axes, (height, width), strict=True):
        n = dims[len(axes)]
        if n is None:
            axes.append(AxisField(axis.size, axis.stride, None))
            continue
        factor = Fraction(n, target)
        reach = max(math.ceil(factor), 1) + (1 if ctx.config.get("interpolation", "bilinear") != "nearest" else 0)
        size = Fraction(axis.size) + (reach - 1) * Fraction(axis.stride)
        axes.append(AxisField(size, Fraction(axis.stride) * factor, axis.padding))
    return ReceptiveField(tuple(axes), is_global=field.is_global, misaligned=field.misaligned)


def field_resize_unknown(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    """A random resize at training time is the identity at inference."""
    return union_fields(fields, ["input"])


def shape_center_crop(ctx: Ctx) -> list[Shape | None]:
    return shape_resize(ctx)


def shape_random_size(ctx: Ctx) -> list[Shape | None]:
    """RandomHeight / RandomWidth: that dimension becomes unknown, as Keras reports it."""
    shape = ctx.shape
    if shape is None:
        return [None]
    axis = -3 if ctx.class_name == "RandomHeight" else -2
    if len(shape) < 3:
        raise ctx.fail(f"expects images. Received: input_shape={list(shape)}")
    dims = list(shape)
    dims[axis] = None
    return [tuple(dims)]


_PREPROCESSING = (Trait.PREPROCESSING,)
_AUGMENTATION = (Trait.PREPROCESSING, Trait.REGULARIZATION, Trait.IDENTITY)
register("Rescaling", "preprocessing", shape_identity, traits=_PREPROCESSING)
register(["RandomHeight", "RandomWidth"], "preprocessing", shape_random_size, field=field_resize_unknown,
         traits=(Trait.PREPROCESSING, Trait.REGULARIZATION, Trait.RESIZING))
register("Normalization", "preprocessing", shape_identity, params=params_normalization, traits=_PREPROCESSING)
register("Resizing", "preprocessing", shape_resize, field=field_resize,
         traits=(Trait.PREPROCESSING, Trait.RESIZING))
register("CenterCrop", "preprocessing", shape_center_crop, field=field_resize,
         traits=(Trait.PREPROCESSING, Trait.RESIZING))
register("RandomCrop", "preprocessing", shape_center_crop, field=field_resize,
         traits=(Trait.PREPROCESSING, Trait.REGULARIZATION, Trait.RESIZING))
for _name in RANDOM_IDENTITY:
    register(_name, "preprocessing", shape_identity, traits=_AUGMENTATION)
