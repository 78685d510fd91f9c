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

import gc
import logging
from typing import Any

from app.analysis import findings as findings_module
from app.analysis import gradient_flow as gradient_flow_module
from app.analysis.engine import READ_ERRORS, InputShapeOverride, analyze_graph
from app.analysis.fields import (
    field_json,
    receptive_field_summary,
)
from app.analysis.graph import AnalysisResult, LayerResult, Shape
from app.analysis.parse import build_graph
from app.errors import InvalidArchitecture

SCHEMA_VERSION = "2.0"
FLOPS_DEFINITION = (
    "FLOPs = 2 x MACs. MACs are the forward multiply-accumulates per sample of layers with "
    "weights (convolutions, dense, recurrent, attention) and of Dot/matmul; bias additions, "
    "activations, normalizations, pooling and element-wise merges count 0."
)
logger = logging.getLogger(__name__)


def shape_json(shape: Shape | None) -> list[int | None] | None:
    return None if shape is None else list(shape)


def output_shape_json(shapes: list[Shape | None]) -> Any:
    """One output: a list with the batch dim (null); several: a list of such lists."""
    if len(shapes) == 1:
        return shape_json(shapes[0])
    return [shape_json(s) for s in shapes]


def layer_json(layer: LayerResult) -> dict[str, Any]:
    shapes = layer.output_shapes
    if len(shapes) == 1:  # output_shape_json of the usual single output, without the call
        output_shape: Any = None if shapes[0] is None else list(shapes[0])
    else:
        output_shape = output_shape_json(shapes)
    calls = len(layer.call_output_shapes)
    if not calls and layer.class_name == "InputLayer":
        calls = 1  # a model input is not called: it is one tensor all the same
    entry: dict[str, Any] = {
        "name": layer.name,
        "class_name": layer.class_name,
        "inbound": list(layer.inbound),
        "output_shape": output_shape,
        "params": layer.params,
        "trainable_params": layer.trainable_params,
        "non_trainable_params": layer.non_trainable_params,
        "macs": layer.macs,
        "activation_bytes": layer.activation_bytes,
        "receptive_field": field_json(layer.receptive_field),
        "activation": layer.activation,
        "calls": calls,
        "supported": not layer.unsupported,
    }
    if layer.notes:
        entry["notes"] = list(layer.notes)
    if layer.subresult is not None:
        entry["layers"] = [layer_json(sub) for sub in layer.subresult.listed_layers]
    return entry


def _safe_call(what: str, function: Any, result: AnalysisResult, fallback: Any) -> tuple[Any, str | None]:
    try:
        return function(result), None
    except Exception as error:  # a defect there must not cost the user the rest of the report
        logger.exception("%s failed", what)
        return fallback, f"{what} failed: {type(error).__name__}: {error}"


def build_report(result: AnalysisResult, *, name: str | None = None) -> dict[str, Any]:
    listed = result.listed_layers
    # Each total is the sum of the known values (in layer order) and is partial where some
    # layer's value is None: five sums in two loops, no list built per metric.
    total = trainable = non_trainable = 0
    params_partial = False
    for layer in listed:
        value = layer.params
        if value is None:
            params_partial = True
        else:
            total += value
        value = layer.trainable_params
        if value is not None:
            trainable += value
        value = layer.non_trainable_params
        if value is not None:
            non_trainable += value
    macs = activation = 0
    macs_partial = activation_partial = False
    for layer in result.layers:
        value = layer.macs
        if value is None:
            macs_partial = True
        else:
            macs += value
        value = layer.activation_bytes
        if value is None:
            activation_partial = True
        else:
            activation += value
    param_bytes = 0
    for layer in _all_layers(result):
        if layer.params and layer.subresult is None:
            param_bytes += layer.params * layer.variable_bytes
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
    field_summary = receptive_field_summary(result)
    # The findings read the prediction too; when it failed they try again (and say so).
    findings, findings_error = _safe_call(
        "findings", lambda r: findings_module.find(
            r, field_summary=field_summary, prediction=None if gradient_error else predicted),
        result, []
    )
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
        "receptive_field": field_summary,
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


def analyze(
    config: Any, *, input_shape: InputShapeOverride | None = None, name: str | None = None
) -> dict[str, Any]:
    """Analyse a Keras model config and return the report dict (see app.analysis.report).

    ``input_shape`` (no batch dimension) overrides the declared input shape: a list for a model
    with one input, ``{"input_layer_name": [...]}`` for one or more inputs of a multi-input model.

    Raises :class:`app.errors.InvalidArchitecture` when the config cannot be read.
    """
    collecting = gc.isenabled()
    gc.disable()  # the walk allocates many small objects and no cycles; collection only costs time
    try:
        graph = build_graph(config)
        result = analyze_graph(graph, input_shape=input_shape)
        return build_report(result, name=name)
    except InvalidArchitecture:
        raise
    except RecursionError as error:
        raise InvalidArchitecture("the architecture is nested too deeply to read") from error
    except READ_ERRORS as error:
        raise InvalidArchitecture(
            f"the architecture could not be read ({type(error).__name__}: {error})"
        ) from error
    finally:
        if collecting:
            gc.enable()
