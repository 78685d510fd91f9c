"""Read-only views over a report dict that the plots, the page and the CLI share.

The report schema nests the layers of a model used as a layer under that
layer's ``"layers"``; :func:`flatten_layers` walks them in order. Stages are
those of the report's ``stages`` finding (one source, so the finding, the page,
the terminal and the comparison count the same stages); reports without it
fall back to runs of layers at one output resolution.

Example::

    >>> report = {"layers": [{"name": "c", "class_name": "Conv2D",
    ...     "output_shape": [None, 8, 8, 4], "params": 40, "macs": 2304,
    ...     "receptive_field": {"axes": [{"size": 3, "stride": 1, "padding": 1}] * 2,
    ...                         "global": False}}]}
    >>> [stage["resolution"] for stage in derive_stages(report)]  # no stages finding: by shape
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


def main_path(report: Report) -> list[FlatLayer]:
    """The layers from an input to the last output along the widest field: walking back from
    the output, at every merge the input whose receptive field is largest (a residual branch
    rather than its shortcut, an Inception cell's deepest branch). In graph order.

    Branch layers off that path (shortcut projections, parallel towers) are left out, so a
    field drawn along it grows monotonically instead of zigzagging between branches.

    >>> report = {"layers": [
    ...     {"name": "x", "inbound": [], "receptive_field": {"axes": [{"size": 1}]}},
    ...     {"name": "a", "inbound": ["x"], "receptive_field": {"axes": [{"size": 3}]}},
    ...     {"name": "b", "inbound": ["a"], "receptive_field": {"axes": [{"size": 5}]}},
    ...     {"name": "s", "inbound": ["x"], "receptive_field": {"axes": [{"size": 1}]}},
    ...     {"name": "add", "inbound": ["b", "s"], "receptive_field": {"axes": [{"size": 5}]}}]}
    >>> [flat.name for flat in main_path(report)]
    ['x', 'a', 'b', 'add']
    """
    leaves = leaf_layers(report)
    if not leaves:
        return []
    by_name = {flat.name: flat for flat in leaves}
    if not any(flat.layer.get("inbound") for flat in leaves):
        return leaves
    order = {flat.name: index for index, flat in enumerate(leaves)}
    chosen: set[str] = set()
    current: FlatLayer | None = leaves[-1]
    while current is not None and current.name not in chosen:
        chosen.add(current.name)
        inputs = [by_name[str(name)] for name in current.layer.get("inbound") or []
                  if str(name) in by_name]
        current = max(inputs, key=lambda flat: (_field_extent(flat.layer), order[flat.name]),
                      default=None)
    return [flat for flat in leaves if flat.name in chosen]


def _field_extent(layer: Mapping[str, Any]) -> float:
    """The largest field size of a layer for ranking paths (global counts as infinite)."""
    if is_global_field(layer):
        return float("inf")
    axes = field_axes(layer) or []
    sizes = [float(size) for size in (axis.get("size") for axis in axes)
             if isinstance(size, int | float)]
    return max(sizes) if sizes else 0.0


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


def stages_finding(report: Report) -> Mapping[str, Any] | None:
    """The details of the report's ``stages`` finding (its stages and head), if it has one."""
    for finding in report.get("findings") or []:
        if isinstance(finding, Mapping) and finding.get("code") == "stages":
            details = finding.get("details")
            if isinstance(details, Mapping) and isinstance(details.get("stages"), list):
                return details
    return None


def derive_stages(report: Report) -> list[dict[str, Any]]:
    """The report's stages, as its ``stages`` finding states them, in the form every view uses.

    One dict per stage: ``index``, ``resolution``, ``channels``, ``effective_stride``,
    ``layer_count``, ``first_layer``, ``last_layer``, ``output_layer``, ``params``, ``macs`` and
    ``receptive_field`` (per axis, of the map the stage hands on). The page, the terminal and
    the comparison all read this, so they count the stages the finding counts. Reports without
    the finding (older ones) fall back to runs of layers at one output resolution.
    """
    details = stages_finding(report)
    if details is None:
        return _stages_by_resolution(report)
    by_name = {flat.name: flat.layer for flat in flatten_layers(report)}
    stages = []
    for stage in details["stages"]:
        if not isinstance(stage, Mapping):
            continue
        output = by_name.get(str(stage.get("output_layer")), {})
        axes = field_axes(output)
        stages.append(
            {
                "index": stage.get("index"),
                "resolution": stage.get("resolution"),
                "channels": stage.get("channels_out"),
                "effective_stride": stage.get("effective_stride"),
                "layer_count": stage.get("layer_count"),
                "first_layer": stage.get("first_layer"),
                "last_layer": stage.get("last_layer"),
                "output_layer": stage.get("output_layer"),
                "params": stage.get("params"),
                "macs": stage.get("macs"),
                "receptive_field": (
                    [{"size": axis.get("size"), "stride": axis.get("stride")} for axis in axes]
                    if axes
                    else None
                ),
            }
        )
    return stages


def stage_head(report: Report) -> dict[str, Any] | None:
    """What follows the last stage (global pooling, a final pooling, the classifier), or None.

    >>> stage_head({"findings": [{"code": "stages", "details": {"stages": [], "head": {
    ...     "first_layer": "gap", "last_layer": "fc", "layer_count": 2}}}]})["layer_count"]
    2
    """
    details = stages_finding(report)
    head = details.get("head") if details is not None else None
    return dict(head) if isinstance(head, Mapping) else None


def stage_of_layers(report: Report) -> dict[str, int]:
    """Layer name -> the index of its stage, 0 for the head (as the ``stages`` finding lists
    them; parallel branches and shortcuts belong to the stage of their stride).

    >>> stage_of_layers({"findings": [{"code": "stages", "details": {
    ...     "stages": [{"index": 1, "layers": ["a", "b"]}], "head": {"layers": ["c"]}}}]})
    {'a': 1, 'b': 1, 'c': 0}
    """
    details = stages_finding(report)
    if details is None:
        return {}
    out: dict[str, int] = {}
    for stage in details["stages"]:
        if isinstance(stage, Mapping):
            for name in stage.get("layers") or []:
                out[str(name)] = int(stage.get("index") or 0)
    head = details.get("head")
    if isinstance(head, Mapping):
        for name in head.get("layers") or []:
            out[str(name)] = 0
    return out


def _stages_by_resolution(report: Report) -> list[dict[str, Any]]:
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
                    "layer_count": 0,
                    "first_layer": flat.qualified_name,
                    "last_layer": flat.qualified_name,
                    "params": 0,
                    "macs": 0,
                    "channels": None,
                    "receptive_field": None,
                    "effective_stride": None,
                }
            )
        stage = stages[-1]
        stage["layer_count"] += 1
        stage["last_layer"] = flat.qualified_name
        for metric in ("params", "macs"):
            value = layer.get(metric)
            if isinstance(value, int):
                stage[metric] += value
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


def _percent(fraction: float) -> str:
    share = fraction * 100
    return f"{share:.0f}%" if share >= 10 else f"{share:.2g}%"


def coverage_percent(report: Report) -> str | None:
    """The final field's coverage of the input as ``'2.3%'`` (smallest axis), or None."""
    field = report.get("receptive_field") or {}
    coverage = field.get("coverage")
    values = [value for value in (coverage or []) if isinstance(value, int | float)]
    if not values:
        return None
    return _percent(min(values))


def unit_sizes(axes: Sequence[Mapping[str, Any]] | None) -> tuple[list[Any], list[Any]] | None:
    """The smallest and the largest field of one unit, per axis, where the units' fields
    differ from the envelope the axes give (after upsampling, ``unit_sizes``); None where
    every unit sees the envelope's size.

    >>> unit_sizes([{"size": 7, "period": 2, "unit_sizes": [5, 7]}, {"size": 4, "period": 2, "unit_sizes": [3, 3]}])
    ([5, 3], [7, 3])
    >>> unit_sizes([{"size": 7}, {"size": 7}]) is None
    True
    """
    if not axes or not any(axis.get("unit_sizes") for axis in axes):
        return None
    ranges = [axis.get("unit_sizes") or [axis.get("size")] * 2 for axis in axes]
    smallest, largest = [low for low, _ in ranges], [high for _, high in ranges]
    if smallest == largest == [axis.get("size") for axis in axes]:
        return None
    return smallest, largest


def coverage_card(report: Report) -> tuple[str, str]:
    """The summary card's value and note for how much of the input the last map's units see.

    A field larger than the input reads "whole input", with how far it reaches past the border
    (that part of the field falls on padding), instead of a share above 100%.

    >>> coverage_card({"receptive_field": {"axes": [{"size": 483}, {"size": 483}],
    ...     "input_size": [224, 224], "coverage": [2.1562, 2.1562], "sees_whole_input": True}})
    ('whole input', 'field 483x483 px on a 224x224 input: 2.2x its size, the rest is padding')
    """
    field = report.get("receptive_field") or {}
    axes = field.get("axes")
    share = coverage_percent(report)
    if field.get("global") and not axes:
        return "whole input", "global pooling or dense layers: every unit sees everything"
    if not axes or share is None:
        return "–", "no spatial layers" if not axes else "the input size is not fixed"
    coverage = [value for value in (field.get("coverage") or []) if isinstance(value, int | float)]
    inputs = field.get("input_size") or []
    input_text = "x".join(format_number(size) for size in inputs)
    if coverage and min(coverage) >= 1:
        ratio = min(coverage)
        note = f"field {format_field(axes)} px on a {input_text} input"
        if ratio > 1.05:
            note += f": {ratio:.1f}x its size, the rest is padding"
        return "whole input", note
    return share, f"of the {input_text} input seen by one unit of the last map"


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
        where = f" ({field.get('layer')})" if field.get("layer") else ""
        sizes = unit_sizes(axes)
        if sizes is None:
            seen = f"Each unit of the last feature map{where} sees {format_field(axes)} input pixels"
            coverage = [v for v in (field.get("coverage") or []) if isinstance(v, int | float)]
        else:  # after upsampling: the units' own fields, not their envelope
            smallest, largest = (format_field([{"size": size} for size in side]) for side in sizes)
            if smallest == largest:
                seen = f"Each unit of the last feature map{where} sees {largest} input pixels"
            else:
                seen = f"Units of the last feature map{where} see {smallest} to {largest} input pixels"
            inputs = field.get("input_size") or []
            coverage = [
                size / extent for size, extent in zip(sizes[1], inputs, strict=False)
                if isinstance(size, int | float) and isinstance(extent, int | float) and extent > 0
            ]
        if coverage and min(coverage) >= 1:
            share_text = ", the whole input"
        else:
            share_text = f", {_percent(min(coverage))} of the input" if coverage else ""
        if sizes is not None and sizes[0] != sizes[1] and share_text:
            share_text = ", up to" + share_text[1:]
        text += f" {seen}{share_text}, and neighbouring units are {format_field(axes, 'stride')} pixels apart."
    return text
