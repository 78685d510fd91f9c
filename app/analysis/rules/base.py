"""The per-layer rule table and the small pure helpers the rule families share.

A :class:`Rule` is registered per Keras ``class_name`` and bundles pure
functions over shape tuples (``None`` = unknown), in the spirit of Keras's
``compute_conv_output_shape``:

- ``shape(ctx) -> list[Shape | None]``: output shapes of one call;
- ``params(ctx) -> (trainable, non_trainable)``: weight counts (None unknown);
- ``macs(ctx, outputs) -> int | None``: multiply-accumulates of one call;
- ``field(ctx, in_fields) -> ReceptiveField | None``: the output's receptive field;
- ``activation(ctx) -> str | None``;
- ``window(ctx) -> Window`` (sliding-window layers only): kernel, strides, dilation, padding.

Example::

    >>> from app.analysis.rules import lookup
    >>> rule = lookup("Conv2D", None)
    >>> rule.family
    'convolution'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from app.analysis.graph import AxisField, ReceptiveField, Shape, Window
from app.analysis.rules import periodic
from app.analysis.rules.periodic import Reads
from app.analysis.traits import Merge, Trait
from app.errors import InvalidArchitecture

Params = tuple[int | None, int | None]


@dataclass(slots=True)
class Ctx:
    """What a rule sees of one layer call.

    ``input_shapes`` are the shapes of the tensors the call consumes (batch
    included), ``constants`` the non-tensor call arguments,
    ``tensor_kwargs`` which input was passed under which keyword.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    input_shapes: list[Shape | None]
    constants: dict[str, Any] = field(default_factory=dict)
    tensor_kwargs: dict[str, int] = field(default_factory=dict)
    fmt: str = "keras3"
    input_names: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.class_name} '{self.name}'"

    @property
    def shape(self) -> Shape | None:
        """The first input's shape."""
        return self.input_shapes[0] if self.input_shapes else None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.config.get(key, default)
        return default if value is None and default is not None else value

    def fail(self, message: str) -> InvalidArchitecture:
        return InvalidArchitecture(f"{self.where}: {message}")


ShapeFn = Callable[[Ctx], list[Shape | None]]
ParamsFn = Callable[[Ctx], Params]
MacsFn = Callable[[Ctx, list[Shape | None]], int | None]
FieldFn = Callable[[Ctx, list[ReceptiveField | None]], ReceptiveField | None]
ActivationFn = Callable[[Ctx], str | None]


def no_params(ctx: Ctx) -> Params:
    return 0, 0


def no_macs(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    return 0


def field_identity(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    """Element-wise layers: the output unit sees what the input unit sees (union for merges)."""
    if len(fields) == 1:
        return fields[0]
    return union_fields([f for f in fields], [str(i) for i in range(len(fields))])


def no_activation(ctx: Ctx) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Rule:
    """How convlens reads one Keras layer class. See the module docstring."""

    class_name: str
    family: str
    shape: ShapeFn
    params: ParamsFn = no_params
    macs: MacsFn = no_macs
    field: FieldFn = field_identity
    activation: ActivationFn = no_activation
    initializer_key: str | None = None
    fans: Callable[[Ctx], tuple[int | None, int | None]] | None = None
    traits: frozenset[Trait] = frozenset()
    merge: Merge | None = None
    merge_of: Callable[[dict[str, Any]], Merge | None] | None = None
    scale_of: Callable[[dict[str, Any]], float | None] | None = None
    """For SCALE layers: the constant factor the layer multiplies by at initialization."""
    window: Callable[[Ctx], Window] | None = None
    """For sliding-window layers (convolutions, poolings): the window the rule read, kept on
    the layer's result for the gradient-flow prediction and the findings."""

    def merge_mode(self, config: dict[str, Any]) -> Merge | None:
        """How this layer combines tensors (None: it does not), from its config where the
        class alone does not say (a tf.keras ``TFOpLambda`` names its function there)."""
        if self.merge_of is not None:
            return self.merge_of(config)
        return self.merge


REGISTRY: dict[str, Rule] = {}


def register(
    class_names: str | Sequence[str],
    family: str,
    shape: ShapeFn,
    *,
    traits: Sequence[Trait],
    **kwargs: Any,
) -> None:
    """Register one rule under one or several Keras class names.

    ``traits`` say what the class is (at least one; see :mod:`app.analysis.traits`); merging
    layers also give ``merge`` (or ``merge_of``, read from the config).
    """
    if not traits:
        raise ValueError(f"{class_names!r}: a rule declares at least one trait")
    names = [class_names] if isinstance(class_names, str) else list(class_names)
    trait_set = frozenset(traits)
    if (Trait.MERGE in trait_set) != ("merge" in kwargs or "merge_of" in kwargs):
        raise ValueError(f"{class_names!r}: a MERGE rule (and only one) declares its merge mode")
    for name in names:
        REGISTRY[name] = Rule(class_name=name, family=family, shape=shape, traits=trait_set, **kwargs)


# -- config readers ----------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def int_tuple(
    ctx: Ctx, key: str, rank: int, default: Any = None, *, allow_zero: bool = False, nullable: bool = True
) -> tuple[int, ...]:
    """A config value as a tuple of ``rank`` positive ints (an int is repeated). An explicit
    null means ``default`` unless ``nullable`` is false (Keras refuses ``strides=None`` in a
    convolution, where a pooling layer reads it as "the pool size").

    >>> int_tuple(Ctx("c", "Conv2D", {"kernel_size": 3}, []), "kernel_size", 2)
    (3, 3)
    >>> int_tuple(Ctx("c", "Conv2D", {"strides": None}, []), "strides", 2, 1, nullable=False)
    Traceback (most recent call last):
    ...
    app.errors.InvalidArchitecture: Conv2D 'c': strides must be a positive int or tuple of 2. Received: strides=None
    """
    value = ctx.config.get(key, default)
    if value is None and nullable:
        value = default
    minimum = 0 if allow_zero else 1
    if type(value) is int and value >= minimum:  # a plain int (a default such as strides=1)
        return (value,) * rank
    if type(value) is list and len(value) == rank:  # the usual case: a list of plain ints
        for item in value:
            if type(item) is not int or item < minimum:
                break
        else:
            return tuple(value)
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value).is_integer():
            value = (int(value),) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank:
        items = []
        for item in value:
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, int) or item < (0 if allow_zero else 1):
                break
            items.append(item)
        else:
            return tuple(items)
    what = "non-negative" if allow_zero else "positive"
    raise ctx.fail(
        f"{key} must be a {what} int or tuple of {rank}. Received: {key}={_short(ctx.config.get(key))}"
    )


def positive_int(
    ctx: Ctx, key: str, default: Any = None, *, allow_zero: bool = False, nullable: bool = True
) -> int:
    value = ctx.config.get(key, default)
    if value is None and nullable:
        value = default
    if type(value) is int and value >= (0 if allow_zero else 1):  # the usual case, no bool
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ctx.fail(f"{key} must be a positive int. Received: {key}={_short(ctx.config.get(key))}")
    return value


def choice(ctx: Ctx, key: str, options: Sequence[str], default: str, *, nullable: bool = True) -> str:
    value = ctx.config.get(key, default)
    if value is None and nullable:
        value = default
    if isinstance(value, str) and value.lower() in options:
        return value.lower()
    raise ctx.fail(f"{key} must be one of {list(options)}. Received: {key}={_short(value)}")


def channels_last(ctx: Ctx) -> bool:
    """True unless ``data_format`` is "channels_first" (read once per call of the layer)."""
    cache = ctx.cache
    last = cache.get("channels_last")
    if last is None:
        value = ctx.config.get("data_format")
        if value is None or value == "channels_last":  # the usual value: what choice() returns
            last = cache["channels_last"] = True
        else:
            last = cache["channels_last"] = (
                choice(ctx, "data_format", ("channels_last", "channels_first"), "channels_last")
                == "channels_last"
            )
    return last  # type: ignore[no-any-return]


def boolean(ctx: Ctx, key: str, default: bool) -> bool:
    """A flag: ``default`` when absent; an explicit null is false, as in Keras, which tests
    these flags for truth (``use_bias=None`` builds a layer without a bias).

    >>> boolean(Ctx("c", "Conv2D", {"use_bias": None}, []), "use_bias", True)
    False
    """
    value = ctx.config.get(key, default)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ctx.fail(f"{key} must be true or false. Received: {key}={_short(value)}")
    return value


def activation_name(value: Any) -> str:
    """The name of an activation as written in a config (string or serialized object).

    >>> activation_name({"class_name": "function", "config": "relu"})
    'relu'
    """
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value.split(">")[-1].split(".")[-1].lower()
    if isinstance(value, dict):
        config = value.get("config")
        if isinstance(config, str):
            return config.lower()
        if isinstance(config, dict) and isinstance(config.get("name"), str):
            return config["name"].lower()
        class_name = value.get("class_name")
        if isinstance(class_name, str):
            return class_name.lower()
    return "unknown"


def initializer_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        name = value.get("class_name")
        if isinstance(name, str):
            config = value.get("config")
            if name == "VarianceScaling" and isinstance(config, dict):
                return (
                    f"VarianceScaling(scale={config.get('scale')}, mode={config.get('mode')}, "
                    f"distribution={config.get('distribution')})"
                )
            return name
    return None


# -- shape helpers -----------------------------------------------------------------------


def require_rank(ctx: Ctx, shape: Shape | None, ranks: Sequence[int] | int) -> Shape | None:
    """Check the input rank; None shapes pass (unknown)."""
    if shape is None:
        return None
    allowed = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(shape) not in allowed:
        raise ctx.fail(
            f"expects an input of rank {' or '.join(map(str, allowed))} (batch included). "
            f"Received: input_shape={list(shape)}"
        )
    return shape


def conv_output_length(
    length: int | None, kernel: int, padding: str, stride: int, dilation: int = 1
) -> int | None:
    """Keras's output length of a convolution or pooling along one axis.

    >>> conv_output_length(224, 3, "same", 2)
    112
    >>> conv_output_length(224, 7, "valid", 2)
    109
    """
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding in ("same", "causal"):
        out = (length + stride - 1) // stride
    else:
        out = (length - effective) // stride + 1
    # max(out, 0) written out (CPython 3.11's max() parses its arguments as keywords: about
    # 1,500 instructions a call more than the comparison, for every axis of every window)
    return (0 if 0 > out else out) if length >= 0 else None


def deconv_output_length(
    length: int | None,
    kernel: int,
    padding: str,
    stride: int,
    dilation: int = 1,
    output_padding: int | None = None,
) -> int | None:
    """Keras's output length of a transposed convolution along one axis."""
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if output_padding is None:
        if padding == "valid":
            return length * stride + max(effective - stride, 0)
        return length * stride
    pad = 0 if padding == "valid" else effective // 2
    return (length - 1) * stride + effective - 2 * pad + output_padding


def same_left_padding(length: int | None, kernel: int, stride: int, dilation: int = 1) -> int | None:
    """Left padding TF/Keras inserts for 'same': floor(total / 2).

    >>> same_left_padding(224, 3, 2)
    0
    >>> same_left_padding(224, 3, 1)
    1
    """
    effective = (kernel - 1) * dilation + 1
    if stride == 1:
        return (effective - 1) // 2
    if length is None:
        return None
    out = (length + stride - 1) // stride
    total = max((out - 1) * stride + effective - length, 0)
    return total // 2


def spatial_dims(shape: Shape, last: bool) -> tuple[int | None, ...]:
    return tuple(shape[1:-1]) if last else tuple(shape[2:])


def channels_of(shape: Shape, last: bool) -> int | None:
    return shape[-1] if last else shape[1]


def with_spatial(shape: Shape, spatial: Sequence[int | None], channels: int | None, last: bool) -> Shape:
    if last:
        return (shape[0], *spatial, channels)
    return (shape[0], channels, *spatial)


def product(values: Sequence[int | None]) -> int | None:
    total = 1
    for value in values:
        if value is None:
            return None
        total *= value
    return total


def elements(shape: Shape | None) -> int | None:
    """Elements per sample (batch dimension excluded)."""
    if shape is None:
        return None
    return product(shape[1:])


# -- receptive-field helpers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AxisOp:
    """One spatial axis of a layer seen as a sliding window.

    ``kind`` "window" (convolution, pooling, padding, cropping: kernel,
    stride, left padding) or "transpose" (transposed convolution: kernel,
    stride, left crop). ``kernel`` is the dilated extent, ``dilation`` the step
    between taps. ``pad`` None: unknown.
    """

    kind: str
    kernel: int
    stride: int
    pad: int | None
    dilation: int = 1

    def reads(self) -> Reads:
        """The input units each output unit reads (an unknown ``pad`` taken as 0)."""
        pad = self.pad or 0
        if self.kind == "window":
            return periodic.window_reads(self.kernel, self.stride, pad, self.dilation)
        return periodic.transpose_reads(self.kernel, self.stride, pad, self.dilation)


def apply_axis(field_in: AxisField, op: AxisOp | Reads) -> AxisField:
    """Compose an input field with one layer's window along one axis.

    Fields whose units all agree go through the recurrences of Araujo et al.; after
    upsampling, :func:`periodic.compose` follows each unit of one period.

    >>> apply_axis(AxisField(1, 1, 0), AxisOp("window", 3, 2, 1))
    AxisField(size=3, stride=2, padding=1)
    >>> apply_axis(AxisField(1, 1, 0), AxisOp("transpose", 3, 2, 1))
    AxisField(size=2, stride=Fraction(1, 2), padding=Fraction(1, 2), period=2, phases=((0, 0), (0, 1)))
    """
    if isinstance(op, Reads):
        return periodic.compose(field_in, op)
    size, stride, padding = field_in.size, field_in.stride, field_in.padding
    if op.kind != "window" or field_in.phases:
        return periodic.compose(field_in, op.reads(), known=op.pad is not None)
    if type(size) is int and type(stride) is int and (
        padding is None or type(padding) is int
    ):  # the common, all-integer case without Fraction overhead
        return AxisField(
            size + (op.kernel - 1) * stride,
            stride * op.stride,
            None if padding is None or op.pad is None else padding + op.pad * stride,
        )
    size, stride = Fraction(size), Fraction(stride)
    new_size = size + (op.kernel - 1) * stride
    new_stride = stride * op.stride
    new_padding = None if padding is None or op.pad is None else Fraction(padding) + op.pad * stride
    return AxisField(
        _norm(new_size), _norm(new_stride), None if new_padding is None else _norm(new_padding),
        exact=field_in.exact,
    )


def _norm(value: Fraction | int) -> Fraction | int:
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def apply_ops(field_in: ReceptiveField | None, ops: Sequence[AxisOp | Reads]) -> ReceptiveField | None:
    """Apply per-axis windows to a field's spatial axes; fields without axes pass through.

    A global field keeps its flag: its axes are those of its local paths.
    """
    if field_in is None or field_in.unknown or field_in.axes is None:
        return field_in
    axes = field_in.axes
    if len(axes) != len(ops):
        return GLOBAL
    new_axes: tuple[AxisField, ...]
    if len(axes) == 2:  # the usual 2D field: no comprehension (a call of its own)
        new_axes = (apply_axis(axes[0], ops[0]), apply_axis(axes[1], ops[1]))
    else:
        new_axes = tuple([apply_axis(a, op) for a, op in zip(axes, ops, strict=True)])
    return ReceptiveField(new_axes, field_in.is_global, field_in.misaligned)


FLAT = ReceptiveField(None, is_global=False)
"""Marker: a tensor whose units come from local fields but lost their spatial layout
(after Flatten); a layer mixing all its units (Dense) then makes the field global."""
GLOBAL = ReceptiveField(None, is_global=True)
UNKNOWN = ReceptiveField(None, unknown=True)


class UnsupportedVariant(Exception):
    """Raised by a rule that recognises its class but not this variant (e.g. an
    unknown TFOpLambda function); the engine then treats the layer as unsupported."""


def union_fields(fields: Sequence[ReceptiveField | None], labels: Sequence[str]) -> ReceptiveField | None:
    """The field of a unit fed by several paths: the union of their fields.

    A global path (a squeeze-and-excitation gate, a broadcast vector) makes
    the result global; its ``axes`` then keep the union of the local paths.
    Local paths whose centres differ are reported as misaligned (by label).

    >>> a = ReceptiveField((AxisField(3, 1, 1),))
    >>> b = ReceptiveField((AxisField(5, 1, 2),))
    >>> union_fields([a, b], ["a", "b"]).axes
    (AxisField(size=5, stride=1, padding=2),)
    """
    if len(fields) == 1:
        return fields[0]
    if len(fields) == 2 and len(labels) >= 2:
        # The common merge (a residual Add of two local paths, all-integer fields): the steps
        # below, without building the lists of (field, label) pairs. Any other case (None,
        # unknown, global or flat paths, ranks that differ, fractions) takes the general way.
        a, b = fields
        if (a is not None and b is not None and not a.unknown and not b.unknown
                and not a.is_global and not b.is_global and a.axes is not None
                and b.axes is not None and len(a.axes) == len(b.axes)
                and _integral(a.axes) and _integral(b.axes)):
            axes, differing = _union_integral([a.axes, b.axes], len(a.axes))
            pair_misaligned = a.misaligned + b.misaligned
            if 1 in differing:
                pair_misaligned += (f"{labels[0]}|{labels[1]}",)
            return ReceptiveField(axes, False, tuple(dict.fromkeys(pair_misaligned))
                                  if pair_misaligned else ())
    present = [(f, label) for f, label in zip(fields, labels, strict=False) if f is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0][0]
    if any(f.unknown for f, _ in present):
        return UNKNOWN
    is_global = any(f.is_global for f, _ in present)
    spatial = [(f, label) for f, label in present if f.axes is not None]
    if not spatial:
        return GLOBAL if is_global else FLAT
    if len(spatial) < len(present):
        is_global = True  # a vector broadcast over every position sees everything
    rank = len(spatial[0][0].axes or ())
    if any(len(f.axes or ()) != rank for f, _ in spatial):
        return GLOBAL
    if len(spatial) == 1:
        only = spatial[0][0]
        return ReceptiveField(only.axes, is_global=is_global, misaligned=only.misaligned)
    misaligned: list[str] = []
    for f, _ in spatial:
        misaligned.extend(f.misaligned)
    if all(_integral(f.axes) for f, _ in spatial):  # type: ignore[arg-type]
        axes, differing = _union_integral([f.axes for f, _ in spatial], rank)  # type: ignore[misc]
    else:
        axes, differing = _union_fractional([f.axes for f, _ in spatial], rank)  # type: ignore[misc]
    for index in range(1, len(spatial)):
        if index in differing:
            misaligned.append(f"{spatial[0][1]}|{spatial[index][1]}")
    return ReceptiveField(axes, is_global=is_global, misaligned=tuple(dict.fromkeys(misaligned)))


def _integral(axes: tuple[AxisField, ...]) -> bool:
    """Every size, stride and padding is a plain int and every unit alike (the usual case: no
    upsampling)."""
    for a in axes:
        if type(a.size) is not int or type(a.stride) is not int or type(a.padding) is not int:
            return False
        if a.phases or not a.exact:
            return False
    return True


def _union_integral(
    branches: list[tuple[AxisField, ...]], rank: int
) -> tuple[tuple[AxisField, ...], set[int]]:
    """Union of all-integer fields: the axes, and the branches whose centre differs from the
    first branch's on some axis (centres compared as start + end, twice the centre)."""
    axes: list[AxisField] = []
    differing: set[int] = set()
    for axis in range(rank):
        first = branches[0][axis]
        start = -first.padding  # type: ignore[operator]
        end = start + first.size - 1  # type: ignore[operator]
        stride = first.stride
        centre = start + end
        for index in range(1, len(branches)):
            other = branches[index][axis]
            other_start = -other.padding  # type: ignore[operator]
            other_end = other_start + other.size - 1  # type: ignore[operator]
            # plain ints: comparisons instead of min/max calls (the same values)
            if other_start < start:
                start = other_start
            if other_end > end:
                end = other_end
            if other.stride > stride:  # type: ignore[operator]
                stride = other.stride
            if other_start + other_end != centre:
                differing.add(index)
        axes.append(AxisField(end - start + 1, stride, -start))
    return tuple(axes), differing


def _union_fractional(
    branches: list[tuple[AxisField, ...]], rank: int
) -> tuple[tuple[AxisField, ...], set[int]]:
    """Union of fields after upsampling (units that differ, fractional values) or with unknown
    offsets, in exact Fractions: per unit where the branches share a stride, else the hull of
    the envelopes. Centres are those of the envelopes."""
    axes: list[AxisField] = []
    centres: list[list[Fraction | int | None]] = [[] for _ in branches]
    for axis in range(rank):
        items = [f[axis] for f in branches]
        plain = _plain_union(items)
        if plain is not None:
            axes.append(plain)
            for index, a in enumerate(items):
                # twice the centre, in ints: compared for equality only, like the Fractions
                centres[index].append(None if plain.padding is None
                                      else a.size - 1 - 2 * a.padding)  # type: ignore[operator]
            continue
        exact = periodic.union(items)
        if exact is not None:
            axes.append(exact)
            if exact.padding is None:
                for index in range(len(branches)):
                    centres[index].append(None)
            else:
                for index, a in enumerate(items):
                    start = -Fraction(a.padding)  # type: ignore[arg-type]
                    centres[index].append(start + (Fraction(a.size) - 1) / 2)
            continue
        stride = max(Fraction(a.stride) for a in items)
        if any(a.padding is None for a in items):
            size = max(Fraction(a.size) for a in items)
            axes.append(AxisField(_norm(size), _norm(stride), None))
            for index in range(len(branches)):
                centres[index].append(None)
            continue
        starts = [-Fraction(a.padding) for a in items]  # type: ignore[arg-type]
        ends = [s + Fraction(a.size) - 1 for s, a in zip(starts, items, strict=True)]
        start, end = min(starts), max(ends)
        axes.append(AxisField(_norm(end - start + 1), _norm(stride), _norm(-start), exact=False))
        for index, (s, e) in enumerate(zip(starts, ends, strict=True)):
            centres[index].append((s + e) / 2)
    reference = centres[0]
    differing = {
        index
        for index in range(1, len(branches))
        if any(
            a is not None and b is not None and a != b
            for a, b in zip(reference, centres[index], strict=True)
        )
    }
    return tuple(axes), differing


def _plain_union(items: list[AxisField]) -> AxisField | None:
    """:func:`periodic.union` of one axis's fields where all are plain ints of one stride with
    period 1 (an unknown padding allowed: 'same' padding of an unknown input size), in int
    arithmetic without building Fractions; None for any other case."""
    stride = items[0].stride
    for a in items:
        if (type(a.size) is not int or type(a.stride) is not int or a.stride != stride
                or (a.padding is not None and type(a.padding) is not int)
                or a.period != 1 or a.phases):
            return None
    start = min(-(a.padding or 0) for a in items)  # type: ignore[operator]
    end = max(-(a.padding or 0) + a.size - 1 for a in items)  # type: ignore[operator]
    known = all(a.padding is not None for a in items)
    return AxisField(end - start + 1, stride, -start if known else None,
                     exact=all(a.exact for a in items))


def field_global(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    """Every output unit sees the whole input (global pooling, attention, recurrence)."""
    if all(f is None for f in fields):
        return None
    if any(f is not None and f.unknown for f in fields):
        return UNKNOWN
    return GLOBAL


def field_flatten(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    merged = union_fields(fields, [str(i) for i in range(len(fields))])
    if merged is None or merged.unknown:
        return merged
    return GLOBAL if merged.is_global else FLAT


def field_mixing(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    """A layer mixing every unit of a flat input (Dense after Flatten): global then."""
    merged = union_fields(fields, [str(i) for i in range(len(fields))])
    if merged is not None and not merged.is_global and not merged.unknown and merged.axes is None:
        return GLOBAL
    return merged
