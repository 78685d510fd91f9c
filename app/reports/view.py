"""Read-only views over a report dict that the plots, the page and the CLI share.

The report schema nests the layers of a model used as a layer under that
layer's ``"layers"``; :func:`flatten_layers` walks them in order. Stages
(runs of layers working at one spatial resolution) are taken from the report
when the engine provides them and derived from the output shapes otherwise.

Example::

    >>> report = {"layers": [{"name": "c", "class_name": "Conv2D",
    ...     "output_shape": [None, 8, 8, 4], "params": 40, "macs": 2304,
    ...     "receptive_field": {"axes": [{"size": 3, "stride": 1, "padding": 1}] * 2,
    ...                         "global": False}}]}
    >>> [stage["resolution"] for stage in derive_stages(report)]
    [[8, 8]]
    >>> format_count(1234567)
    '1.23M'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Report = Mapping[str, Any]


@dataclass(frozen=True)
class FlatLayer:
    """One layer of a report, nested models walked in order.

    ``qualified_name`` joins the names of enclosing models with ``/``
    (``"backbone/conv1"``); ``depth`` is 0 for top-level layers; ``is_container``
    is True for a model used as a layer (its sublayers follow it).
    """

    qualified_name: str
    layer: Mapping[str, Any]
    depth: int
    is_container: bool

    @property
    def name(self) -> str:
        return str(self.layer.get("name", ""))

    @property
    def class_name(self) -> str:
        return str(self.layer.get("class_name", ""))


def flatten_layers(report: Report) -> list[FlatLayer]:
    """All layers of ``report`` in order, nested models expanded after their container."""
    layers = report.get("layers")
    return list(_walk(layers if isinstance(layers, list) else [], prefix="", depth=0))


def _walk(layers: Sequence[Mapping[str, Any]], prefix: str, depth: int) -> Iterator[FlatLayer]:
    for layer in layers:
        name = str(layer.get("name", ""))
        qualified = f"{prefix}{name}"
        children = layer.get("layers")
        nested = children if isinstance(children, list) else []
        yield FlatLayer(qualified, layer, depth, bool(nested))
        if nested:
            yield from _walk(nested, prefix=f"{qualified}/", depth=depth + 1)


def leaf_layers(report: Report) -> list[FlatLayer]:
    """The layers that do the work: nested models replaced by their own layers.

    Summing ``params`` over the leaves gives the model's total without counting
    a nested model twice.
    """
    return [flat for flat in flatten_layers(report) if not flat.is_container]


def first_output_shape(layer: Mapping[str, Any]) -> list[int | None] | None:
    """The first output shape of a layer (the schema uses a list of lists for several)."""
    shape = layer.get("output_shape")
    if not isinstance(shape, list) or not shape:
        return None
    if isinstance(shape[0], list):
        return shape[0]
    return shape


def field_axes(layer: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The per-axis receptive field of a layer, or None if it has none (or it is global)."""
    field = layer.get("receptive_field")
    if not isinstance(field, Mapping) or field.get("global"):
        return None
    axes = field.get("axes")
    if not isinstance(axes, list) or not axes:
        return None
    return axes


def is_global_field(layer: Mapping[str, Any]) -> bool:
    field = layer.get("receptive_field")
    return isinstance(field, Mapping) and bool(field.get("global"))


def spatial_resolution(layer: Mapping[str, Any]) -> list[int | None] | None:
    """Spatial size of a layer's output (channels-last), or None for a non-spatial tensor."""
    axes = field_axes(layer)
    shape = first_output_shape(layer)
    if axes is None or shape is None:
        return None
    spatial = shape[1 : 1 + len(axes)]
    if len(spatial) != len(axes):
        return None
    return list(spatial)


def derive_stages(report: Report) -> list[dict[str, Any]]:
    """The report's stages, or ones derived from the layers' output resolutions.

    A stage is a maximal run of consecutive layers whose outputs share one
    spatial size; layers without a spatial output (the classifier head) form
    stages with ``resolution`` None. Each stage carries its layers, channels
    at its end, summed params and MACs, and the receptive field at its end.
    """
    given = report.get("stages")
    if isinstance(given, list) and given:
        return [dict(stage) for stage in given]
    stages: list[dict[str, Any]] = []
    for flat in leaf_layers(report):
        layer = flat.layer
        if layer.get("class_name") == "InputLayer":
            continue
        resolution = spatial_resolution(layer)
        if not stages or stages[-1]["resolution"] != resolution:
            stages.append(
                {
                    "index": len(stages) + 1,
                    "resolution": resolution,
                    "layers": [],
                    "params": 0,
                    "macs": 0,
                    "channels": None,
                    "receptive_field": None,
                    "partial": False,
                }
            )
        stage = stages[-1]
        stage["layers"].append(flat.qualified_name)
        for metric in ("params", "macs"):
            value = layer.get(metric)
            if isinstance(value, int):
                stage[metric] += value
            else:
                stage["partial"] = True
        shape = first_output_shape(layer)
        if shape:
            stage["channels"] = shape[-1]
        axes = field_axes(layer)
        if axes is not None:
            stage["receptive_field"] = [
                {"size": axis.get("size"), "stride": axis.get("stride")} for axis in axes
            ]
    return stages


def format_count(value: Any) -> str:
    """A count as people read it: ``1234`` -> ``'1,234'``, ``1234567`` -> ``'1.23M'``."""
    if value is None:
        return "unknown"
    if not isinstance(value, int | float):
        return str(value)
    magnitude = abs(value)
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if magnitude >= threshold:
            return f"{value / threshold:.2f}{suffix}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def format_bytes(value: Any) -> str:
    """Bytes in binary units: ``2048`` -> ``'2.0 KiB'``."""
    if value is None:
        return "unknown"
    if not isinstance(value, int | float):
        return str(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_shape(shape: Any) -> str:
    """A Keras shape as Keras prints it: ``[None, 28, 28, 1]`` -> ``'(None, 28, 28, 1)'``."""
    if shape is None:
        return "?"
    if isinstance(shape, list) and shape and isinstance(shape[0], list):
        return ", ".join(format_shape(item) for item in shape)
    if isinstance(shape, list):
        inner = ", ".join("None" if dim is None else str(dim) for dim in shape)
        return f"({inner},)" if len(shape) == 1 else f"({inner})"
    return str(shape)


def format_number(value: Any) -> str:
    """A receptive-field number (may be a float after upsampling): ``5.0`` -> ``'5'``."""
    if value is None:
        return "?"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_field(axes: Sequence[Mapping[str, Any]] | None, key: str = "size") -> str:
    """Per-axis field values joined with ``x``: sizes 5 and 5 -> ``'5x5'``."""
    if not axes:
        return ""
    return "x".join(format_number(axis.get(key)) for axis in axes)


def coverage_percent(report: Report) -> str | None:
    """The final field's coverage of the input as ``'2.3%'`` (smallest axis), or None."""
    field = report.get("receptive_field") or {}
    coverage = field.get("coverage")
    values = [value for value in (coverage or []) if isinstance(value, int | float)]
    if not values:
        return None
    share = min(values) * 100
    return f"{share:.0f}%" if share >= 10 else f"{share:.2g}%"


def headline(report: Report) -> str:
    """One sentence that says what the model is, for the top of a report.

    >>> headline({"model_name": "m", "summary": {"layer_count": 2, "total_params": 10,
    ...           "macs": 100, "input_shapes": [[None, 8, 8, 1]]}})
    'm: 2 layers, 10 parameters and 100 MACs per sample for an input of (None, 8, 8, 1).'
    """
    summary = report.get("summary") or {}
    name = report.get("model_name") or "The model"
    inputs = summary.get("input_shapes")
    text = (
        f"{name}: {format_count(summary.get('layer_count'))} layers, "
        f"{format_count(summary.get('total_params'))} parameters and "
        f"{format_count(summary.get('macs'))} MACs per sample for an input of "
        f"{format_shape(inputs[0] if isinstance(inputs, list) and len(inputs) == 1 else inputs)}."
    )
    field = report.get("receptive_field") or {}
    axes = field.get("axes")
    if field.get("global"):
        text += " Its output units see the whole input (global pooling or dense layers)."
    elif axes:
        share = coverage_percent(report)
        where = f" ({field.get('layer')})" if field.get("layer") else ""
        text += (
            f" Each unit of the last feature map{where} sees {format_field(axes)} input pixels"
            + (f", {share} of the input" if share else "")
            + f", and neighbouring units are {format_field(axes, 'stride')} pixels apart."
        )
    return text
