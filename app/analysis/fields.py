"""Receptive fields in the report: each layer's field as JSON, the summary of the last feature
map's field, and the merges whose branches are misaligned.

Summarised once per analysis: :func:`app.analysis.report.build_report` computes the summary and
hands it to the findings. Imports only the graph types, so the engine's modules import one way
(rules -> engine -> fields -> findings -> report).

    >>> from app.analysis.graph import AxisField, ReceptiveField
    >>> field_json(ReceptiveField((AxisField(3, 1, 1),)))
    {'axes': [{'size': 3, 'stride': 1, 'padding': 1}], 'global': False}
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from app.analysis.graph import AnalysisResult, AxisField, LayerResult, ReceptiveField

MISALIGNED_SHOWN = 3
"""Misaligned branch pairs stated per field and per merge (the worst first); the count says how
many there are, and ``GET /v1/analyses/{id}/misaligned`` lists them all."""


def fraction_to_json(value: Fraction | int | None) -> int | float | None:
    """Ints stay ints; fractional values (after upsampling) become floats."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return int(value)
        return round(float(value), 6)
    return value


def field_json(field: ReceptiveField | None) -> dict[str, Any] | None:
    """``{"axes": [{"size", "stride", "padding"}], "global": false}``, or null for non-spatial.

    ``global: true`` says some path into the unit sees the whole input (global
    pooling, attention, a squeeze-and-excitation gate); ``axes`` then give the
    field of its local (convolutional) paths, or null when there are none.
    """
    if field is None or field.unknown:
        return None
    if field.axes is None:
        return {"axes": None, "global": True} if field.is_global else None
    axes = field.axes
    if len(axes) == 2:  # the usual 2D field of plain ints: no call per axis
        a, b = axes
        if (type(a.size) is int and type(a.stride) is int and type(a.padding) is int
                and type(b.size) is int and type(b.stride) is int and type(b.padding) is int
                and a.period == 1 and b.period == 1 and a.exact and b.exact):
            body: dict[str, Any] = {
                "axes": [{"size": a.size, "stride": a.stride, "padding": a.padding},
                         {"size": b.size, "stride": b.stride, "padding": b.padding}],
                "global": field.is_global,
            }
        else:
            body = {"axes": [_axis_json(a), _axis_json(b)], "global": field.is_global}
    else:
        body = {"axes": [_axis_json(axis) for axis in axes], "global": field.is_global}
    misaligned = field.misaligned
    if misaligned:  # only the pairs shown are split (a layer may inherit hundreds)
        body["misaligned"] = [pair.split("|") for pair in misaligned[:MISALIGNED_SHOWN]]
        if len(misaligned) > MISALIGNED_SHOWN:
            body["misaligned_count"] = len(misaligned)
    return body


def _axis_json(axis: AxisField) -> dict[str, Any]:
    """Size, stride and padding; after upsampling (units that differ) also the period, the
    range of the units' true sizes and whether the envelope is exact.

    >>> _axis_json(AxisField(4, 1, 1, period=2, phases=((0, 2), (0, 2))))
    {'size': 4, 'stride': 1, 'padding': 1, 'period': 2, 'unit_sizes': [3, 3]}
    """
    size, stride, padding = axis.size, axis.stride, axis.padding
    if type(size) is int and type(stride) is int and (padding is None or type(padding) is int):
        body: dict[str, Any] = {"size": size, "stride": stride, "padding": padding}
    else:
        body = {
            "size": fraction_to_json(size),
            "stride": fraction_to_json(stride),
            "padding": fraction_to_json(padding),
        }
    if axis.period != 1:
        body["period"] = axis.period
        body["unit_sizes"] = [fraction_to_json(value) for value in axis.unit_sizes]
    if not axis.exact:
        body["exact"] = False
    return body


def _spatial_input(result: AnalysisResult, channels_first: bool) -> tuple[str | None, list[int | None] | None]:
    for name, shape in zip(result.input_layers, result.input_shapes, strict=False):
        if shape is not None and len(shape) >= 3:
            dims = list(shape[2:]) if channels_first else list(shape[1:-1])
            return name, dims
    return None, None


def receptive_field_summary(result: AnalysisResult) -> dict[str, Any]:
    """The last spatial feature map's field and how much of the input it covers."""
    channels_first = any(layer.channels_first for layer in result.layers)
    input_name, input_size = _spatial_input(result, channels_first)
    chosen: LayerResult | None = None
    any_global = False
    for layer in reversed(result.layers):
        field = layer.receptive_field
        if field is None or field.unknown:
            continue
        if field.is_global:
            any_global = True
        if field.axes is not None:
            chosen = layer
            break
    summary: dict[str, Any] = {
        "layer": None,
        "axes": None,
        "global": False,
        "input": input_name,
        "input_size": input_size,
        "coverage": None,
        "sees_whole_input": None,
        "misaligned": misaligned_summary(result),
        "head_is_global": any_global,
    }
    if chosen is None or chosen.receptive_field is None or chosen.receptive_field.axes is None:
        return summary
    field = chosen.receptive_field
    axes = field_json(field)["axes"]  # type: ignore[index]
    summary["layer"] = chosen.name
    summary["axes"] = axes
    summary["global"] = field.is_global
    if input_size is not None and len(input_size) == len(field.axes or ()):
        coverage: list[float | None] = []
        for axis, size in zip(field.axes or (), input_size, strict=True):
            if size is None:
                coverage.append(None)
            elif type(axis.size) is int and type(size) is int and size > 0:
                # Plain ints: int / int is correctly rounded, as float() of the reduced
                # Fraction is (the same rational), without building one.
                coverage.append(round(axis.size / size, 4))
            else:
                coverage.append(round(float(Fraction(axis.size) / size), 4))
        summary["coverage"] = coverage
        summary["sees_whole_input"] = (
            None if any(c is None for c in coverage) else all(c >= 1 for c in coverage)  # type: ignore[operator]
        )
    return summary


def _centre_offset(result: AnalysisResult, pair: str) -> float:
    """How far apart, in input pixels, the field centres of a misaligned pair's layers are."""
    by_name = result.by_name()
    offsets = [0.0]
    names = pair.split("|")
    layers = [by_name.get(name) for name in names]
    if len(layers) == 2 and all(layer is not None and layer.receptive_field is not None
                                and layer.receptive_field.axes for layer in layers):
        first, second = (layer.receptive_field.axes for layer in layers)  # type: ignore[union-attr]
        for a, b in zip(first or (), second or (), strict=False):
            if a.padding is None or b.padding is None:
                continue
            if (type(a.size) is int and type(a.padding) is int
                    and type(b.size) is int and type(b.padding) is int):
                # plain ints: twice the offset is an int, halved as float(Fraction) would
                offsets.append(abs(((a.size - 1 - 2 * a.padding) - (b.size - 1 - 2 * b.padding)) / 2))
                continue
            centre_a = Fraction(a.size - 1) / 2 - a.padding
            centre_b = Fraction(b.size - 1) / 2 - b.padding
            offsets.append(abs(float(centre_a - centre_b)))
    return max(offsets)


def misaligned_summary(result: AnalysisResult, *, full: bool = False) -> list[dict[str, Any]]:
    """The merges where misaligned branches meet, each with its worst pairs (largest offset
    between field centres first, :data:`MISALIGNED_SHOWN` of them unless ``full``).

    Only the layers where a pair first appears are listed: downstream layers inherit the pairs
    of their inputs (each layer's field says how many it carries).
    """
    out: list[dict[str, Any]] = []
    by_name = result.by_name()
    for entry in result.misaligned:
        branches = entry["branches"]
        layer = by_name.get(entry["layer"])
        upstream: set[str] = set()
        if layer is not None:
            inbound = layer.inbound
            if len(inbound) == 1:
                # Most entries are layers of one input that pass its pairs on unchanged:
                # nothing new there, found by one tuple comparison instead of a set of them.
                source = by_name.get(inbound[0])
                field = source.receptive_field if source is not None else None
                if field is not None and tuple(branches) == field.misaligned:
                    continue
            for name in inbound:
                source = by_name.get(name)
                if source is not None and source.receptive_field is not None:
                    upstream.update(source.receptive_field.misaligned)
        new = [pair for pair in branches if pair not in upstream]
        if not new:
            continue
        offsets = {pair: _centre_offset(result, pair) for pair in new}
        ranked = sorted(new, key=lambda pair: -offsets[pair])
        shown = ranked if full else ranked[:MISALIGNED_SHOWN]
        item: dict[str, Any] = {
            "layer": entry["layer"],
            "branches": [pair.split("|") for pair in shown],
            "pair_count": len(new),
            "max_offset": round(offsets[ranked[0]], 4),
        }
        out.append(item)
    return out
