"""Receptive fields of units that differ: exact per-unit fields and their envelope.

A convolution or pooling moves every output unit's field by the same stride, so one
``(size, stride, padding)`` triple describes all units. Upsampling breaks that: after a
transposed convolution, an ``UpSampling`` or a ``Resizing`` layer, neighbouring units read
different input units, and their fields differ in size and offset. They still repeat: output
unit ``j + period`` sees exactly what unit ``j`` sees, moved by a whole number of input pixels
(``shift``). So one period of true fields describes them all, and every later layer's fields
follow from it exactly (a field is an interval ``(first, last)`` of input pixels; an output
unit's field is the hull of the fields of the input units it reads).

What the report gives per axis is the *envelope*: the smallest ``size``/``stride``/``padding``
field whose unit ``j`` (starting at ``j * stride - padding``) contains unit ``j``'s true field,
with ``stride = shift / period``, plus the period and the range of true sizes.

Example: a stride-2 convolution of kernel 3, then a 2x transposed convolution of kernel 2::

    >>> from app.analysis.graph import AxisField
    >>> conv = AxisField(3, 2, 0)
    >>> up = compose(conv, transpose_reads(2, 2, 0))
    >>> up.period, up.phases, (up.size, up.stride, up.padding)
    (2, ((0, 2), (0, 2)), (4, 1, 1))

Units 0 and 1 both see pixels 0..2; an evenly spaced field of stride 1 containing both needs
4 pixels and starts one pixel before pixel 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from app.analysis.graph import AxisField
from app.errors import ResourceLimitExceeded

Number = Fraction | int
Interval = tuple[Number, Number] | None

MAX_PERIOD = 256
"""Longest pattern of unit fields followed exactly; a longer one (resizing by a ratio of large
coprime sizes, many upsamplings without a downsampling between) is replaced by its envelope,
and the fields after it are upper bounds (``exact`` false)."""


MAX_READS = 1 << 16
"""Most input units one layer's output units may read, counted over one period along one
axis, that the fields are followed through (building the reads and composing them with a
periodic field both cost that much: up to about 10 us a unit). Real layers read a few dozen
to a few thousand (a resize from 224 to 299 px: 299 outputs a period, two units each); a
hostile config's upsampling by 10^9, or a 10^9-tap kernel after an upsampling, would read
billions: such a layer is refused (422 ``resource_limit_exceeded``) before anything that size
is built, where it took minutes and gigabytes. At 2^20 an upsampling by 10^6 still cost 5 s;
at 2^16 the slowest of 3,000 mutated U-Net-like configs took 0.7 s."""


def check_reads(count: int, what: str) -> None:
    """Refuse a layer whose per-unit reads along one axis would list more than
    :data:`MAX_READS` input units.

    >>> check_reads(3 * 2, "a transposed convolution")
    >>> check_reads(10**9, "an upsampling by 1000000000")
    Traceback (most recent call last):
    ...
    app.errors.ResourceLimitExceeded: an upsampling by 1000000000 reads 1,000,000,000 input units \
per period along one axis to follow its receptive field, above convlens's limit of 65,536.
    """
    if count > MAX_READS:
        raise ResourceLimitExceeded(
            f"{what} reads {count:,} input units per period along one axis to follow its "
            f"receptive field, above convlens's limit of {MAX_READS:,}.",
            extra={"reads": count, "limit": MAX_READS})


@dataclass(frozen=True, slots=True)
class Reads:
    """Which input units one layer's output units read along one axis.

    Output unit ``r + n * period`` (``0 <= r < period``) reads input units
    ``units[r][i] + n * shift``: a convolution reads ``kernel`` units every ``stride`` units
    (period 1, shift ``stride``); a transposed convolution of stride ``s`` repeats every ``s``
    outputs (shift 1).
    """

    period: int
    shift: int
    units: tuple[tuple[int, ...], ...]


def _norm(value: Number) -> Number:
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def window_reads(kernel: int, stride: int, pad: int, dilation: int = 1) -> Reads:
    """A sliding window (convolution, pooling; padding and cropping are windows of 1).

    >>> window_reads(3, 2, 1)
    Reads(period=1, shift=2, units=((-1, 0, 1),))
    """
    taps = (kernel - 1) // dilation + 1
    check_reads(taps, f"a window of {kernel} after an upsampling")
    return Reads(1, stride, (tuple(-pad + t * dilation for t in range(taps)),))


def transpose_reads(kernel: int, stride: int, crop: int, dilation: int = 1) -> Reads:
    """A transposed convolution: input unit ``i`` adds into outputs ``i * stride - crop + t *
    dilation`` (the adjoint of the forward convolution it is the gradient of).

    >>> transpose_reads(3, 2, 1).units
    ((0,), (0, 1))
    """
    taps = (kernel - 1) // dilation + 1
    check_reads(stride * taps, f"a transposed convolution of kernel {kernel} and stride {stride}")
    units = []
    for r in range(stride):
        read = []
        for t in range(taps):
            numerator = r + crop - t * dilation
            if numerator % stride == 0:
                read.append(numerator // stride)
        units.append(tuple(sorted(set(read))))
    return Reads(stride, 1, tuple(units))


def repeat_reads(size: int) -> Reads:
    """Nearest-neighbour upsampling by an integer factor: output ``j`` reads ``j // size``.

    >>> repeat_reads(2)
    Reads(period=2, shift=1, units=((0,), (0,)))
    """
    check_reads(size, f"an upsampling by {size}")
    return Reads(size, 1, tuple((0,) for _ in range(size)))


HALF_WIDTH = {"bilinear": 1, "bicubic": 2, "lanczos3": 3, "lanczos5": 5}
"""Half-width, in input pixels, of each interpolation kernel: output ``j`` at source
coordinate ``x`` reads the input units ``i`` with ``|i - x| < half-width``, except where the
kernel is zero: at the other integer distances (so an ``x`` on a pixel reads that pixel only)."""


def resample_reads(length_in: int, length_out: int, interpolation: str, antialias: bool = False) -> Reads:
    """Resizing ``length_in`` units to ``length_out`` (TensorFlow's ``tf.image.resize``, pixel
    centres at ``x + 0.5``): output ``j`` samples the input at ``x = (j + 0.5) * in / out - 0.5``.

    ``nearest`` reads ``floor((j + 0.5) * in / out)``; ``area`` averages the input pixels its
    footprint ``[j * in / out, (j + 1) * in / out)`` overlaps; the others read the units within
    their kernel's half-width (scaled by ``in / out`` when ``antialias`` shrinks the image).

    >>> resample_reads(4, 8, "bilinear")
    Reads(period=2, shift=1, units=((-1, 0), (0, 1)))
    >>> resample_reads(8, 4, "nearest")
    Reads(period=1, shift=2, units=((1,),))
    >>> resample_reads(1, 3, "bicubic").units
    ((-2, -1, 0, 1), (0,), (-1, 0, 1, 2))
    """
    g = math.gcd(length_in, length_out)
    period, shift = length_out // g, length_in // g
    scale = Fraction(length_in, length_out)
    # each output reads about its footprint (area) or its kernel's reach (the others)
    widest = 2 * HALF_WIDTH.get(interpolation, 1) * max(1, math.ceil(scale) if antialias else 1)
    check_reads(period * max(widest, math.ceil(scale) + 1),
                f"a resizing from {length_in} to {length_out} ({interpolation})")
    units = []
    for j in range(period):
        read: tuple[int, ...]
        if interpolation == "nearest":
            read = (math.floor((j + Fraction(1, 2)) * scale),)
        elif interpolation == "area":
            first = math.floor(j * scale)
            last = math.ceil((j + 1) * scale) - 1
            read = tuple(range(first, max(last, first) + 1))
        else:
            stretch = scale if antialias and scale > 1 else Fraction(1)
            reach = HALF_WIDTH.get(interpolation, 1) * stretch
            x = (j + Fraction(1, 2)) * scale - Fraction(1, 2)
            # every kernel is zero at the other whole multiples of its (stretched) unit
            read = tuple(
                i for i in range(math.floor(x - reach) + 1, math.ceil(x + reach))
                if i == x or ((i - x) / stretch).denominator != 1
            )
        units.append(read)
    return Reads(period, shift, tuple(units))


def phases_of(axis: AxisField) -> tuple[int, Number, list[Interval]]:
    """(period, shift in input pixels per period, true field of each unit of one period)."""
    if axis.phases:
        return axis.period, axis.stride * axis.period, list(axis.phases)
    start: Number = -(axis.padding or 0)
    return 1, axis.stride, [(start, start + axis.size - 1)]


def compose(axis: AxisField, reads: Reads, *, known: bool = True) -> AxisField:
    """The field of a layer's output units from its input's field and what each unit reads.

    ``known`` False: the layer's offsets (a 'same' padding of unknown input size) were taken
    as 0, so the result's padding is unknown.
    """
    period_in, shift_in, phases = phases_of(axis)
    exact = axis.exact
    repeat = period_in // math.gcd(reads.shift, period_in)
    if reads.period * repeat > MAX_PERIOD and period_in > 1:
        axis = envelope_only(axis)
        exact = False
        period_in, shift_in, phases = phases_of(axis)
        repeat = 1
    period = reads.period * repeat
    if repeat > 1:  # the reads themselves were bounded when they were built
        check_reads(repeat * sum(len(units) for units in reads.units), "a layer after an upsampling")
    out: list[Interval] = []
    for j in range(period):
        block, r = divmod(j, reads.period)
        first: Number | None = None
        last: Number | None = None
        for base in reads.units[r]:
            cycle, phase = divmod(base + block * reads.shift, period_in)
            interval = phases[phase]
            if interval is None:
                continue
            a = interval[0] + cycle * shift_in
            b = interval[1] + cycle * shift_in
            if first is None or a < first:
                first = a
            if last is None or b > last:
                last = b
        out.append(None if first is None or last is None else (_norm(first), _norm(last)))
    shift = repeat * reads.shift // period_in * shift_in
    return from_phases(period, shift, out, known=known and axis.padding is not None, exact=exact)


def from_phases(
    period: int, shift: Number, phases: Sequence[Interval], *, known: bool = True, exact: bool = True
) -> AxisField:
    """An :class:`AxisField` from one period of true fields: the shortest period that repeats,
    and the envelope of stride ``shift / period``.

    >>> from_phases(2, 2, [(0, 2), (1, 3)])
    AxisField(size=3, stride=1, padding=0)
    """
    stride = Fraction(shift) / period
    period, phases = _shortest_period(period, Fraction(shift), list(phases))
    present = [(r, p) for r, p in enumerate(phases) if p is not None]
    if not present:
        return AxisField(0, _norm(stride), 0 if known else None, exact=exact)
    padding = max(r * stride - p[0] for r, p in present)
    reach = max(p[1] - r * stride for r, p in present)
    size = reach + padding + 1
    if period == 1:
        return AxisField(_norm(size), _norm(stride), _norm(padding) if known else None, exact=exact)
    return AxisField(
        _norm(size), _norm(stride), _norm(padding) if known else None,
        period=period, phases=tuple(phases), exact=exact,
    )


def _shortest_period(period: int, shift: Fraction, phases: list[Interval]) -> tuple[int, list[Interval]]:
    """The smallest divisor ``d`` of ``period`` after which the fields repeat (moved by
    ``shift * d / period``), and the first ``d`` fields."""
    for d in range(1, period):
        if period % d:
            continue
        step = shift * d / period
        if all(_moved(phases[j], step) == phases[j + d] for j in range(period - d)):
            return d, phases[:d]
    return period, phases


def _moved(interval: Interval, step: Fraction) -> Interval:
    if interval is None:
        return None
    return _norm(interval[0] + step), _norm(interval[1] + step)


def envelope_only(axis: AxisField) -> AxisField:
    """Every unit given the envelope (period 1): an upper bound of each unit's field."""
    return AxisField(axis.size, axis.stride, axis.padding, exact=False)


def union(axes: Sequence[AxisField]) -> AxisField | None:
    """The field of a unit fed by branches of the same stride: per unit, the hull of the
    branches' fields (None when their strides differ: no common pattern)."""
    strides = {Fraction(a.stride) for a in axes}
    if len(strides) != 1:
        return None
    stride = strides.pop()
    period = 1
    for a in axes:
        period = period * a.period // math.gcd(period, a.period)
    if period > MAX_PERIOD:
        return None
    branches = [phases_of(a) for a in axes]
    out: list[Interval] = []
    for j in range(period):
        first: Number | None = None
        last: Number | None = None
        for a_period, a_shift, a_phases in branches:
            cycle, phase = divmod(j, a_period)
            interval = a_phases[phase]
            if interval is None:
                continue
            lo, hi = interval[0] + cycle * a_shift, interval[1] + cycle * a_shift
            first = lo if first is None or lo < first else first
            last = hi if last is None or hi > last else last
        out.append(None if first is None or last is None else (_norm(first), _norm(last)))
    known = all(a.padding is not None for a in axes)
    return from_phases(period, stride * period, out, known=known, exact=all(a.exact for a in axes))
