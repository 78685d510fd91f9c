"""Preprocessing layers: Rescaling, Normalization, Resizing, CenterCrop, random augmentation.

Random augmentation layers are the identity at inference (RandomCrop crops
to its target size). Normalization's mean, variance and count are
non-trainable weights (2 x C + 1), unless the config fixes mean/variance.

>>> from app.analysis.rules.base import Ctx
>>> params_normalization(Ctx("n", "Normalization", {"axis": [3]}, [(None, 224, 224, 3)]))
(0, 7)
"""

from __future__ import annotations

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
from app.analysis.rules.periodic import resample_reads
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
    """Resampling from the input size to (height, width), as ``tf.image.resize`` samples (see
    :func:`periodic.resample_reads`), after Keras's crop or pad to the target aspect ratio; a
    plain crop when CenterCrop / RandomCrop fit inside the input."""
    field = union_fields(fields, ["input"])
    shape = ctx.shape
    if field is None or field.axes is None or shape is None or len(shape) != 4:
        return field
    height, width = _height_width(ctx)
    dims = spatial_dims(shape, _image_last(ctx))
    targets = (height, width)
    crop = ctx.class_name in ("CenterCrop", "RandomCrop")
    if crop and all(n is not None and n >= t for n, t in zip(dims, targets, strict=True)):
        return apply_ops(field, [AxisOp("window", 1, 1, -(((n or 0) - t) // 2))
                                 for n, t in zip(dims, targets, strict=True)])
    if any(n is None for n in dims):
        axes = tuple(AxisField(a.size, a.stride, None, exact=False) for a in field.axes)
        return ReceptiveField(axes, is_global=field.is_global, misaligned=field.misaligned)
    n_h, n_w = dims[0] or 1, dims[1] or 1
    interpolation = str(ctx.config.get("interpolation") or "bilinear").lower()
    antialias = ctx.config.get("antialias") is True
    if crop or ctx.config.get("crop_to_aspect_ratio") is True:
        # Keras crops the centre to the target's aspect ratio, then resizes
        box = (max(min(n_h, n_w * height // width), 1), max(min(n_w, n_h * width // height), 1))
        offsets = [-((n - b) // 2) for n, b in zip((n_h, n_w), box, strict=True)]
    elif ctx.config.get("pad_to_aspect_ratio") is True:
        box = (max(n_h, n_w * height // width), max(n_w, n_h * width // height))
        offsets = [(b - n) // 2 for n, b in zip((n_h, n_w), box, strict=True)]
    else:
        box, offsets = (n_h, n_w), [0, 0]
    moved = apply_ops(field, [AxisOp("window", 1, 1, offset) for offset in offsets])
    return apply_ops(moved, [resample_reads(b, t, interpolation, antialias)
                             for b, t in zip(box, targets, strict=True)])


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
