"""The measured effective receptive field in the report: one heat map per measured layer with
the unit's theoretical field drawn on it, and the numbers as table rows.

The theoretical field (the box) is what can matter to the unit; the heat map is what does:
the mean absolute gradient of the unit with respect to each input pixel (``report
["effective_field"]``, written by the ``effective_field`` job). Reports without a measurement
draw an empty panel that says so.

Example::

    >>> report = {"effective_field": {"status": "measured", "input_size": [4, 4], "mass": 0.95,
    ...     "layers": [{"layer": "c", "field_box": [[0, 2], [0, 2]], "visible_field_size": [3, 3],
    ...                 "size95": [1, 1], "fraction": [0.33, 0.33], "radius95": 0.0, "area95": 1,
    ...                 "area_fraction": 0.11, "centre_offset": [0.0, 0.0], "field_clipped": False,
    ...                 "heatmap": {"cell": [1, 1], "values": [[1.0, 0, 0, 0]] + [[0.0] * 4] * 3}}]}}
    >>> [(row["layer"], row["field"], row["core"], row["share"]) for row in effective_field_rows(report)]
    [('c', '3×3', '1×1', '11%')]
    >>> draw_effective_field(report, formats=("svg",)).data_points
    1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.reports.plots import PALETTE, PLOT_FORMATS, RenderedPlot, _empty, _figure, _render, _style
from app.reports.view import Report

TITLE = "Effective receptive field"
CAPTION = (
    "What matters to a unit, beside what can. The box is the centre unit's theoretical receptive "
    "field (every input pixel that can change it); the heat map is how much each pixel does change it "
    "(mean absolute input gradient over random inputs), the dashed circle holds 95% of that influence. "
    "In deep networks the influence is a roughly Gaussian core that fills a shrinking share of a growing field."
)
MAX_PANELS = 8


def measured_effective_field(report: Report) -> Mapping[str, Any] | None:
    """The report's measured effective field (None when not measured or the job failed)."""
    block = report.get("effective_field")
    if isinstance(block, Mapping) and block.get("status") == "measured" and isinstance(block.get("layers"), list):
        return block
    return None


def _axes_text(values: Any, unit: str = "") -> str:
    if not isinstance(values, list) or not values:
        return "–"
    return "×".join(f"{value:g}" if isinstance(value, int | float) else "?" for value in values) + unit


def _percent(value: Any) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, int | float) else "–"


def effective_field_rows(report: Report) -> list[dict[str, Any]]:
    """Table rows: theoretical field, the core holding 95% per axis, its share of the field."""
    block = measured_effective_field(report)
    if block is None:
        return []
    rows = []
    for row in block["layers"]:
        if not isinstance(row, Mapping):
            continue
        box = row.get("field_box") or []
        theoretical = [last - first + 1 for first, last in box] if box else None
        offset = row.get("centre_offset")
        rows.append(
            {
                "layer": str(row.get("layer")),
                "field": _axes_text(theoretical),
                "visible": _axes_text(row.get("visible_field_size")),
                "clipped": bool(row.get("field_clipped")),
                "core": _axes_text(row.get("size95")),
                "fraction": _axes_text([round(100 * v) for v in row.get("fraction") or [] if v is not None], "%"),
                "share": _percent(row.get("area_fraction")),
                "radius": f"{row['radius95']:g}" if isinstance(row.get("radius95"), int | float) else "–",
                "offset": ", ".join(f"{v:+.1f}" for v in offset) if isinstance(offset, list) else "–",
                "note": row.get("note"),
            }
        )
    return rows


def effective_field_context(report: Report) -> dict[str, Any] | None:
    """What the report page shows of the effective field, or None when the report has none."""
    block = report.get("effective_field")
    if not isinstance(block, Mapping):
        return None
    if block.get("status") != "measured":
        return {"status": "failed", "reason": str(block.get("reason") or "the measurement failed")}
    from app.reports.html import trusted_svg

    return {
        "status": "measured",
        "svg": trusted_svg(draw_effective_field(report, formats=("svg",)).inline_svg()),
        "rows": effective_field_rows(report),
        "caption": CAPTION,
        "samples": block.get("samples"),
        "weights": block.get("weights"),
        "input_size": _axes_text(block.get("input_size")),
    }


def draw_effective_field(report: Report, *, formats: Sequence[str] = PLOT_FORMATS) -> RenderedPlot:
    """One heat map per measured layer (the input, scaled to each map's maximum) with the
    unit's theoretical field as a box and the 95% radius as a dashed circle."""
    from matplotlib.patches import Circle, Rectangle

    block = measured_effective_field(report)
    rows = [row for row in (block or {}).get("layers", []) if isinstance(row, Mapping)][:MAX_PANELS]
    with _style("effective_field"):
        count = max(1, len(rows))
        figure = _figure(min(15.0, 2.6 * count + 0.6), 3.6)
        panels = figure.subplots(1, count, squeeze=False)[0]
        if not rows:
            _empty(panels[0], "not measured: POST /v1/analyses/{id}/effective-field")
        height, width = (block or {}).get("input_size") or [1, 1]
        for index, (axes, row) in enumerate(zip(panels, rows, strict=False)):
            heatmap = row.get("heatmap") or {}
            values = heatmap.get("values") or [[0.0]]
            cell = heatmap.get("cell") or [1, 1]
            extent = (0, len(values[0]) * cell[1], len(values) * cell[0], 0)
            axes.imshow(values, cmap="magma", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")
            axes.set_xlim(0, width)
            axes.set_ylim(height, 0)
            axes.grid(False)
            box = row.get("field_box") or [[0, 0], [0, 0]]
            (top, bottom), (left, right) = box
            axes.add_patch(Rectangle((left, top), right - left + 1, bottom - top + 1, fill=False,
                                     edgecolor=PALETTE["blue"], linewidth=1.6, gid=f"theoretical-field-{index}"))
            centre, radius = row.get("centre"), row.get("radius95")
            if isinstance(centre, list) and isinstance(radius, int | float):
                axes.add_patch(Circle((centre[1] + 0.5, centre[0] + 0.5), radius + 0.5, fill=False,
                                      edgecolor="#ffffff", linestyle="--", linewidth=1.0,
                                      gid=f"effective-field-{index}"))
            theoretical = [last - first + 1 for first, last in box]
            axes.set_title(str(row.get("layer")), fontsize=9)
            clipped = " (past the input)" if row.get("field_clipped") else ""
            axes.set_xlabel(f"field {_axes_text(theoretical)} px{clipped}\n95% in {_axes_text(row.get('size95'))} px"
                            f" ({_percent(row.get('area_fraction'))} of its area)", fontsize=8)
            axes.tick_params(labelsize=7)
        svg, png = _render(figure, formats, "effective_field")
    return RenderedPlot("effective_field", TITLE, svg, png, len(rows))
