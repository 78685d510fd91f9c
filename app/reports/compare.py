"""Comparison of two reports: what differs, side by side, and why it matters, in words.

The layers of the two models are aligned (Needleman-Wunsch over the layer
sequence: same class scores, same channel count scores more), so that a
convolution inserted in one model does not shift every later pairing. For
each aligned pair convlens states what changed: kernel, stride, channels,
output shape, parameters, MACs and receptive field. Kernel and stride are
read from the report's per-layer fields when present, else recovered from
the receptive-field arithmetic of Araujo et al. (``r_out = r_in + (k - 1) *
S_in`` and ``S_out = S_in * s``), which is exact for single-input layers.

Example::

    >>> comparison = compare_reports(report_1, report_2)   # the seed's Examples 1 and 2
    >>> print(comparison["explanation"][0])                 # doctest: +ELLIPSIS
    The first layer (conv2d in example1_satellite, ...): its kernel goes from 3x3 in example1_satellite to 5x5 ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from app.analysis.rules import traits_of
from app.analysis.traits import Trait
from app.reports.view import (
    FlatLayer,
    Report,
    derive_stages,
    field_axes,
    first_output_shape,
    format_bytes,
    format_count,
    format_field,
    format_number,
    format_shape,
    is_global_field,
    leaf_layers,
)

COMPARISON_SCHEMA_VERSION = "1.0"

SUMMARY_METRICS: tuple[tuple[str, str], ...] = (
    ("total_params", "parameters"),
    ("trainable_params", "trainable"),
    ("non_trainable_params", "non-trainable"),
    ("macs", "MACs / sample"),
    ("flops", "FLOPs / sample"),
    ("activation_bytes", "activations / sample"),
    ("param_bytes", "parameter memory"),
    ("layer_count", "layers"),
)
BYTE_METRICS = frozenset({"activation_bytes", "param_bytes"})

MATCH_SCORE = 2
CHANNEL_BONUS = 1
GAP_PENALTY = -1


# -- per-layer descriptions --------------------------------------------------------------------


def _as_number(value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Fraction(value).limit_denominator(10_000)


def _spatial_pair(value: Any, rank: int) -> list[int] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * rank
    if isinstance(value, list | tuple) and all(isinstance(v, int) for v in value):
        return list(value)
    return None


def _model_input_channels(report: Report) -> int | None:
    shapes = (report.get("summary") or {}).get("input_shapes")
    if isinstance(shapes, list) and len(shapes) == 1 and isinstance(shapes[0], list) and shapes[0]:
        channels = shapes[0][-1]
        return channels if isinstance(channels, int) else None
    return None


def describe_layers(report: Report) -> list[dict[str, Any]]:
    """Leaf layers (InputLayer dropped) with kernel, stride, channels and field.

    ``kernel``/``stride`` are lists per spatial axis (None when unknown);
    ``geometry_source`` says where they come from (``"report"`` or
    ``"receptive_field"``).
    """
    flats = leaf_layers(report)
    by_name = {flat.name: flat for flat in flats}
    described = []
    for flat in flats:
        if flat.class_name == "InputLayer":
            continue
        described.append(_describe(flat, by_name, _model_input_channels(report)))
    return described


def _describe(
    flat: FlatLayer, by_name: Mapping[str, FlatLayer], model_input_channels: int | None = None
) -> dict[str, Any]:
    layer = flat.layer
    axes = field_axes(layer)
    shape = first_output_shape(layer)
    inbound = [str(name) for name in (layer.get("inbound") or [])]
    kernel: list[Any] | None = None
    stride: list[Any] | None = None
    source = None
    rank = len(axes) if axes else 0
    raw_config = layer.get("config")
    config: Mapping[str, Any] = raw_config if isinstance(raw_config, Mapping) else {}
    for key_kernel in ("kernel_size", "pool_size"):
        value = layer.get(key_kernel, config.get(key_kernel))
        if value is not None and rank:
            kernel = _spatial_pair(value, rank)
            break
    stride_value = layer.get("strides", config.get("strides"))
    if stride_value is not None and rank:
        stride = _spatial_pair(stride_value, rank)
    if kernel is not None:
        source = "report"
    if axes and len(inbound) <= 1 and (kernel is None or stride is None):
        before = _input_field(inbound, by_name, rank)
        if before is not None:
            derived_kernel: list[int | float] = []
            derived_stride: list[int | float] = []
            for axis, (size_in, stride_in) in zip(axes, before, strict=True):
                size_out, stride_out = _as_number(axis.get("size")), _as_number(axis.get("stride"))
                if size_out is None or stride_out is None or not stride_in:
                    derived_kernel = derived_stride = []
                    break
                derived_kernel.append(_plain((size_out - size_in) / stride_in + 1))
                derived_stride.append(_plain(stride_out / stride_in))
            if derived_kernel:
                kernel = kernel or derived_kernel
                stride = stride or derived_stride
                source = source or "receptive_field"
    input_channels = None
    if len(inbound) == 1 and inbound[0] not in by_name:
        input_channels = model_input_channels  # the model input (Sequential lists no InputLayer)
    if inbound and inbound[0] in by_name:
        previous_shape = first_output_shape(by_name[inbound[0]].layer)
        if previous_shape:
            input_channels = previous_shape[-1]
    growth = None
    if axes and len(inbound) <= 1:
        before = _input_field(inbound, by_name, rank)
        size_out = _as_number(axes[0].get("size"))
        if before is not None and size_out is not None:
            growth = _plain(size_out - before[0][0])
    return {
        "name": flat.qualified_name,
        "class_name": flat.class_name,
        "field_growth": growth,
        "inbound": inbound,
        "kernel": kernel,
        "stride": stride,
        "geometry_source": source,
        "channels": shape[-1] if shape else None,
        "input_channels": input_channels,
        "output_shape": layer.get("output_shape"),
        "params": layer.get("params"),
        "macs": layer.get("macs"),
        "field": [axis.get("size") for axis in axes] if axes else None,
        "field_stride": [axis.get("stride") for axis in axes] if axes else None,
        "global_field": is_global_field(layer),
    }


def _input_field(
    inbound: Sequence[str], by_name: Mapping[str, FlatLayer], rank: int
) -> list[tuple[Fraction, Fraction]] | None:
    """(size, stride) per axis of the tensor a layer reads; the raw input is (1, 1)."""
    if not inbound or by_name.get(inbound[0]) is None:
        return [(Fraction(1), Fraction(1))] * rank
    previous = by_name[inbound[0]]
    if previous.class_name == "InputLayer":
        return [(Fraction(1), Fraction(1))] * rank
    axes = field_axes(previous.layer)
    if axes is None or len(axes) != rank:
        return None
    pairs = []
    for axis in axes:
        size, stride = _as_number(axis.get("size")), _as_number(axis.get("stride"))
        if size is None or stride is None:
            return None
        pairs.append((size, stride))
    return pairs


def _plain(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


# -- alignment ---------------------------------------------------------------------------------


def align_layers(
    left: Sequence[Mapping[str, Any]], right: Sequence[Mapping[str, Any]]
) -> list[tuple[int | None, int | None]]:
    """Global alignment of two layer sequences: pairs of indices, None for a gap.

    >>> align_layers([{"class_name": "Conv2D", "channels": 8}],
    ...              [{"class_name": "Conv2D", "channels": 8}, {"class_name": "Dense"}])
    [(0, 0), (None, 1)]
    """

    def score(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
        if a.get("class_name") != b.get("class_name"):
            return GAP_PENALTY * 2 - 1  # never better than two gaps
        bonus = CHANNEL_BONUS if a.get("channels") == b.get("channels") else 0
        return MATCH_SCORE + bonus

    n, m = len(left), len(right)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        table[i][0] = i * GAP_PENALTY
    for j in range(1, m + 1):
        table[0][j] = j * GAP_PENALTY
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            table[i][j] = max(
                table[i - 1][j - 1] + score(left[i - 1], right[j - 1]),
                table[i - 1][j] + GAP_PENALTY,
                table[i][j - 1] + GAP_PENALTY,
            )
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if (
            i > 0
            and j > 0
            and table[i][j] == table[i - 1][j - 1] + score(left[i - 1], right[j - 1])
        ):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and table[i][j] == table[i - 1][j] + GAP_PENALTY:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    pairs.reverse()
    return pairs


# -- comparison --------------------------------------------------------------------------------


def _delta(a: Any, b: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"a": a, "b": b, "delta": None, "ratio": None}
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        entry["delta"] = b - a
        entry["ratio"] = (b / a) if a else None
    return entry


def _axes_text(values: Sequence[Any] | None) -> str:
    if not values:
        return "?"
    return "x".join(format_number(value) for value in values)


def _layer_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    changes = []
    if a["class_name"] != b["class_name"]:
        changes.append(f"class {a['class_name']} -> {b['class_name']}")
    for key, label in (("kernel", "kernel"), ("stride", "stride")):
        if a.get(key) and b.get(key) and a[key] != b[key]:
            changes.append(f"{label} {_axes_text(a[key])} -> {_axes_text(b[key])}")
    if a.get("channels") != b.get("channels"):
        changes.append(f"channels {a.get('channels')} -> {b.get('channels')}")
    if a.get("input_channels") != b.get("input_channels"):
        changes.append(f"input channels {a.get('input_channels')} -> {b.get('input_channels')}")
    if a.get("output_shape") != b.get("output_shape"):
        changes.append(
            f"output {format_shape(a.get('output_shape'))} -> {format_shape(b.get('output_shape'))}"
        )
    for key, label in (("params", "params"), ("macs", "MACs")):
        if a.get(key) != b.get(key):
            changes.append(f"{label} {format_count(a.get(key))} -> {format_count(b.get(key))}")
    if a.get("field") != b.get("field"):
        changes.append(f"field {_axes_text(a.get('field'))} -> {_axes_text(b.get('field'))}")
    return changes


def _field_summary(report: Report) -> dict[str, Any]:
    field = report.get("receptive_field") or {}
    axes = field.get("axes") or []
    return {
        "layer": field.get("layer"),
        "size": [axis.get("size") for axis in axes] or None,
        "stride": [axis.get("stride") for axis in axes] or None,
        "global": bool(field.get("global")),
        "input_size": field.get("input_size"),
        "coverage": field.get("coverage"),
        "sees_whole_input": field.get("sees_whole_input"),
    }


def compare_reports(
    a: Report,
    b: Report,
    *,
    label_a: str | None = None,
    label_b: str | None = None,
) -> dict[str, Any]:
    """The comparison of report ``a`` with report ``b`` as a JSON-ready dict.

    Keys: ``a``/``b`` (names), ``summary`` (per metric ``a``, ``b``,
    ``delta`` = b - a, ``ratio`` = b / a), ``inputs``, ``receptive_field``,
    ``layers`` (aligned rows with ``status`` same|changed|only_a|only_b and
    ``changes`` in words), ``stages`` (both sides), ``findings``
    (only_a/only_b/both by code) and ``explanation`` (paragraphs).
    """
    name_a = label_a or str(a.get("model_name") or "A")
    name_b = label_b or str(b.get("model_name") or "B")
    if name_a == name_b:
        name_a, name_b = f"{name_a} (A)", f"{name_b} (B)"
    summary_a, summary_b = a.get("summary") or {}, b.get("summary") or {}
    layers_a, layers_b = describe_layers(a), describe_layers(b)
    rows = []
    for index_a, index_b in align_layers(layers_a, layers_b):
        left = layers_a[index_a] if index_a is not None else None
        right = layers_b[index_b] if index_b is not None else None
        if left is not None and right is not None:
            changes = _layer_changes(left, right)
            status = "changed" if changes else "same"
        else:
            changes = []
            status = "only_a" if right is None else "only_b"
        rows.append({"status": status, "a": left, "b": right, "changes": changes})

    findings_a = [f for f in (a.get("findings") or []) if isinstance(f, Mapping)]
    findings_b = [f for f in (b.get("findings") or []) if isinstance(f, Mapping)]
    codes_a = {str(f.get("code")) for f in findings_a}
    codes_b = {str(f.get("code")) for f in findings_b}
    comparison: dict[str, Any] = {
        "schema_version": COMPARISON_SCHEMA_VERSION,
        "a": {"model_name": a.get("model_name"), "label": name_a},
        "b": {"model_name": b.get("model_name"), "label": name_b},
        "summary": {
            key: _delta(summary_a.get(key), summary_b.get(key)) for key, _ in SUMMARY_METRICS
        },
        "inputs": {"a": summary_a.get("input_shapes"), "b": summary_b.get("input_shapes")},
        "outputs": {"a": summary_a.get("output_shapes"), "b": summary_b.get("output_shapes")},
        "receptive_field": {"a": _field_summary(a), "b": _field_summary(b)},
        "layers": rows,
        "stages": {"a": derive_stages(a), "b": derive_stages(b)},
        "findings": {
            "only_a": [dict(f) for f in findings_a if str(f.get("code")) not in codes_b],
            "only_b": [dict(f) for f in findings_b if str(f.get("code")) not in codes_a],
            "both": sorted(codes_a & codes_b),
        },
    }
    comparison["explanation"] = explain(comparison)
    return comparison


# -- words -------------------------------------------------------------------------------------


def _square(values: Sequence[Any] | None) -> str:
    """``[5, 5]`` -> ``'5x5'``."""
    return _axes_text(values)


def _percent_change(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not a:
        return ""
    change = (b - a) / a * 100
    return f"{change:+.1f}%" if abs(change) < 1000 else f"x{b / a:.1f}"


def _kernel_sentence(
    left: Mapping[str, Any], right: Mapping[str, Any], name_a: str, name_b: str
) -> str | None:
    parts = []
    if left.get("kernel") and right.get("kernel"):
        if left["kernel"] != right["kernel"]:
            parts.append(
                f"its kernel goes from {_square(left['kernel'])} in {name_a} to "
                f"{_square(right['kernel'])} in {name_b}"
            )
        else:
            parts.append(f"its kernel is {_square(left['kernel'])} in both")
    if left.get("stride") and right.get("stride"):
        if left["stride"] != right["stride"]:
            parts.append(f"its stride from {_square(left['stride'])} to {_square(right['stride'])}")
        else:
            parts.append(f"the stride stays {_square(left['stride'])} (unchanged)")
    if not parts:
        return None
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


_NOT_PLAIN_KERNEL = frozenset({Trait.DEPTHWISE, Trait.RECURRENT})
"""Kernels whose parameters are not kernel x input channels x filters (+ biases)."""


def _conv_param_formula(layer: Mapping[str, Any]) -> str | None:
    """'5x5 kernel x 1 input channel x 32 filters + 32 biases = 832' when it adds up."""
    kernel, cin, cout, params = (
        layer.get("kernel"),
        layer.get("input_channels"),
        layer.get("channels"),
        layer.get("params"),
    )
    traits = traits_of(str(layer.get("class_name", "")))
    if not (
        Trait.SPATIAL_KERNEL in traits
        and not traits & _NOT_PLAIN_KERNEL
        and kernel
        and isinstance(cin, int)
        and isinstance(cout, int)
        and isinstance(params, int)
    ):
        return None
    area = 1
    for k in kernel:
        if not isinstance(k, int):
            return None
        area *= k
    weights = area * cin * cout
    if weights + cout == params:
        return (
            f"{_square(kernel)} kernel x {cin} input channel{'s' if cin != 1 else ''} x "
            f"{cout} filters + {cout} biases = {params:,}"
        )
    if weights == params:
        return f"{_square(kernel)} kernel x {cin} input channels x {cout} filters = {params:,}"
    return None


def explain(comparison: Mapping[str, Any]) -> list[str]:
    """Paragraphs that say what differs between the two models and what it does."""
    name_a, name_b = comparison["a"]["label"], comparison["b"]["label"]
    paragraphs: list[str] = []
    rows = comparison["layers"]
    inputs = comparison["inputs"]

    first_pair = next((row for row in rows if row["a"] is not None and row["b"] is not None), None)
    if first_pair is not None:
        left, right = first_pair["a"], first_pair["b"]
        same_name = left["name"] == right["name"]
        title = (
            f"The first layer, {left['name']} ({left['class_name']})"
            if same_name
            else f"The first layer ({left['name']} in {name_a}, {right['name']} in {name_b}, "
            f"both {left['class_name']})"
            if left["class_name"] == right["class_name"]
            else f"The first layer ({left['class_name']} {left['name']} in {name_a}, "
            f"{right['class_name']} {right['name']} in {name_b})"
        )
        if first_pair["status"] == "same":
            paragraphs.append(f"{title} is identical in both models.")
        else:
            sentence = title
            geometry = _kernel_sentence(left, right, name_a, name_b)
            if geometry:
                sentence += f": {geometry}."
            else:
                sentence += " changes."
            if left.get("field") and right.get("field") and left["field"] != right["field"]:
                sentence += (
                    f" On its own, that layer now sees {_square(right['field'])} input "
                    f"pixels instead of {_square(left['field'])}"
                )
                if left.get("kernel") != right.get("kernel"):
                    sentence += " (a kernel of k pixels sees k pixels of the raw input)"
                sentence += "."
            if left.get("params") != right.get("params"):
                formula_a, formula_b = _conv_param_formula(left), _conv_param_formula(right)
                sentence += (
                    f" Its parameters go from {format_count(left.get('params'))} to "
                    f"{format_count(right.get('params'))}"
                )
                if formula_a and formula_b:
                    sentence += f" ({name_a}: {formula_a}; {name_b}: {formula_b})"
                sentence += "."
            if left.get("macs") != right.get("macs"):
                sentence += (
                    f" Its MACs per sample go from {format_count(left.get('macs'))} to "
                    f"{format_count(right.get('macs'))}, because every output pixel "
                    "costs kernel area x input channels x filters multiply-adds and "
                    f"the output is {format_shape(left.get('output_shape'))} in {name_a} "
                    f"against {format_shape(right.get('output_shape'))} in {name_b}."
                )
            paragraphs.append(sentence)

    if inputs["a"] != inputs["b"]:
        paragraphs.append(
            f"The inputs differ too: {name_a} takes {_shapes(inputs['a'])}, {name_b} takes "
            f"{_shapes(inputs['b'])}. Parameter counts do not depend on the input size, but "
            "MACs and activation memory scale with the number of input pixels, and the share "
            "of the input a unit sees is relative to it."
        )

    structural = []
    for row in rows:
        if row["status"] == "only_a":
            structural.append(
                f"{name_a} has {row['a']['class_name']} {row['a']['name']} "
                f"where {name_b} has nothing"
            )
        elif row["status"] == "only_b":
            structural.append(
                f"{name_b} adds {row['b']['class_name']} {row['b']['name']} "
                f"(output {format_shape(row['b'].get('output_shape'))})"
            )
        elif row["status"] == "changed" and row is not first_pair and row["changes"]:
            structural.append(
                f"{row['a']['name']} / {row['b']['name']}: " + "; ".join(row["changes"][:3])
            )
    if structural:
        count_a = sum(1 for row in rows if row["a"] is not None)
        count_b = sum(1 for row in rows if row["b"] is not None)
        if len(structural) <= STRUCTURAL_LISTED:
            paragraphs.append(
                f"Beyond the first layer ({count_a} layers in {name_a}, {count_b} in {name_b}): "
                + "; ".join(structural) + "."
            )
        else:  # two different architectures: the counts, then the first few differences
            changed = sum(1 for row in rows if row["status"] == "changed" and row is not first_pair)
            only_a = sum(1 for row in rows if row["status"] == "only_a")
            only_b = sum(1 for row in rows if row["status"] == "only_b")
            paragraphs.append(
                f"Beyond the first layer ({count_a} layers in {name_a}, {count_b} in {name_b}) "
                f"the layer table pairs the two models' layers: {changed} pairs differ, {only_a} "
                f"layers are only in {name_a} and {only_b} only in {name_b}. The first "
                f"differences: " + "; ".join(structural[:3]) + "."
            )

    paragraphs.append(_field_paragraph(comparison, name_a, name_b))

    summary = comparison["summary"]
    params, macs = summary["total_params"], summary["macs"]
    text = (
        f"Parameters: {format_count(params['a'])} in {name_a} against "
        f"{format_count(params['b'])} in {name_b}"
    )
    if isinstance(params.get("delta"), int):
        text += f" ({params['delta']:+,}, {_percent_change(params['a'], params['b'])})"
    text += f". MACs per sample: {format_count(macs['a'])} against {format_count(macs['b'])}"
    if isinstance(macs.get("ratio"), float) and macs["ratio"]:
        ratio = macs["ratio"]
        text += (
            f" ({name_b} needs {ratio:.2f}x the compute of {name_a})"
            if ratio >= 1
            else f" ({name_a} needs {1 / ratio:.1f}x the compute of {name_b})"
        )
    biggest = _largest_mac_difference(rows)
    if biggest is not None:
        where = (biggest["a"] or biggest["b"])["name"]
        text += (
            f"; the largest single difference is at {where}"
            f" ({format_count((biggest['a'] or {}).get('macs'))} against "
            f"{format_count((biggest['b'] or {}).get('macs'))} MACs)"
        )
    paragraphs.append(text + ".")

    findings = comparison["findings"]
    if findings["only_a"] or findings["only_b"]:
        parts = []
        if findings["only_a"]:
            parts.append(
                f"only {name_a} gets " + ", ".join(str(f.get("code")) for f in findings["only_a"])
            )
        if findings["only_b"]:
            parts.append(
                f"only {name_b} gets " + ", ".join(str(f.get("code")) for f in findings["only_b"])
            )
        paragraphs.append("Findings differ: " + "; ".join(parts) + ".")
    elif findings["both"]:
        paragraphs.append("Both models get the same findings: " + ", ".join(findings["both"]) + ".")
    return paragraphs


STRUCTURAL_LISTED = 8
"""Layer differences the explanation lists one by one; past this it gives counts and the first
three (two different architectures differ almost everywhere: the table shows each pair)."""


def _coverage_words(coverage: Sequence[float]) -> str:
    """How much of the input a unit of the last map sees, in the report page's words: a share
    below the whole input, else "the whole" and how far past it the field reaches.

    >>> _coverage_words([0.5, 0.25]), _coverage_words([2.1562, 2.1562]), _coverage_words([1.0])
    ('25.0%', 'the whole (a field 2.2x its size)', 'the whole')
    """
    share = min(coverage)
    if share < 1:
        return f"{share * 100:.1f}%"
    return "the whole" + (f" (a field {share:.1f}x its size)" if share > 1.05 else "")


def _shapes(shapes: Any) -> str:
    if isinstance(shapes, list) and len(shapes) == 1:
        return format_shape(shapes[0])
    return format_shape(shapes)


def _field_paragraph(comparison: Mapping[str, Any], name_a: str, name_b: str) -> str:
    field_a, field_b = comparison["receptive_field"]["a"], comparison["receptive_field"]["b"]

    def side(field: Mapping[str, Any], name: str) -> str:
        if field.get("global"):
            return f"in {name} every output unit sees the whole input"
        if not field.get("size"):
            return f"{name} has no spatial feature map"
        text = (
            f"in {name} the last feature map ({field.get('layer')}) sees "
            f"{_square(field['size'])} input pixels with stride {_square(field['stride'])}"
        )
        coverage = [c for c in (field.get("coverage") or []) if isinstance(c, int | float)]
        if coverage and field.get("input_size"):
            text += f", {_coverage_words(coverage)} of its {_square(field['input_size'])} input"
        return text

    sentence = "Receptive field: " + side(field_a, name_a) + "; " + side(field_b, name_b) + "."
    size_a, size_b = field_a.get("size"), field_b.get("size")
    if (
        size_a
        and size_b
        and len(size_a) == len(size_b)
        and all(isinstance(v, int | float) and v for v in size_a + size_b)
    ):
        ratio = max(size_b) / max(size_a)
        if ratio > 1:
            sentence += f" {name_b}'s field is {ratio:.2g}x larger than {name_a}'s."
        elif ratio < 1:
            sentence += f" {name_a}'s field is {1 / ratio:.2g}x larger than {name_b}'s."
        else:
            sentence += " The fields have the same size."
    growth = [_growth_text(comparison, key) for key in ("a", "b")]
    if all(growth):
        sentence += (
            " Where it comes from (pixels each layer adds along the first axis; a layer adds "
            f"(kernel - 1) x the stride accumulated before it): {name_a}: {growth[0]}; "
            f"{name_b}: {growth[1]}."
        )
    return sentence


def _growth_text(comparison: Mapping[str, Any], key: str) -> str | None:
    """``'conv2d +2, conv2d_1 +2, max_pooling2d +1 = 6'`` for a chain of single-input layers."""
    layers = [row[key] for row in comparison["layers"] if row[key] is not None]
    spatial = [layer for layer in layers if layer.get("field")]
    if (
        not spatial
        or len(spatial) > 12
        or any(layer.get("field_growth") is None for layer in spatial)
    ):
        return None
    if any(len(layer.get("inbound") or []) > 1 for layer in layers):
        return None
    steps = [
        f"{layer['name']} +{format_number(layer['field_growth'])}"
        for layer in spatial
        if layer["field_growth"]
    ]
    final = spatial[-1]["field"][0]
    return "1 + " + ", ".join(steps) + f" = {format_number(final)}"


def _largest_mac_difference(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    best: Mapping[str, Any] | None = None
    best_delta: float = 0.0
    for row in rows:
        macs_a = (row["a"] or {}).get("macs") or 0
        macs_b = (row["b"] or {}).get("macs") or 0
        if not isinstance(macs_a, int | float) or not isinstance(macs_b, int | float):
            continue
        if abs(macs_b - macs_a) > best_delta:
            best, best_delta = row, abs(macs_b - macs_a)
    return best


# -- HTML --------------------------------------------------------------------------------------


def render_comparison_html(
    a: Report,
    b: Report,
    *,
    comparison: Mapping[str, Any] | None = None,
    label_a: str | None = None,
    label_b: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The comparison as one self-contained HTML page, both models side by side."""
    from app.reports.graph import STAGE_BLOCKS_ABOVE, draw_graph, draw_stages
    from app.reports.html import environment, trusted_svg
    from app.reports.plots import plot_params_macs, plot_receptive_field

    data = dict(comparison or compare_reports(a, b, label_a=label_a, label_b=label_b))
    sides = []
    for key, report in (("a", a), ("b", b)):
        drawing = draw_graph(report, element_id=f"graph-{key}")
        stage_drawings = []
        if len(drawing.nodes) > STAGE_BLOCKS_ABOVE:  # as the report page: one block per stage
            stage_drawings = [
                {"index": part.index, "title": part.title, "reads": part.reads,
                 "svg": trusted_svg(part.drawing.svg), "boxes": len(part.drawing.nodes)}
                for part in draw_stages(report, element_id=f"graph-{key}")
            ]
        sides.append(
            {
                "key": key,
                "label": data[key]["label"],
                "report": report,
                "rf_plot": trusted_svg(plot_receptive_field(report, formats=("svg",)).inline_svg()),
                "params_plot": trusted_svg(plot_params_macs(report, formats=("svg",)).inline_svg()),
                "graph": None if stage_drawings else trusted_svg(drawing.svg),
                "stage_drawings": stage_drawings,
                "graph_caption": (
                    f"{len(drawing.layer_names)} layers as {len(drawing.nodes)} boxes"
                    + (f"; one block per stage ({len(stage_drawings)}), open a block to see its layers"
                       if stage_drawings else "")
                ),
            }
        )
    metric_rows = []
    for key, label in SUMMARY_METRICS:
        entry = data["summary"][key]
        delta = entry.get("delta")
        fmt = format_bytes if key in BYTE_METRICS else format_count
        metric_rows.append(
            {
                "label": label,
                "a": fmt(entry.get("a")),
                "b": fmt(entry.get("b")),
                "delta": (
                    ""
                    if delta is None
                    else (
                        "0"
                        if delta == 0
                        else (f"+{fmt(delta)}" if delta > 0 else f"-{fmt(-delta)}")
                    )
                ),
                "css": "same" if not delta else ("up" if delta > 0 else "down"),
                "change": _percent_change(entry.get("a"), entry.get("b")),
            }
        )
    context = {
        "comparison": data,
        "sides": sides,
        "metric_rows": metric_rows,
        "label_a": data["a"]["label"],
        "label_b": data["b"]["label"],
        "field_rows": _field_rows(data),
        "schema_version": data["schema_version"],
        "generated_at": (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        "field_text": _axes_text,
    }
    return environment().get_template("compare.html.j2").render(**context)


def _field_rows(data: Mapping[str, Any]) -> list[dict[str, str]]:
    field_a, field_b = data["receptive_field"]["a"], data["receptive_field"]["b"]

    def coverage(field: Mapping[str, Any]) -> str:
        values = [c for c in (field.get("coverage") or []) if isinstance(c, int | float)]
        if values and min(values) >= 1:
            return "whole input" + (f" ({min(values):.1f}x)" if min(values) > 1.05 else "")
        return " x ".join(f"{value * 100:.1f}%" for value in values) if values else ""

    return [
        {
            "label": "last feature map",
            "a": str(field_a.get("layer") or ""),
            "b": str(field_b.get("layer") or ""),
        },
        {
            "label": "field size",
            "a": "global" if field_a["global"] else _axes_text(field_a["size"]),
            "b": "global" if field_b["global"] else _axes_text(field_b["size"]),
        },
        {
            "label": "effective stride",
            "a": _axes_text(field_a["stride"]),
            "b": _axes_text(field_b["stride"]),
        },
        {
            "label": "input size",
            "a": _axes_text(field_a.get("input_size")),
            "b": _axes_text(field_b.get("input_size")),
        },
        {"label": "share of the input", "a": coverage(field_a), "b": coverage(field_b)},
    ]


__all__ = [
    "align_layers",
    "compare_reports",
    "describe_layers",
    "explain",
    "format_field",
    "render_comparison_html",
]
