"""The effective receptive field's side of the report: which unit a measurement reads, the
theoretical field it is compared with, and where the measurement goes in the report.

The theoretical field (``layers[].receptive_field``) is what *can* matter to a unit; the
effective field, measured by the ``effective_field`` job (``app.worker.effective_field``), is
what *does*. The job measures the centre unit of each chosen layer: along each spatial axis
the unit ``(units - 1) // 2``, whose theoretical field runs from ``unit * stride - padding``
to that plus ``size - 1`` (input pixels, possibly past the input's edges).

Example::

    >>> layer = {"name": "c", "output_shape": [None, 33, 33, 8], "receptive_field": {
    ...     "axes": [{"size": 5, "stride": 1, "padding": 2}] * 2, "global": False}}
    >>> unit_field(layer)
    {'name': 'c', 'unit': [16, 16], 'box': [[14, 18], [14, 18]]}
    >>> attach_effective_field({"schema_version": "1.0"}, {"status": "measured"})["schema_version"]
    '1.2'
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: The report schema version that has ``effective_field`` (an optional section, 1.2).
SCHEMA_VERSION = "1.2"


class NotMeasurable(ValueError):
    """A layer has no centre unit with a finite 2-D field (the message says why)."""


def _number(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def unit_field(layer: Mapping[str, Any]) -> dict[str, Any]:
    """The centre unit of a layer's output and its theoretical field box per spatial axis.

    Raises :class:`NotMeasurable` for a layer without a 2-D, finite, fully known field.
    """
    name = str(layer.get("name", ""))
    field = layer.get("receptive_field")
    if not isinstance(field, Mapping) or field.get("global"):
        raise NotMeasurable(f"layer {name!r} has no local receptive field (it is global or not spatial)")
    axes = field.get("axes")
    shape = layer.get("output_shape")
    if isinstance(shape, list) and shape and isinstance(shape[0], list):
        raise NotMeasurable(f"layer {name!r} has several outputs")
    if not isinstance(axes, list) or len(axes) != 2 or not isinstance(shape, list) or len(shape) != 4:
        raise NotMeasurable(
            f"layer {name!r} is not a 2-D feature map (output shape {shape}, "
            f"{len(axes) if isinstance(axes, list) else 0} field axes)"
        )
    units, box = [], []
    for axis, size in zip(axes, shape[1:3], strict=True):
        values = [axis.get(key) if isinstance(axis, Mapping) else None for key in ("size", "stride", "padding")]
        if not isinstance(size, int) or any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
            raise NotMeasurable(f"layer {name!r} has an unknown output size or field (analyse it with input_shape)")
        field_size, stride, padding = (float(v) for v in values)  # type: ignore[arg-type]
        unit = (size - 1) // 2
        first = unit * stride - padding
        units.append(unit)
        box.append([_number(first), _number(first + field_size - 1)])
    return {"name": name, "unit": units, "box": box}


def attach_effective_field(report: Mapping[str, Any], measured: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` with ``effective_field`` set to ``measured`` (the one place it is put
    there); the report then says schema version 1.2 (older reports gain the optional section)."""
    result = copy.deepcopy(dict(report))
    result["effective_field"] = dict(measured)
    version = str(result.get("schema_version") or "1.0")
    if tuple(int(part) for part in version.split(".")) < tuple(int(part) for part in SCHEMA_VERSION.split(".")):
        result["schema_version"] = SCHEMA_VERSION
    return result
