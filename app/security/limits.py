"""Resource limits of the static analysis: per layer while the gate walks, and on the report.

The engine only computes numbers, so a Dense with 2**31 units costs nothing to analyse; these
checks refuse such a model by message instead of leaving it to a worker's OOM killer. The
static analysis allocates nothing per activation, so activation memory is *not* a limit here
(a DenseNet201 at 4096 px is analysed): jobs that allocate (gradients, training) check it
against the worker's memory before they run.

Example::

    >>> from app.config import Settings
    >>> check_report_limits({"summary": {"total_params": 10}}, Settings())
    >>> check_layer_size("Dense", "fc", {"units": 2**40}, Settings())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.errors.ResourceLimitExceeded: Dense 'fc' has units=1,099,511,627,776, so it alone ...
"""

from __future__ import annotations

import math
from typing import Any

from app.config import Settings
from app.errors import ResourceLimitExceeded

#: Config keys whose integer value alone is a lower bound on a layer's parameter count.
PARAM_LOWER_BOUND_KEYS = ("units", "filters", "output_dim", "input_dim", "num_heads", "key_dim")
#: Config keys that declare a model input's shape (with or without the batch dimension).
INPUT_SHAPE_KEYS = ("batch_shape", "batch_input_shape", "input_shape", "shape")
#: Wrappers whose inner layer counts as one nesting level, like a nested model.
WRAPPER_CLASSES = frozenset({"Bidirectional", "TimeDistributed", "SpectralNormalization", "RNN"})


def layer_count_exceeded(count: int, settings: Settings) -> ResourceLimitExceeded:
    return ResourceLimitExceeded(
        f"The architecture has more than {settings.max_layers:,} layers (nested models "
        f"included); convlens refuses it before analysis. Received: at least {count:,} layers",
        extra={"limit": "max_layers", "value": count},
    )


def nesting_exceeded(depth: int, layer: str | None, settings: Settings) -> ResourceLimitExceeded:
    return ResourceLimitExceeded(
        f"Models and wrappers are nested more than {settings.max_nesting_depth} deep (at layer "
        f"'{layer}'). Received: nesting depth {depth}",
        extra={"limit": "max_nesting_depth", "value": depth},
    )


def check_layer_size(class_name: str, layer: str, config: dict[str, Any], settings: Settings) -> None:
    """Refuse a single layer whose size alone breaks the parameter limit."""
    for key in PARAM_LOWER_BOUND_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > settings.max_params:
            raise ResourceLimitExceeded(
                f"{class_name} '{layer}' has {key}={value:,}, so it alone would hold more than "
                f"the limit of {settings.max_params:,} parameters. Received: {key}={value}",
                extra={"limit": "max_params", "layer": layer, "value": value},
            )


def check_declared_input(class_name: str, layer: str, key: str, shape: Any, settings: Settings) -> None:
    """Refuse a declared input shape with more elements per sample than an override may have.

    The same bound as ``input_shape`` overrides (``max_input_elements``), so a shape refused
    as an override cannot come in written into the model instead.
    """
    if not isinstance(shape, list) or not shape:
        return
    known = [dim for dim in shape if isinstance(dim, int) and not isinstance(dim, bool)]
    if len(known) + shape.count(None) != len(shape) or any(dim < 0 for dim in known):
        return  # not a plain shape: the engine says what is wrong with it
    elements = math.prod(known) if known else 0
    if elements > settings.max_input_elements:
        raise ResourceLimitExceeded(
            f"{class_name} '{layer}' declares the input shape {shape[:8]}: {elements:,} elements "
            f"per sample, above the limit of {settings.max_input_elements:,}. Received: "
            f"{key}={shape[:8]}",
            extra={"limit": "max_input_elements", "layer": layer, "value": elements},
        )


def check_report_limits(report: dict[str, Any], settings: Settings) -> None:
    """Refuse an analysed model whose parameters or layers exceed the limits.

    Reads ``report["summary"]`` as produced by :func:`app.analysis.analyze`; missing or
    ``None`` figures (a partial analysis) are not limit violations. Activation memory is not
    checked: the static analysis allocates none.
    """
    summary = report.get("summary") if isinstance(report, dict) else None
    if not isinstance(summary, dict):
        return
    checks = (
        ("total_params", settings.max_params, "parameters", "max_params"),
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
