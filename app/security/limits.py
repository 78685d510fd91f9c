"""Resource limits checked before anything is built, and on the engine's numbers after.

The engine only computes numbers, so a Dense with 2**31 units costs nothing to analyse; these
gates refuse such a model by message instead of leaving it to a worker's OOM killer.

Example::

    >>> from app.config import Settings
    >>> check_report_limits({"summary": {"total_params": 10}}, Settings())
"""

from __future__ import annotations

import math
from typing import Any

from app.config import Settings
from app.errors import ResourceLimitExceeded
from app.security import allowlist as al

#: Config keys whose integer value alone is a lower bound on a layer's parameter count.
_PARAM_LOWER_BOUND_KEYS = ("units", "filters", "output_dim", "input_dim", "num_heads", "key_dim")
#: Config keys that hold a shape (with or without the batch dimension).
_SHAPE_KEYS = ("batch_shape", "batch_input_shape", "input_shape", "shape", "target_shape")
_WRAPPER_CLASSES = frozenset({"Bidirectional", "TimeDistributed", "SpectralNormalization", "RNN"})


def check_static_limits(config: dict[str, Any], settings: Settings) -> None:
    """Refuse configs that are too large before the engine or Keras touch them.

    Counts every layer (nested models and wrapped layers included), measures model and
    wrapper nesting depth, and refuses single layers whose size alone breaks a limit.
    """
    layer_count = 0
    max_depth = 0
    # (node, nesting depth, enclosing layer name)
    stack: list[tuple[Any, int, str | None]] = [(config, 0, None)]
    while stack:
        node, depth, layer = stack.pop()
        if isinstance(node, list):
            stack.extend((item, depth, layer) for item in node if isinstance(item, (dict, list)))
            continue
        if not isinstance(node, dict):
            continue
        class_name = node.get("class_name")
        category = al.ALLOWED_PAIRS.get((node.get("module"), class_name)) if isinstance(
            class_name, str) else None
        child_depth = depth
        if category in {al.LAYER, al.MODEL, al.TF_OP_LAYER, al.OPERATION} and node is not config:
            layer_count += 1
            inner_config = node.get("config")
            name = node.get("name") or (
                inner_config.get("name") if isinstance(inner_config, dict) else None)
            layer = str(name or class_name)
            if layer_count > settings.max_layers:
                raise ResourceLimitExceeded(
                    f"The architecture has more than {settings.max_layers:,} layers "
                    f"(nested models included); convlens refuses it before analysis. "
                    f"Received: at least {layer_count:,} layers",
                    extra={"limit": "max_layers", "value": layer_count},
                )
            inner = node.get("config")
            if isinstance(inner, dict):
                _check_layer_size(str(class_name), layer, inner, settings)
        if category == al.MODEL or class_name in _WRAPPER_CLASSES:
            child_depth = depth + 1
            max_depth = max(max_depth, child_depth)
            if child_depth > settings.max_nesting_depth + 1:  # the top model is depth 1
                raise ResourceLimitExceeded(
                    f"Models and wrappers are nested more than {settings.max_nesting_depth} deep "
                    f"(at layer '{layer}'). Received: nesting depth {child_depth - 1}",
                    extra={"limit": "max_nesting_depth", "value": child_depth - 1},
                )
        for value in node.values():
            if isinstance(value, (dict, list)):
                stack.append((value, child_depth, layer))


def _check_layer_size(class_name: str, layer: str, config: dict[str, Any],
                      settings: Settings) -> None:
    for key in _PARAM_LOWER_BOUND_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > settings.max_params:
            raise ResourceLimitExceeded(
                f"{class_name} '{layer}' has {key}={value:,}, so it alone would hold more than "
                f"the limit of {settings.max_params:,} parameters. Received: {key}={value}",
                extra={"limit": "max_params", "layer": layer, "value": value},
            )
    shapes = [config.get(key) for key in _SHAPE_KEYS]
    build = config.get("build_config")
    if isinstance(build, dict):
        shapes.append(build.get("input_shape"))
    for shape in shapes:
        if not isinstance(shape, list) or not shape or not all(
            dim is None or (isinstance(dim, int) and not isinstance(dim, bool)) for dim in shape
        ):
            continue
        known = [dim for dim in shape if dim is not None]
        if any(dim < 0 for dim in known):
            continue  # -1 in Reshape targets: the engine reports it
        elements = math.prod(known) if known else 0
        if elements * 4 > settings.max_activation_bytes:
            raise ResourceLimitExceeded(
                f"{class_name} '{layer}' has a tensor of shape {shape}: one sample alone needs "
                f"{elements * 4:,} bytes as float32, above the limit of "
                f"{settings.max_activation_bytes:,} bytes of activations. Received: {shape}",
                extra={"limit": "max_activation_bytes", "layer": layer, "value": elements * 4},
            )


def check_report_limits(report: dict[str, Any], settings: Settings) -> None:
    """Refuse an analysed model whose parameters or activations exceed the limits.

    Reads ``report["summary"]`` as produced by :func:`app.analysis.analyze`; missing or
    ``None`` figures (a partial analysis) are not limits violations.
    """
    summary = report.get("summary") if isinstance(report, dict) else None
    if not isinstance(summary, dict):
        return
    checks = (
        ("total_params", settings.max_params, "parameters", "max_params"),
        ("activation_bytes", settings.max_activation_bytes, "bytes of activations (one sample)",
         "max_activation_bytes"),
        ("layer_count", settings.max_layers, "layers", "max_layers"),
    )
    for key, limit, what, limit_name in checks:
        value = summary.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            raise ResourceLimitExceeded(
                f"The model has {int(value):,} {what}, above convlens's limit of {limit:,}. "
                f"Received: summary.{key}={int(value)}",
                extra={"limit": limit_name, "value": int(value)},
            )
