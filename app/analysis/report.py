"""Turning an :class:`AnalysisResult` into the report dict (schema 1.0).

The report is plain JSON (dict/list/str/int/float/bool/None). Totals are
sums over the layers Keras lists in ``model.layers`` (nested models count
their own layers once); when a layer's value is unknown the total is the sum
of the known values and ``summary.incomplete`` plus ``coverage.metrics``
say so, never a silent zero.

Example::

    >>> report = build_report(analyze_graph(build_graph(config)))   # doctest: +SKIP
    >>> report["summary"]["flops"] == 2 * report["summary"]["macs"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

from app.analysis import findings as findings_module
from app.analysis import gradient_flow as gradient_flow_module
from app.analysis.engine import dtype_bytes, fraction_to_json
from app.analysis.graph import AnalysisResult, AxisField, LayerResult, ReceptiveField, Shape

SCHEMA_VERSION = "2.0"
FLOPS_DEFINITION = (
    "FLOPs = 2 x MACs. MACs are the forward multiply-accumulates per sample of layers with "
    "weights (convolutions, dense, recurrent, attention) and of Dot/matmul; bias additions, "
    "activations, normalizations, pooling and element-wise merges count 0."
)
logger = logging.getLogger(__name__)
MISALIGNED_SHOWN = 3
"""Misaligned branch pairs stated per field and per merge (the worst first); the count says how
many there are, and ``GET /v1/analyses/{id}/misaligned`` lists them all."""


def shape_json(shape: Shape | None) -> list[int | None] | None:
    return None if shape is None else list(shape)


def output_shape_json(shapes: list[Shape | None]) -> Any:
    """One output: a list with the batch dim (null); several: a list of such lists."""
    if len(shapes) == 1:
        return shape_json(shapes[0])
    return [shape_json(s) for s in shapes]


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
    body: dict[str, Any] = {
        "axes": [_axis_json(axis) for axis in field.axes],
        "global": field.is_global,
    }
    if field.misaligned:
        pairs = [pair.split("|") for pair in field.misaligned]
        body["misaligned"] = pairs[:MISALIGNED_SHOWN]
        if len(pairs) > MISALIGNED_SHOWN:
            body["misaligned_count"] = len(pairs)
    return body


def _axis_json(axis: AxisField) -> dict[str, Any]:
    size, stride, padding = axis.size, axis.stride, axis.padding
    if type(size) is int and type(stride) is int and (padding is None or type(padding) is int):
        return {"size": size, "stride": stride, "padding": padding}
    return {
        "size": fraction_to_json(size),
        "stride": fraction_to_json(stride),
        "padding": fraction_to_json(padding),
    }


def layer_json(layer: LayerResult) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": layer.name,
        "class_name": layer.class_name,
        "inbound": list(layer.inbound),
        "output_shape": output_shape_json(layer.output_shapes),
        "params": layer.params,
        "trainable_params": layer.trainable_params,
        "non_trainable_params": layer.non_trainable_params,
        "macs": layer.macs,
        "activation_bytes": layer.activation_bytes,
        "receptive_field": field_json(layer.receptive_field),
        "activation": layer.activation,
        "calls": max(len(layer.call_output_shapes), 1 if layer.class_name == "InputLayer" else 0),
        "supported": not layer.unsupported,
    }
    if layer.notes:
        entry["notes"] = list(layer.notes)
    if layer.subresult is not None:
        entry["layers"] = [layer_json(sub) for sub in layer.subresult.listed_layers]
    return entry


def _total(values: list[int | None]) -> tuple[int, bool]:
    known = [v for v in values if v is not None]
    return sum(known), len(known) < len(values)


def _spatial_input(result: AnalysisResult, channels_first: bool) -> tuple[str | None, list[int | None] | None]:
    for name, shape in zip(result.input_layers, result.input_shapes, strict=False):
        if shape is not None and len(shape) >= 3:
            dims = list(shape[2:]) if channels_first else list(shape[1:-1])
            return name, dims
    return None, None


def receptive_field_summary(result: AnalysisResult) -> dict[str, Any]:
    """The last spatial feature map's field and how much of the input it covers."""
    channels_first = any(
        layer.node.config.get("data_format") == "channels_first" for layer in result.layers
    )
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
            coverage.append(None if size is None else round(float(Fraction(axis.size) / size), 4))
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
    inherited: set[str] = set()
    out: list[dict[str, Any]] = []
    by_name = result.by_name()
    for entry in result.misaligned:
        layer = by_name.get(entry["layer"])
        upstream: set[str] = set()
        if layer is not None:
            for name in layer.inbound:
                source = by_name.get(name)
                if source is not None and source.receptive_field is not None:
                    upstream.update(source.receptive_field.misaligned)
        new = [pair for pair in entry["branches"] if pair not in upstream]
        inherited.update(entry["branches"])
        if not new:
            continue
        ranked = sorted(new, key=lambda pair: -_centre_offset(result, pair))
        shown = ranked if full else ranked[:MISALIGNED_SHOWN]
        item: dict[str, Any] = {
            "layer": entry["layer"],
            "branches": [pair.split("|") for pair in shown],
            "pair_count": len(new),
            "max_offset": round(_centre_offset(result, ranked[0]), 4),
        }
        out.append(item)
    return out


def _safe_call(what: str, function: Any, result: AnalysisResult, fallback: Any) -> tuple[Any, str | None]:
    try:
        return function(result), None
    except Exception as error:  # a defect there must not cost the user the rest of the report
        logger.exception("%s failed", what)
        return fallback, f"{what} failed: {type(error).__name__}: {error}"


def build_report(result: AnalysisResult, *, name: str | None = None) -> dict[str, Any]:
    listed = result.listed_layers
    total, params_partial = _total([layer.params for layer in listed])
    trainable, _ = _total([layer.trainable_params for layer in listed])
    non_trainable, _ = _total([layer.non_trainable_params for layer in listed])
    macs, macs_partial = _total([layer.macs for layer in result.layers])
    activation, activation_partial = _total([layer.activation_bytes for layer in result.layers])
    param_bytes = 0
    for layer in _all_layers(result):
        if layer.params and layer.subresult is None:
            param_bytes += layer.params * dtype_bytes(layer.node.config)[1]
    incomplete = [
        metric
        for metric, partial in (
            ("params", params_partial), ("macs", macs_partial), ("activation_bytes", activation_partial),
        )
        if partial
    ]
    predicted, gradient_error = _safe_call(
        "gradient-flow prediction", gradient_flow_module.predict, result,
        {"verdict": None, "status": "not_computed"},
    )
    findings, findings_error = _safe_call("findings", findings_module.find, result, [])
    metrics = {key: {"status": value.status, "reason": value.reason} for key, value in result.metrics.items()}
    if gradient_error or not isinstance(predicted, dict) or predicted.get("verdict") is None:
        reason = gradient_error or (
            predicted.get("reason") if isinstance(predicted, dict) and predicted.get("reason") else
            "gradient flow could not be predicted"
        )
        metrics["gradient_flow"] = {"status": "partial", "reason": reason}
    else:
        metrics["gradient_flow"] = {"status": "complete", "reason": None}
    if findings_error:
        metrics["findings"] = {"status": "partial", "reason": findings_error}
    unsupported = [{"name": n, "class_name": c} for n, c in result.unsupported]
    status = "complete" if all(m["status"] == "complete" for m in metrics.values()) and not unsupported else "partial"
    return {
        "schema_version": SCHEMA_VERSION,
        "model_name": name or result.model_name,
        "summary": {
            "total_params": total,
            "trainable_params": trainable,
            "non_trainable_params": non_trainable,
            "macs": macs,
            "flops": 2 * macs,
            "flops_definition": FLOPS_DEFINITION,
            "activation_bytes": activation,
            "param_bytes": param_bytes,
            "input_shapes": [shape_json(s) for s in result.input_shapes],
            "output_shapes": [shape_json(s) for s in result.output_shapes],
            "layer_count": len(listed),
            "incomplete": incomplete,
        },
        "layers": [layer_json(layer) for layer in listed],
        "receptive_field": receptive_field_summary(result),
        "gradient_flow": {"quantity": gradient_flow_module.QUANTITY, "predicted": predicted,
                          "measured": None},
        "findings": findings if isinstance(findings, list) else [],
        "coverage": {"status": status, "unsupported_layers": unsupported, "metrics": metrics},
    }


def _all_layers(result: AnalysisResult) -> list[LayerResult]:
    """Every layer result, nested models expanded (iteratively)."""
    out: list[LayerResult] = []
    stack = [result]
    while stack:
        current = stack.pop()
        for layer in current.layers:
            out.append(layer)
            if layer.subresult is not None:
                stack.append(layer.subresult)
    return out
