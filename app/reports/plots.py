"""The report's plots as standalone SVG and PNG (matplotlib, Agg backend).

Four plots, each drawn from the report dict alone (training curves from a
training run's per-step records):

- ``receptive_field``: the receptive-field size per spatial layer against the
  input size, with the effective stride;
- ``params_macs``: parameters and MACs per layer (log scale);
- ``gradient_flow``: predicted and measured gradient magnitude per layer (log scale);
- ``training``: loss (and any other per-step metric) against the step.

matplotlib is imported inside the functions, so importing this module is
cheap; no pyplot state is used (each plot owns its :class:`Figure`), which
keeps rendering safe in threads.

Example::

    >>> plot = plot_receptive_field(report)      # the seed's Example 3
    >>> plot.svg.startswith("<?xml"), plot.png[:4] == b"\\x89PNG"
    (True, True)
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.errors import BadRequest, NotFound
from app.reports.view import (
    Report,
    field_axes,
    is_global_field,
    leaf_layers,
    main_path,
    stage_of_layers,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_NAMES: tuple[str, ...] = ("receptive_field", "params_macs", "gradient_flow", "training", "effective_field")
"""Every plot convlens draws, in the order the page shows them."""

PLOT_FORMATS: tuple[str, ...] = ("svg", "png")

PALETTE = {
    "blue": "#2563eb",
    "orange": "#ea580c",
    "green": "#16a34a",
    "purple": "#7c3aed",
    "red": "#dc2626",
    "grey": "#6b7280",
    "light": "#e5e7eb",
}
AXIS_COLOURS = (PALETTE["blue"], PALETTE["purple"], PALETTE["green"])
MAX_NAMED_TICKS = 48
"""Above this many layers the x axis shows layer indices instead of names."""


@dataclass(frozen=True)
class RenderedPlot:
    """One plot in both formats.

    ``data_points`` is the number of layers (or training records) drawn;
    ``svg`` is a standalone SVG document; ``png`` is None when not requested.
    """

    name: str
    title: str
    svg: str | None
    png: bytes | None
    data_points: int

    def inline_svg(self) -> str:
        """The SVG without XML prolog and metadata, ready to inline in HTML."""
        return inline_svg(self.svg or "")


def inline_svg(document: str) -> str:
    """Strip the XML declaration, DOCTYPE and RDF metadata from an SVG document.

    >>> inline_svg('<?xml version="1.0"?>\\n<svg><metadata>x</metadata><g/></svg>')
    '<svg><g/></svg>'
    """
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", document)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    return text.strip()


# -- matplotlib plumbing ----------------------------------------------------------------------


def _matplotlib() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib


PLOT_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "convlens",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": "#374151",
    "axes.titleweight": "bold",
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.color": PALETTE["light"],
    "grid.linewidth": 0.6,
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "legend.frameon": False,
    "legend.fontsize": 8,
}
"""matplotlib settings for every convlens plot: text kept as text in SVG, no mathtext (layer
names are untrusted text: a name with ``$`` signs is drawn as written), stable ids.

They are applied once per process (:func:`_configure`) and never changed afterwards, so plots
render concurrently in threads without a lock: each owns its :class:`Figure` (no pyplot), and
ids are made unique per plot by :func:`namespace_ids`, not by a per-plot hash salt.
"""

_CONFIGURED = threading.Event()
_CONFIGURE_LOCK = threading.Lock()


def _configure() -> None:
    if _CONFIGURED.is_set():
        return
    with _CONFIGURE_LOCK:  # held once per process, at the first plot
        if not _CONFIGURED.is_set():
            matplotlib = _matplotlib()
            matplotlib.rcParams.update(PLOT_RC)
            _CONFIGURED.set()


@contextmanager
def _style(name: str) -> Iterator[None]:
    """Kept for the plot functions' shape: the settings are process-wide and constant."""
    del name
    _configure()
    yield


_ID = re.compile(r'\bid="([^"]+)"')
_REFERENCE = re.compile(r'(url\(#|href="#)([^)"]+)')


def namespace_ids(svg: str, prefix: str) -> str:
    """Prefix every id of an SVG document and every reference to one, so that several plots
    inlined in one page never share an id.

    >>> namespace_ids('<g id="a"><use xlink:href="#a"/><path clip-path="url(#a)"/></g>', "rf")
    '<g id="rf-a"><use xlink:href="#rf-a"/><path clip-path="url(#rf-a)"/></g>'
    """
    svg = _ID.sub(lambda match: f'id="{prefix}-{match.group(1)}"', svg)
    return _REFERENCE.sub(lambda match: f"{match.group(1)}{prefix}-{match.group(2)}", svg)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _render(
    figure: Figure, formats: Sequence[str], name: str = "plot"
) -> tuple[str | None, bytes | None]:
    svg: str | None = None
    png: bytes | None = None
    metadata = {"Date": None, "Creator": "convlens"}
    if "svg" in formats:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata=metadata)
        svg = namespace_ids(buffer.getvalue().decode("utf-8"), name.replace("_", "-"))
    if "png" in formats:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, metadata={"Software": "convlens"})
        png = buffer.getvalue()
    return svg, png


def _width_for(count: int) -> float:
    return max(10.5, min(15.0, 3.0 + 0.22 * count))


def _layer_ticks(
    axes: Axes, names: Sequence[str], stages: Sequence[int | None] | None = None
) -> None:
    """Layer names under the x axis when they fit; for larger models, the layers grouped by
    stage: a shaded band per stage labelled on top, the name of each stage's first layer as
    the tick, and the layer index as the axis label."""
    positions = list(range(len(names)))
    axes.set_xlim(-0.6, max(len(names) - 0.4, 0.6))
    if len(names) <= MAX_NAMED_TICKS:
        axes.set_xticks(positions)
        axes.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        _stage_bands(axes, stages, label=False)
        return
    starts = _stage_bands(axes, stages, label=True)
    if starts:
        axes.set_xticks([start for start, _ in starts])
        axes.set_xticklabels([names[start] for start, _ in starts], rotation=30, ha="right",
                             fontsize=7)
        axes.set_xlabel(f"layers in graph order ({len(names)}), ticks at each stage's first layer")
    else:
        axes.set_xlabel(f"layer index (of {len(names)})")


def _stage_bands(
    axes: Axes, stages: Sequence[int | None] | None, *, label: bool
) -> list[tuple[int, int]]:
    """Shade alternate stages and (``label``) name them above the plot; the stage starts."""
    if not stages:
        return []
    starts: list[tuple[int, int]] = []
    for position, stage in enumerate(stages):
        if stage is not None and (not starts or starts[-1][1] != stage):
            starts.append((position, stage))
    if len(starts) < 2:
        return starts
    bounds = [start for start, _ in starts] + [len(stages)]
    for number, (start, stage) in enumerate(starts):
        end = bounds[number + 1]
        if number % 2 == 1:
            axes.axvspan(start - 0.5, end - 0.5, color="#f3f4f6", zorder=0, linewidth=0)
        if label:
            narrow = (end - start) < 0.07 * len(stages)
            text = ("H" if narrow else "head") if stage == 0 else (
                f"{stage}" if narrow else f"stage {stage}")
            axes.text((start + end - 1) / 2, 1.01, text, transform=axes.get_xaxis_transform(),
                      ha="center", va="bottom", fontsize=7, color=PALETTE["grey"], clip_on=False)
    return starts


def _title(figure: Figure, title: str) -> None:
    """The plot's title above everything the layout places (stage labels included)."""
    figure.suptitle(title, x=0.01, ha="left", fontsize=10, fontweight="bold")


def _outside_legend(figure: Figure, axes: Axes, gid: str, *extra: Axes) -> None:
    """One legend for the figure, above the plot area (never over the data)."""
    handles, labels = axes.get_legend_handles_labels()
    for other in extra:
        more_handles, more_labels = other.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        legend = figure.legend(handles, labels, loc="outside upper right", ncols=min(len(labels), 4))
        legend.set_gid(gid)


def _count_label(value: float, _position: Any = None) -> str:
    """Tick labels people read: 1, 10, 100, 1k, 10k, 1M, 1G."""
    if value <= 0:
        return "0"
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:g}{suffix}"
    return f"{value:g}"


def _readable_log_axis(axes: Axes, base: float = 10) -> None:
    """Log-scale y axis with plain tick labels (mathtext is off for untrusted names)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.yaxis.set_major_locator(LogLocator(base=base))
    axes.yaxis.set_major_formatter(FuncFormatter(_count_label))
    axes.yaxis.set_minor_formatter(NullFormatter())


def _empty(axes: Axes, message: str) -> None:
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", color=PALETTE["grey"], wrap=True)


# -- receptive field ---------------------------------------------------------------------------


def plot_receptive_field(report: Report, *, formats: Sequence[str] = PLOT_FORMATS) -> RenderedPlot:
    """Receptive-field size along the main path against the input size.

    The layers of :func:`app.reports.view.main_path` (the widest field at every merge), one
    line per spatial axis (a single line when all axes agree), the input size as a dashed line,
    the effective stride on the right axis, stages shaded; layers whose units see the whole
    input (global pooling) are marked at the top. The legend sits above the plot.
    """
    stage_of = stage_of_layers(report)
    points: list[tuple[str, list[float] | None, list[float] | None]] = []
    stages: list[int | None] = []
    for flat in main_path(report):
        axes_field = field_axes(flat.layer)
        if axes_field is not None:
            sizes = [_as_float(axis.get("size")) for axis in axes_field]
            strides = [_as_float(axis.get("stride")) for axis in axes_field]
            points.append((flat.qualified_name, sizes, strides))
        elif is_global_field(flat.layer):
            points.append((flat.qualified_name, None, None))
        else:
            continue
        stages.append(stage_of.get(flat.name))

    summary_field = report.get("receptive_field") or {}
    input_size = [
        size for size in (summary_field.get("input_size") or []) if isinstance(size, int | float)
    ]
    title = "Receptive field along the main path"
    with _style("receptive_field"):
        figure = _figure(_width_for(len(points)), 4.6)
        axes = figure.add_subplot()
        axes.set_gid("receptive-field-axes")
        if not points:
            _empty(axes, "No spatial layers: the model has no receptive field to draw.")
        else:
            stride_axes = _draw_receptive_field(axes, points, input_size, stages)
            _outside_legend(figure, axes, "receptive-field-legend", stride_axes)
        _title(figure, title)
        svg, png = _render(figure, formats, "receptive_field")
    return RenderedPlot("receptive_field", title, svg, png, len(points))


def _draw_receptive_field(
    axes: Axes,
    points: Sequence[tuple[str, list[float] | None, list[float] | None]],
    input_size: Sequence[float],
    stages: Sequence[int | None],
) -> Axes:
    names = [name for name, _, _ in points]
    axis_count = max((len(sizes) for _, sizes, _ in points if sizes), default=0)
    per_axis = [
        [sizes[i] if sizes and i < len(sizes) else math.nan for _, sizes, _ in points]
        for i in range(axis_count)
    ]
    identical = all(_same(series, per_axis[0]) for series in per_axis)
    labels = ["height", "width", "depth"] if axis_count > 1 else ["length"]
    x = list(range(len(points)))
    marker_size = 4 if len(points) <= 120 else 2
    if identical and per_axis:
        axes.plot(
            x,
            per_axis[0],
            marker="o",
            markersize=marker_size,
            color=AXIS_COLOURS[0],
            label="receptive field" + (" (all axes)" if axis_count > 1 else ""),
        )
    else:
        for i, series in enumerate(per_axis):
            axes.plot(
                x,
                series,
                marker="o",
                markersize=marker_size,
                color=AXIS_COLOURS[i % 3],
                label=f"receptive field, {labels[i] if i < len(labels) else f'axis {i}'}",
            )

    top = max(
        [value for series in per_axis for value in series if not math.isnan(value)]
        + list(input_size)
        + [1.0]
    )
    for i, size in enumerate(dict.fromkeys(input_size)):
        axes.axhline(
            size,
            color=PALETTE["orange"],
            linestyle="--",
            linewidth=1.2,
            label=f"input size {_fmt(size)}" if i == 0 else f"input size {_fmt(size)} ",
        )
    global_x = [i for i, (_, sizes, _) in enumerate(points) if sizes is None]
    if global_x:
        axes.scatter(
            global_x,
            [top] * len(global_x),
            marker="^",
            s=40,
            color=PALETTE["red"],
            zorder=5,
            label="sees the whole input (global)",
        )
    axes.set_ylabel("receptive field (input pixels)")
    smallest = min(
        [value for series in per_axis for value in series if not math.isnan(value) and value > 0]
        + [top]
    )
    if top / smallest > 16:
        # Fields grow geometrically through a network: log scale keeps early layers visible.
        axes.set_yscale("log", base=2)
        _readable_log_axis(axes, base=2)
        axes.set_ylim(max(smallest / 1.5, 0.5), top * 1.6)
    else:
        axes.set_ylim(0, top * 1.12)

    stride_axes = axes.twinx()
    strides = [strides[0] if strides else math.nan for _, _, strides in points]
    stride_axes.step(
        x,
        strides,
        where="mid",
        color=PALETTE["grey"],
        linewidth=1,
        alpha=0.8,
        label="effective stride",
    )
    stride_axes.set_ylabel("effective stride", color=PALETTE["grey"])
    stride_axes.grid(False)
    stride_axes.spines["right"].set_visible(True)
    finite = [value for value in strides if not math.isnan(value)]
    stride_axes.set_ylim(0, (max(finite) if finite else 1) * 1.25)
    _layer_ticks(axes, names, stages)
    return stride_axes


# -- parameters and MACs -----------------------------------------------------------------------


def params_macs_layers(report: Report) -> list[Any]:
    """The layers the parameters/MACs chart shows: those that hold weights or compute (MACs),
    normalization layers left out when the model has more than :data:`MAX_NAMED_TICKS` of them
    (their parameters are a rounding error next to the convolutions they follow)."""
    from app.analysis.rules import traits_of
    from app.analysis.traits import Trait

    rows = [flat for flat in leaf_layers(report) if flat.class_name != "InputLayer"]
    weighted = [
        flat
        for flat in rows
        if (_as_float(flat.layer.get("params")) or 0) > 0
        or (_as_float(flat.layer.get("macs")) or 0) > 0
        or not isinstance(flat.layer.get("params"), int)
    ]
    if len(weighted) > MAX_NAMED_TICKS:
        weighted = [
            flat for flat in weighted if Trait.NORMALIZATION not in traits_of(flat.class_name)
        ]
    return weighted if len(rows) > MAX_NAMED_TICKS else rows


def plot_params_macs(report: Report, *, formats: Sequence[str] = PLOT_FORMATS) -> RenderedPlot:
    """Parameters and MACs per layer as two bar charts sharing the layer axis (log scale).

    Small models show every layer by name; larger ones the layers that hold weights or compute,
    grouped by stage (shaded, labelled on top, each stage's first layer named).
    """
    rows = params_macs_layers(report)
    stage_of = stage_of_layers(report)
    names = [flat.qualified_name for flat in rows]
    stages = [stage_of.get(flat.name) for flat in rows]
    params = [_as_float(flat.layer.get("params")) for flat in rows]
    macs = [_as_float(flat.layer.get("macs")) for flat in rows]
    title = "Parameters and MACs per layer"
    total = len([flat for flat in leaf_layers(report) if flat.class_name != "InputLayer"])
    if len(rows) < total:
        title += f" ({len(rows)} of {total} layers: those with weights or compute)"
    with _style("params_macs"):
        figure = _figure(_width_for(len(rows)), 5.8)
        top, bottom = figure.subplots(2, 1, sharex=True)
        top.set_gid("params-macs-axes-params")
        bottom.set_gid("params-macs-axes-macs")
        if not rows:
            _empty(top, "The model has no layers.")
            bottom.set_axis_off()
        else:
            _bars(top, params, PALETTE["blue"], "parameters")
            _bars(bottom, macs, PALETTE["orange"], "MACs per sample")
            _stage_bands(top, stages, label=False)
            _layer_ticks(bottom, names, stages)
            _outside_legend(figure, top, "params-macs-legend", bottom)
        _title(figure, title)
        svg, png = _render(figure, formats, "params_macs")
    return RenderedPlot("params_macs", title, svg, png, len(rows))


BARS_AS_ONE_SHAPE_ABOVE = 150
"""From this many bars a chart draws them as one shape (a collection) instead of one patch
each: the same picture, several times faster to lay out and much smaller as SVG."""


def _bars(axes: Axes, values: Sequence[float], colour: str, label: str) -> None:
    x = list(range(len(values)))
    known = [0.0 if math.isnan(value) else value for value in values]
    use_log = max(known, default=0.0) > 0
    if len(values) > BARS_AS_ONE_SHAPE_ABOVE:
        from matplotlib.collections import PolyCollection

        floor, half = (0.8 if use_log else 0.0), 0.375
        shapes = [[(i - half, floor), (i - half, v), (i + half, v), (i + half, floor)]
                  for i, v in enumerate(known) if v > floor]
        axes.add_collection(PolyCollection(shapes, facecolors=colour, edgecolors="none", label=label))
        if use_log:
            axes.set_yscale("log")
        axes.set_xlim(-0.5, len(values) - 0.5)
        axes.set_ylim(floor, max(max(known, default=1.0), 1.0) * (2.0 if use_log else 1.05))
    else:
        axes.bar(x, known, color=colour, width=0.75, log=use_log, label=label)
    unknown = [i for i, value in enumerate(values) if math.isnan(value)]
    if unknown:
        axes.scatter(
            unknown,
            [1.0] * len(unknown),
            marker="x",
            color=PALETTE["red"],
            label=f"{label}: unknown",
        )
    axes.set_ylabel(label)
    if use_log:
        axes.set_ylim(bottom=0.8)
        _readable_log_axis(axes)


# -- gradient flow -----------------------------------------------------------------------------

GRADIENT_VALUE_KEYS: tuple[str, ...] = (
    "relative_gradient_scale",
    "relative_gradient",
    "gradient_scale",
    "grad_norm",
    "gradient_norm",
    "norm",
    "mean_abs",
    "value",
)
"""Per-layer keys read as the gradient magnitude, first present wins."""


def gradient_series(block: Any) -> list[tuple[str, float]]:
    """(layer, magnitude) pairs from a predicted or measured gradient-flow block.

    Accepts ``{"layers": [{"name": ..., <magnitude key>: ...}, ...]}`` or a
    ``{"layers": {name: magnitude | {...}}}`` mapping, the two shapes the
    predictor and the worker emit.

    >>> gradient_series({"layers": [{"name": "c1", "gradient_scale": 0.5}]})
    [('c1', 0.5)]
    """
    if not isinstance(block, Mapping):
        return []
    # ``per_layer`` is the report's quantity, weighted layers only (both sides); ``layers`` is
    # the older shape (a measurement's ``layers`` also lists normalizations: not plotted).
    layers = block.get("per_layer")
    if layers is None:
        layers = block.get("layers")
    series: list[tuple[str, float]] = []
    if isinstance(layers, Mapping):
        items: list[tuple[str, Any]] = list(layers.items())
    elif isinstance(layers, list):
        items = [
            (str(entry.get("name", entry.get("layer", ""))), entry)
            for entry in layers
            if isinstance(entry, Mapping)
        ]
    else:
        return []
    for name, entry in items:
        value = entry if isinstance(entry, int | float) else _first_number(entry)
        if value is not None and math.isfinite(value):
            series.append((str(name), float(value)))
    return series


def relative_to_last(series: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Divide by the last positive value, so that predicted and measured share one scale.

    >>> relative_to_last([("a", 0.5), ("b", 2.0)])
    [('a', 0.25), ('b', 1.0)]
    """
    reference = next((value for _, value in reversed(series) if value > 0), None)
    if reference is None:
        return list(series)
    return [(name, value / reference) for name, value in series]


def _first_number(entry: Any) -> float | None:
    if not isinstance(entry, Mapping):
        return None
    for key in GRADIENT_VALUE_KEYS:
        value = entry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _gradient_log_axis(axes: Axes, values: Sequence[float]) -> None:
    """A log y axis with at least three labelled ticks: decades when the values span several,
    1-2-5 steps when they span less (a single "1" tick says nothing)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [value for value in values if value > 0]
    low, high = (min(positive), max(positive)) if positive else (0.1, 10.0)
    decades = math.log10(high) - math.log10(low)
    if decades < 2:
        subs: tuple[float, ...] = (1.0, 2.0, 5.0)
        axes.set_ylim(10 ** (math.log10(low) - 0.5), 10 ** (math.log10(high) + 0.5))
    else:
        subs = (1.0,)
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    axes.yaxis.set_major_formatter(FuncFormatter(_ratio_label))
    axes.yaxis.set_minor_formatter(NullFormatter())


def _ratio_label(value: float, _position: Any = None) -> str:
    """Tick labels for ratios: 0.01, 0.1, 1, 10, 100, then 1e-05 / 1e+06 style.

    >>> [_ratio_label(v) for v in (1e-6, 0.02, 1.0, 500.0, 1e7)]
    ['1e-06', '0.02', '1', '500', '1e+07']
    """
    if value <= 0:
        return "0"
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    return f"{value:.0e}"


def plot_gradient_flow(report: Report, *, formats: Sequence[str] = PLOT_FORMATS) -> RenderedPlot:
    """Predicted and measured gradient per weighted layer, both the report's one quantity
    relative to the last weighted layer, overlaid by layer name (input side on the left, log
    scale), with the verdicts of both in the corner."""
    flow = report.get("gradient_flow") or {}
    predicted = relative_to_last(gradient_series(flow.get("predicted")))
    measured = relative_to_last(gradient_series(flow.get("measured")))
    order = [name for name, _ in predicted]
    order += [name for name, _ in measured if name not in set(order)]
    title = "Gradient flow per layer"
    with _style("gradient_flow"):
        figure = _figure(_width_for(len(order)), 4.2)
        axes = figure.add_subplot()
        if not order:
            _empty(axes, "No per-layer gradient figures in this report.")
        else:
            position = {name: i for i, name in enumerate(order)}
            for series, colour, label, marker in (
                (predicted, PALETTE["blue"], "predicted", "o"),
                (measured, PALETTE["orange"], "measured", "s"),
            ):
                positive = [(position[name], value) for name, value in series if value > 0]
                if positive:
                    axes.plot(
                        [p for p, _ in positive],
                        [v for _, v in positive],
                        marker=marker,
                        markersize=4,
                        color=colour,
                        label=label,
                    )
            axes.set_yscale("log")
            _gradient_log_axis(axes, [v for _, v in predicted] + [v for _, v in measured])
            axes.set_ylabel("gradient (first weighted layer on the left) / last layer's")
            verdicts = []
            for side in ("predicted", "measured"):
                block = flow.get(side)
                if isinstance(block, Mapping) and block.get("verdict"):
                    verdicts.append(f"{side}: {block['verdict']}")
            if verdicts:
                axes.text(
                    0.99,
                    0.97,
                    "   ".join(verdicts),
                    transform=axes.transAxes,
                    ha="right",
                    va="top",
                    color=PALETTE["grey"],
                )
            stage_of = stage_of_layers(report)
            _layer_ticks(axes, order, [stage_of.get(name) for name in order])
            axes.legend(loc="upper left")
        axes.set_title(title, loc="left")
        svg, png = _render(figure, formats, "gradient_flow")
    return RenderedPlot("gradient_flow", title, svg, png, len(order))


# -- training curves ---------------------------------------------------------------------------

NON_METRIC_KEYS = frozenset(
    {
        "step",
        "steps",
        "epoch",
        "time",
        "elapsed_s",
        "eta_s",
        "timestamp",
        "batch",
        "seq",
        "step_time_s",
        "probe",
        "wall_time",
    }
)
PREFERRED_METRICS = ("accuracy", "grad_global_norm")
MAX_METRIC_PANELS = 2


def training_records(
    result: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Per-step records from a training run: its step events, or its result's ``history``.

    >>> training_records({"history": {"loss": [2.0, 1.5], "accuracy": [0.1, 0.3]}})
    [{'step': 1, 'loss': 2.0, 'accuracy': 0.1}, {'step': 2, 'loss': 1.5, 'accuracy': 0.3}]
    """
    if result is None:
        return []
    if isinstance(result, Sequence) and not isinstance(result, str | bytes):
        return [dict(row) for row in result if isinstance(row, Mapping)]
    history = result.get("history") if isinstance(result, Mapping) else None
    if not isinstance(history, Mapping):
        return []
    columns = {key: values for key, values in history.items() if isinstance(values, list)}
    length = max((len(values) for values in columns.values()), default=0)
    records = []
    for index in range(length):
        row: dict[str, Any] = {"step": index + 1}
        for key, values in columns.items():
            if index < len(values):
                row[key] = values[index]
        records.append(row)
    return records


def plot_training(
    records: Sequence[Mapping[str, Any]] | None, *, formats: Sequence[str] = PLOT_FORMATS
) -> RenderedPlot:
    """Loss against the step, and up to two more per-step metrics in panels below.

    ``records`` are a training run's per-step records, e.g.
    ``[{"step": 1, "loss": 2.3, "accuracy": 0.1}, ...]`` (see :func:`training_records`).
    """
    rows = [row for row in (records or []) if isinstance(row, Mapping)]
    steps = [_as_float(row.get("step", i + 1)) for i, row in enumerate(rows)]
    candidates = [
        key
        for key in dict.fromkeys(k for row in rows for k in row)
        if key not in NON_METRIC_KEYS
        and key != "loss"
        and any(_is_number(row.get(key)) for row in rows)
    ]
    candidates.sort(
        key=lambda key: (
            PREFERRED_METRICS.index(key) if key in PREFERRED_METRICS else len(PREFERRED_METRICS)
        )
    )
    metric_names = candidates[:MAX_METRIC_PANELS]
    title = "Training curves"
    colours = (PALETTE["orange"], PALETTE["green"], PALETTE["purple"])
    with _style("training"):
        panels = 1 + len(metric_names)
        figure = _figure(10.5, 3.0 + 2.2 * (panels - 1))
        axes_list = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
        loss_axes = axes_list[0]
        if not rows:
            _empty(loss_axes, "No training run yet.")
        else:
            loss = [_as_float(row.get("loss")) for row in rows]
            loss_axes.plot(steps, loss, color=PALETTE["blue"], linewidth=1.4, label="loss")
            finite = [value for value in loss if value > 0 and math.isfinite(value)]
            if finite and max(finite) / min(finite) > 50:
                loss_axes.set_yscale("log")
                _readable_log_axis(loss_axes)
            loss_axes.set_ylabel("loss")
            for i, key in enumerate(metric_names):
                panel = axes_list[i + 1]
                values = [_as_float(row.get(key)) for row in rows]
                panel.plot(steps, values, color=colours[i % 3], linewidth=1.2)
                panel.set_ylabel(key.replace("_", " "))
                positive = [v for v in values if v > 0 and math.isfinite(v)]
                if key.endswith("norm") and positive and max(positive) / min(positive) > 50:
                    panel.set_yscale("log")
                    _readable_log_axis(panel)
            axes_list[-1].set_xlabel("step")
        loss_axes.set_title(title, loc="left")
        svg, png = _render(figure, formats, "training")
    return RenderedPlot("training", title, svg, png, len(rows))


# -- dispatch ----------------------------------------------------------------------------------

def plot_effective_field(report: Report, *, formats: Sequence[str] = PLOT_FORMATS) -> RenderedPlot:
    """The measured effective receptive field: a heat map per layer with its theoretical field
    (:mod:`app.reports.effective_field`; an empty panel until a job measured it)."""
    from app.reports.effective_field import draw_effective_field

    return draw_effective_field(report, formats=formats)


_REPORT_PLOTS: dict[str, Callable[..., RenderedPlot]] = {
    "receptive_field": plot_receptive_field,
    "params_macs": plot_params_macs,
    "gradient_flow": plot_gradient_flow,
    "effective_field": plot_effective_field,
}


def render_plot(
    name: str,
    report: Report,
    *,
    training: Sequence[Mapping[str, Any]] | None = None,
    formats: Sequence[str] = PLOT_FORMATS,
) -> RenderedPlot:
    """The plot called ``name`` (one of :data:`PLOT_NAMES`).

    Raises :class:`app.errors.NotFound` for an unknown name and
    :class:`app.errors.BadRequest` for an unknown format.
    """
    unknown = [fmt for fmt in formats if fmt not in PLOT_FORMATS]
    if unknown:
        raise BadRequest(
            f"Plots come as {', '.join(PLOT_FORMATS)}. Received: format={unknown[0]!r}"
        )
    if name == "training":
        return plot_training(training, formats=formats)
    if name not in _REPORT_PLOTS:
        raise NotFound(f"There is no plot called {name!r}; plots: {', '.join(PLOT_NAMES)}.")
    return _REPORT_PLOTS[name](report, formats=formats)


def available_plots(
    report: Report, training: Sequence[Mapping[str, Any]] | None = None
) -> list[str]:
    """The plots worth drawing for this report (training only when a run exists)."""
    names = ["receptive_field", "params_macs"]
    flow = report.get("gradient_flow") or {}
    if gradient_series(flow.get("predicted")) or gradient_series(flow.get("measured")):
        names.append("gradient_flow")
    if training:
        names.append("training")
    return names


# -- small helpers -----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
