"""Findings: the architecture interpreted in words.

``find(result)`` reads the analysed graph (:class:`app.analysis.graph.AnalysisResult`) and
returns ``report.findings``: one dict per finding with a stable ``code``, a ``severity``
(``info`` | ``warning`` | ``error``), the ``layers`` involved, a ``message`` a person can act on
and ``details`` with the numbers behind it. The codes are listed in :data:`CODES`.

What it looks at, in the spirit of "how should this CNN architecture be interpreted?": the
stages between downsamplings and how field and channels grow in each; whether the final field
sees the whole input; strides larger than kernels (input pixels never looked at); aggressive
early downsampling; deep plain stacks; saturating activations deep in a stack; Flatten-to-Dense
heads that hold most parameters; transposed convolutions prone to checkerboard artefacts;
dilation gridding; residual merges whose shapes differ; misaligned fields; and what the
residual connections buy for the gradient (from :mod:`app.analysis.gradient_flow`).

Example::

    >>> from app.analysis import analyze
    >>> [f["code"] for f in analyze(vgg16_config)["findings"]]          # doctest: +SKIP
    ['stages', 'receptive_field_coverage', 'deep_plain_stack', 'dense_head_dominates', ...]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from app.analysis import gradient_flow
from app.analysis.graph import AnalysisResult, LayerResult
from app.analysis.traits import RESIDUAL_MERGES, SKIP_MERGES, SPATIAL_MERGES, Merge, Trait

CODES: dict[str, str] = {
    "stages": "info: the stages between downsamplings, with field and channel growth",
    "receptive_field_coverage": "info: the last feature map's field covers most of the input",
    "receptive_field_small": "warning: the last feature map's field sees under half the input",
    "stride_exceeds_kernel": "warning: a stride larger than the kernel skips input pixels",
    "aggressive_early_downsampling": "warning: 8x or more downsampling within two convolutions",
    "deep_plain_stack": "warning: 10+ weighted layers in a row, no skip or normalization",
    "saturating_activations_deep": "warning: sigmoid/tanh-like activations deep in a stack",
    "dense_head_dominates": "warning: a Flatten-to-Dense head holds most of the parameters",
    "checkerboard_transposed_conv": "warning: transposed conv kernel not divisible by stride",
    "dilation_gridding": "warning: stacked dilations with a common factor leave a grid of holes",
    "residual_shape_mismatch": "warning: an element-wise merge of differently shaped tensors",
    "misaligned_fields": "warning: merged branches whose field centres differ",
    "residual_connections": "info: what the skip connections buy for the gradient",
    "gradient_flow_vanishing": "warning: predicted vanishing gradients at initialization",
    "gradient_flow_exploding": "warning: predicted exploding gradients at initialization",
}

_DENSE_HEAD_TRAITS = frozenset({Trait.DENSE, Trait.ACTIVATION, Trait.REGULARIZATION,
                               Trait.NORMALIZATION})
"""Layers that make up a Flatten-to-Dense classifier head."""

DEEP_PLAIN_THRESHOLD = 10
"""Weighted layers in a row (no skip, no normalization) from which a stack is called deep."""
SMALL_FIELD_COVERAGE = 0.5
"""Below this fraction of the input on some axis, the final field is called small."""
EARLY_DOWNSAMPLING_STRIDE = 8
EARLY_DOWNSAMPLING_CONVS = 2
DENSE_HEAD_SHARE = 0.5
SATURATING_MIN_COUNT = 3


def _number(value: Fraction | int | float | None) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else round(float(value), 4)
    return value


def _ints(value: Any, rank: int) -> list[int]:
    if isinstance(value, int):
        return [value] * rank
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return list(value)
    return [1] * rank


def _spatial_rank(layer: LayerResult) -> int:
    shape = layer.output_shapes[0] if layer.output_shapes else None
    return max(len(shape) - 2, 1) if shape else 2


def _channels(layer: LayerResult) -> int | None:
    shape = layer.output_shapes[0] if layer.output_shapes else None
    if not shape:
        return None
    axis = 1 if layer.node.config.get("data_format") == "channels_first" else -1
    value = shape[axis]
    return value if isinstance(value, int) else None


def _finding(code: str, severity: str, layers: list[str], message: str,
             details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "severity": severity, "layers": layers, "message": message,
            "details": details or {}}


def _axis_max(values: Iterable[Fraction | int]) -> Fraction | int:
    """The largest value, the first of equal ones (as ``max``); ints and Fractions kept as they
    are (they compare, hash and report alike), anything else read as a Fraction.

    >>> _axis_max([1, Fraction(3, 2), 2])
    2
    """
    best: Fraction | int | None = None
    for value in values:
        kind = type(value)
        if kind is not int and kind is not Fraction:
            value = Fraction(value)
        if best is None or value > best:
            best = value
    if best is None:
        raise ValueError("max() arg is an empty sequence")
    return best


def _field_stride(layer: LayerResult) -> Fraction | int | None:
    """The largest effective stride over the spatial axes, None without a spatial field."""
    field = layer.receptive_field
    if field is None or field.axes is None or field.is_global or field.unknown:
        return None
    return _axis_max([axis.stride for axis in field.axes])


def _field_size(layer: LayerResult) -> Fraction | int | None:
    """The largest receptive-field size over the spatial axes, None without a spatial field."""
    field = layer.receptive_field
    if field is None or field.axes is None or field.is_global or field.unknown:
        return None
    return _axis_max([axis.size for axis in field.axes])


# ---------------------------------------------------------------------------------------------
# Stages and fields
# ---------------------------------------------------------------------------------------------


def _stages(result: AnalysisResult) -> list[dict[str, Any]]:
    """Group spatial layers by effective stride, in order of first appearance.

    A stage is every layer computed at one effective stride (parallel branches included); its
    downsampling layers are those whose stride exceeds their inputs'.
    """
    by_name = result.by_name()
    strides = {layer.name: _field_stride(layer) for layer in result.layers}
    groups: dict[Fraction | int, dict[str, Any]] = {}
    for layer in result.layers:
        stride = strides[layer.name]
        if stride is None:
            continue
        size = _field_size(layer)
        if size is None:
            continue
        group = groups.setdefault(stride, {"layers": [], "sizes": [], "channels": None,
                                           "downsampling": [], "convolutions": 0,
                                           "max_size": size})
        group["layers"].append(layer.name)
        group["sizes"].append(size)
        if size >= group["max_size"]:  # running maximum: the walk stays linear in depth
            group["max_size"] = size
            channels = _channels(layer)
            if channels is not None:
                group["channels"] = channels  # the widest-field map, the stage's result
        if Trait.SPATIAL_KERNEL in layer.traits:
            group["convolutions"] += 1
        known: list[Fraction | int] = []
        for name in layer.inbound:
            inbound_stride = strides.get(name) if name in by_name else None
            if inbound_stride is not None:
                known.append(inbound_stride)
        if known and stride > max(known):
            group["downsampling"].append(layer.name)
    ordered = list(groups.values())
    for group, following in zip(ordered, ordered[1:], strict=False):
        # A stage hands the next one the map its first downsampling layer reads.
        for name in following["downsampling"][:1]:
            feeding = [n for n in by_name[name].inbound if n in group["layers"]]
            if feeding and _channels(by_name[feeding[0]]) is not None:
                group["channels"] = _channels(by_name[feeding[0]])
    out = []
    previous_size: Fraction | None = None
    previous_channels: int | None = None
    for index, (stride, group) in enumerate(groups.items()):
        end_size = group["max_size"]
        start_size = previous_size if previous_size is not None else min(group["sizes"])
        end_channels = group["channels"]
        out.append({
            "index": index + 1,
            "effective_stride": _number(stride),
            "first_layer": group["layers"][0],
            "last_layer": group["layers"][-1],
            "downsampling_layers": group["downsampling"],
            "layer_count": len(group["layers"]),
            "convolutions": group["convolutions"],
            "field_start": _number(start_size),
            "field_end": _number(end_size),
            "field_growth": _number(end_size - start_size),
            "channels_in": previous_channels,
            "channels_out": end_channels,
            "channel_growth": (round(end_channels / previous_channels, 4)
                               if end_channels and previous_channels else None),
        })
        previous_size, previous_channels = end_size, end_channels
    return out


def _stage_finding(result: AnalysisResult) -> list[dict[str, Any]]:
    stages = _stages(result)
    if not stages:
        return []
    parts = []
    for stage in stages:
        channels = (f", channels {stage['channels_in']}->{stage['channels_out']}"
                    if stage["channels_in"] else
                    (f", {stage['channels_out']} channels" if stage["channels_out"] else ""))
        parts.append(f"stage {stage['index']} at stride {stage['effective_stride']} "
                     f"({stage['convolutions']} conv): field {stage['field_start']}->"
                     f"{stage['field_end']} px{channels}")
    message = (f"{len(stages)} stage(s) between downsamplings: " + "; ".join(parts) + ". "
               "Early stages see edges and textures, later ones larger parts; each "
               "downsampling trades resolution for field and (usually) channels.")
    downsampling = [name for stage in stages for name in stage["downsampling_layers"]]
    return [_finding("stages", "info", downsampling, message, {"stages": stages})]


def _coverage_finding(result: AnalysisResult) -> list[dict[str, Any]]:
    from app.analysis.report import receptive_field_summary  # report imports this module

    summary = receptive_field_summary(result)
    if summary.get("layer") is None or not summary.get("coverage"):
        return []
    coverage = summary["coverage"]
    if any(c is None for c in coverage):
        return []
    sizes = [axis["size"] for axis in summary["axes"]]
    inputs = summary["input_size"]
    field_text = "x".join(str(s) for s in sizes)
    input_text = "x".join(str(s) for s in inputs)
    details = {"layer": summary["layer"], "field": sizes, "input_size": inputs,
               "coverage": coverage, "head_is_global": summary.get("head_is_global")}
    if min(coverage) < SMALL_FIELD_COVERAGE:
        head = (" The global head averages these local views, so the decision rests on "
                "patches, not on the object's overall shape." if summary.get("head_is_global")
                else "")
        return [_finding(
            "receptive_field_small", "warning", [summary["layer"]],
            f"Units of the last feature map ({summary['layer']}) see {field_text} px of the "
            f"{input_text} input ({min(coverage):.0%} on the narrowest axis): an object larger "
            f"than that is never seen whole by one unit.{head} More stages, larger strides or "
            "dilation would widen the field.", details)]
    whole = "sees the whole input" if summary.get("sees_whole_input") else \
        f"covers {min(coverage):.0%} of the input"
    return [_finding(
        "receptive_field_coverage", "info", [summary["layer"]],
        f"Units of the last feature map ({summary['layer']}) see {field_text} px of the "
        f"{input_text} input: the field {whole}; the effective field is smaller than this "
        "theoretical one, concentrated near its centre.", details)]


# ---------------------------------------------------------------------------------------------
# Layer-level findings
# ---------------------------------------------------------------------------------------------


def _stride_kernel_findings(result: AnalysisResult) -> list[dict[str, Any]]:
    layers: list[str] = []
    details: list[dict[str, Any]] = []
    for layer in result.layers:
        config = layer.node.config
        traits = layer.traits
        if Trait.SPATIAL_KERNEL in traits and Trait.TRANSPOSED not in traits:
            rank = _spatial_rank(layer)
            kernel = _ints(config.get("kernel_size", 1), rank)
            dilation = _ints(config.get("dilation_rate", 1), rank)
            strides = _ints(config.get("strides", 1), rank)
        elif Trait.POOLING in traits:
            rank = _spatial_rank(layer)
            kernel = _ints(config.get("pool_size", 2), rank)
            dilation = [1] * rank
            raw = config.get("strides")
            strides = _ints(raw if raw is not None else config.get("pool_size", 2), rank)
        else:
            continue
        effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=False)]
        if any(s > k for s, k in zip(strides, effective, strict=False)):
            skipped = [max(s - k, 0) for s, k in zip(strides, effective, strict=False)]
            layers.append(layer.name)
            details.append({"layer": layer.name, "kernel": effective, "strides": strides,
                            "skipped_pixels_per_step": skipped})
    if not layers:
        return []
    first = details[0]
    skipped = max(first["skipped_pixels_per_step"])
    step = max(first["strides"])
    return [_finding(
        "stride_exceeds_kernel", "warning", layers,
        f"{', '.join(layers)}: the stride is larger than the kernel, so {first['layer']} never "
        f"looks at {skipped} of every {step} input pixels along an axis (kernel "
        f"{first['kernel']}, strides {first['strides']}). Use a kernel at least as large as the "
        "stride, or put the stride on a larger kernel (as ResNet v1.5 moves it to the 3x3).",
        {"layers": details})]


def _early_downsampling(result: AnalysisResult) -> list[dict[str, Any]]:
    convs = 0
    for layer in result.layers:
        if Trait.SPATIAL_KERNEL in layer.traits:
            convs += 1
        stride = _field_stride(layer)
        if stride is None:
            continue
        if stride >= EARLY_DOWNSAMPLING_STRIDE and convs <= EARLY_DOWNSAMPLING_CONVS:
            field = _field_size(layer)
            return [_finding(
                "aggressive_early_downsampling", "warning", [layer.name],
                f"By {layer.name} the input is already downsampled {_number(stride)}x after only "
                f"{convs} convolution(s) (field {_number(field)} px): fine detail is discarded "
                "before features exist to keep it. Downsample more gradually (stride 2 per "
                "stage) or add convolutions before the first reductions.",
                {"effective_stride": _number(stride), "convolutions_before": convs,
                 "field": _number(field)})]
        if convs > EARLY_DOWNSAMPLING_CONVS:
            return []
    return []


def _deep_plain_stack(result: AnalysisResult, weighted: set[str]) -> list[dict[str, Any]]:
    """The longest chain of weighted layers with no merge and no normalization in between."""
    # Per layer: (run length, last weighted layer of the run); back-pointers rebuild the chain.
    run: dict[str, tuple[int, str | None]] = {}
    previous_weighted: dict[str, str | None] = {}
    best: tuple[int, str | None] = (0, None)
    for layer in result.layers:
        if Trait.NORMALIZATION in layer.traits or layer.merge in SPATIAL_MERGES:
            run[layer.name] = (0, None)
            continue
        inputs = [run[name] for name in layer.inbound if name in run]
        previous = max(inputs, key=lambda item: item[0]) if inputs else (0, None)
        if layer.name in weighted:
            previous_weighted[layer.name] = previous[1]
            current: tuple[int, str | None] = (previous[0] + 1, layer.name)
        else:
            current = previous
        run[layer.name] = current
        if current[0] > best[0]:
            best = current
    count = best[0]
    names: list[str] = []
    cursor = best[1]
    while cursor is not None and len(names) < count:
        names.append(cursor)
        cursor = previous_weighted.get(cursor)
    names.reverse()
    if count < DEEP_PLAIN_THRESHOLD:
        return []
    return [_finding(
        "deep_plain_stack", "warning", names,
        f"{count} weighted layers in a row ({names[0]} ... {names[-1]}) with no skip connection "
        "and no normalization: gradients must cross every one of them, and deeper is not "
        "automatically better. Residual connections or BatchNormalization keep such stacks "
        "trainable.", {"length": count, "threshold": DEEP_PLAIN_THRESHOLD})]


def _saturating(result: AnalysisResult, prediction: dict[str, Any]) -> list[dict[str, Any]]:
    successors = result.successors()
    by_name = result.by_name()
    outputs = set(result.output_layers)
    hidden = []
    for layer in result.layers:
        activation = gradient_flow.activation_of(layer)
        if activation not in gradient_flow.SATURATING_ACTIVATIONS or layer.name in outputs:
            continue
        # A sigmoid gate feeding a Multiply (squeeze-and-excitation) is not on the signal path.
        if any(by_name[s].merge is Merge.PRODUCT for s in successors.get(layer.name, [])
               if s in by_name):
            continue
        hidden.append((layer.name, activation))
    if len(hidden) < SATURATING_MIN_COUNT:
        return []
    names = [name for name, _ in hidden]
    kinds = sorted({activation for _, activation in hidden})
    verdict = prediction.get("verdict")
    ratio = prediction.get("ratio")
    tail = (f" The predicted gradient at the first layer is {ratio:.2g} of the last's "
            f"({verdict})." if isinstance(ratio, float) and verdict else "")
    return [_finding(
        "saturating_activations_deep", "warning", names,
        f"{len(hidden)} hidden layers ({names[0]} ... {names[-1]}) use saturating activations "
        f"({', '.join(kinds)}): their "
        "derivative is at most 1/4 (sigmoid) or 1 only near zero (tanh), so the gradient shrinks "
        f"at every one of them.{tail} ReLU-family activations, normalization or skip "
        "connections avoid this.", {"count": len(hidden), "activations": kinds,
                                    "gradient_verdict": verdict, "gradient_ratio": ratio})]


def _dense_head(result: AnalysisResult) -> list[dict[str, Any]]:
    total = sum(layer.params or 0 for layer in result.listed_layers)
    if total <= 0:
        return []
    by_name = result.by_name()
    successors = result.successors()
    found = []
    for layer in result.layers:
        if Trait.FLATTEN not in layer.traits:
            continue
        # Walk forward through the dense head behind this Flatten.
        head, pending, seen = [], list(successors.get(layer.name, [])), set()
        while pending:
            name = pending.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            node = by_name[name]
            if node.traits & _DENSE_HEAD_TRAITS:
                if Trait.DENSE in node.traits:
                    head.append(name)
                pending.extend(successors.get(name, []))
        head_params = sum(by_name[name].params or 0 for name in head)
        share = head_params / total
        if head and share >= DENSE_HEAD_SHARE:
            first_dense = next((by_name[n] for n in head
                                if layer.name in by_name[n].inbound), by_name[head[0]])
            found.append(_finding(
                "dense_head_dominates", "warning", [layer.name] + head,
                f"The Flatten-to-Dense head ({layer.name} -> {', '.join(head)}) holds "
                f"{share:.1%} of the {total:,} parameters; {first_dense.name} alone has "
                f"{(first_dense.params or 0):,}. The convolutional part does the seeing, the head "
                "mostly memorizes; global average pooling before the classifier cuts this and "
                "frees the model from a fixed input size.",
                {"head_params": head_params, "total_params": total, "share": round(share, 4)}))
    return found


def _checkerboard(result: AnalysisResult) -> list[dict[str, Any]]:
    layers, details = [], []
    for layer in result.layers:
        if Trait.TRANSPOSED not in layer.traits:
            continue
        rank = _spatial_rank(layer)
        kernel = _ints(layer.node.config.get("kernel_size", 1), rank)
        strides = _ints(layer.node.config.get("strides", 1), rank)
        if any(s > 1 and k % s for k, s in zip(kernel, strides, strict=False)):
            layers.append(layer.name)
            details.append({"layer": layer.name, "kernel": kernel, "strides": strides})
    if not layers:
        return []
    return [_finding(
        "checkerboard_transposed_conv", "warning", layers,
        f"{', '.join(layers)}: the transposed convolution's kernel {details[0]['kernel']} is not "
        f"divisible by its stride {details[0]['strides']}, so output pixels receive unequal "
        "numbers of contributions and a checkerboard pattern appears (Odena et al. 2016). Use a "
        "kernel divisible by the stride, or resize (UpSampling) followed by a convolution.",
        {"layers": details})]


def _dilation_gridding(result: AnalysisResult) -> list[dict[str, Any]]:
    by_name = result.by_name()
    dilation_of: dict[str, int] = {}
    for layer in result.layers:
        if Trait.SPATIAL_KERNEL in layer.traits:
            rates = _ints(layer.node.config.get("dilation_rate", 1), _spatial_rank(layer))
            dilation_of[layer.name] = max(rates)
    # The nearest convolution upstream of each layer (through non-convolution layers).
    upstream: dict[str, list[str]] = {}
    for layer in result.layers:
        found: list[str] = []
        for name in layer.inbound:
            if name in dilation_of:
                found.append(name)
            else:
                found.extend(upstream.get(name, []))
        upstream[layer.name] = list(dict.fromkeys(found))
    chains: list[list[str]] = []
    for layer in result.layers:
        rate = dilation_of.get(layer.name, 1)
        if rate <= 1:
            continue
        for previous in upstream.get(layer.name, []):
            if dilation_of.get(previous, 1) > 1 and math.gcd(rate, dilation_of[previous]) > 1:
                for chain in chains:
                    if chain[-1] == previous:
                        chain.append(layer.name)
                        break
                else:
                    chains.append([previous, layer.name])
                break
    if not chains:
        return []
    names = [name for chain in chains for name in chain]
    rates = [dilation_of[name] for name in chains[0]]
    del by_name
    return [_finding(
        "dilation_gridding", "warning", names,
        f"{', '.join(chains[0])} stack dilation rates {rates} that share a common factor: each "
        "unit samples its input on a sparse grid and the holes never fill in (gridding; Wang et "
        "al. 2018). Use rates without a common factor (e.g. 1, 2, 3) or a non-dilated "
        "convolution in between.", {"chains": chains})]


def _shape_mismatch(result: AnalysisResult) -> list[dict[str, Any]]:
    """Residual-style merges (Add, ...) whose inputs differ in shape and are broadcast.

    Multiply is left out: gating (squeeze-and-excitation) broadcasts a per-channel scale on
    purpose.
    """
    merges: list[dict[str, Any]] = []
    for layer in result.layers:
        if layer.merge not in RESIDUAL_MERGES or len(layer.input_shapes) < 2:
            continue
        shapes = [list(shape) if shape else None for shape in layer.input_shapes]
        if len({tuple(s) for s in shapes if s is not None}) > 1:
            merges.append({"layer": layer.name, "class_name": layer.class_name,
                           "inputs": list(layer.inbound), "input_shapes": shapes})
    if not merges:
        return []
    first = merges[0]
    more = f" (and {len(merges) - 1} more)" if len(merges) > 1 else ""
    names: list[str] = [m["layer"] for m in merges]
    inputs: list[str] = [name for m in merges for name in m["inputs"] if name not in names]
    return [_finding(
        "residual_shape_mismatch", "warning", names + list(dict.fromkeys(inputs)),
        f"{first['layer']}{more} ({first['class_name']}) merges tensors of different shapes "
        f"{first['input_shapes']}: they are broadcast, so one branch is repeated across the "
        "other's positions or channels instead of matched element by element. A 1x1 projection "
        "on the shortcut makes the shapes agree.", {"merges": merges})]


def _misaligned(result: AnalysisResult) -> list[dict[str, Any]]:
    """One finding for all merges where branches with different field centres meet.

    The engine marks every layer downstream of such a merge; only the merges themselves (where
    the misalignment starts) are named.
    """
    by_name = result.by_name()
    origins = []
    for entry in result.misaligned:
        layer = by_name.get(entry["layer"])
        if layer is None or layer.merge not in SPATIAL_MERGES:
            continue
        origins.append({"layer": entry["layer"],
                        "branches": [pair.split("|") for pair in entry["branches"]]})
    if not origins:
        return []
    merges = [origin["layer"] for origin in origins]
    branch_layers = sorted({name for origin in origins for pair in origin["branches"]
                            for name in pair} - set(merges))
    first = origins[0]
    more = f" (and {len(origins) - 1} more merge(s))" if len(origins) > 1 else ""
    return [_finding(
        "misaligned_fields", "warning", merges + branch_layers,
        f"{first['layer']}{more} merges branches whose receptive fields are centred on "
        f"different input pixels ({', '.join(' vs '.join(p) for p in first['branches'])}): the "
        "merged features describe slightly shifted locations. Asymmetric 'same' padding with "
        "even input sizes, or 'valid' convolutions on one branch only, cause this; odd input "
        "sizes or symmetric explicit padding keep the centres aligned.",
        {"merges": origins})]


def _residual_value(result: AnalysisResult, prediction: dict[str, Any]) -> list[dict[str, Any]]:
    merges = [layer.name for layer in result.layers
              if layer.merge in SKIP_MERGES and len(set(layer.inbound)) > 1]
    skipping = [entry for entry in prediction.get("layers", []) if entry["skip_connections"]]
    if not merges or not skipping or prediction.get("verdict") is None:
        return []
    depth = prediction.get("depth") or {}
    shortest, longest = depth.get("shortest"), depth.get("longest")
    ratio, verdict = prediction.get("ratio"), prediction.get("verdict")
    ratio_text = f"{ratio:.2g}" if isinstance(ratio, float) else str(ratio)
    message = (f"{len(merges)} merge(s) create skip connections around {len(skipping)} weighted "
               f"layer(s). From the first weighted layer the gradient can reach the output "
               f"through {shortest} weighted layers instead of {longest}; the predicted gradient "
               f"there is {ratio_text} of the last layer's ({verdict}).")
    if shortest is not None and longest is not None and shortest >= longest:
        message += " The skips do not shorten the path from the first layer."
    return [_finding("residual_connections", "info", merges, message, {
        "merges": len(merges), "layers_bypassed": len(skipping), "shortest_path": shortest,
        "longest_path": longest, "gradient_ratio": ratio, "gradient_verdict": verdict})]


def _gradient_verdict(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    verdict = prediction.get("verdict")
    if verdict not in ("vanishing", "exploding"):
        return []
    ratio = prediction.get("ratio")
    thresholds = prediction.get("thresholds", {})
    ratio_text = (f"{ratio:.2g}" if isinstance(ratio, float)
                  else f"1e{prediction.get('log10_ratio')}")
    bound = (f"below {thresholds.get('vanishing_below')}" if verdict == "vanishing"
             else f"above {thresholds.get('exploding_above')}")
    first = next((entry for entry in prediction.get("layers", [])
                  if entry["name"] == prediction.get("first_layer")), None)
    normalized = bool(first and first.get("normalizations") and first["normalizations"]["most"])
    if verdict == "vanishing":
        remedy = ("Use ReLU-family activations with He initialization, BatchNormalization or "
                  "residual connections.")
    elif normalized:
        remedy = ("With BatchNormalization in training mode the backward signal grows with depth "
                  "(Yang et al. 2019); such networks still train, usually with a learning-rate "
                  "warm-up, or with the last normalization of each residual branch initialised "
                  "to zero (Goyal et al. 2017).")
    else:
        remedy = "Use variance-preserving initialization (glorot/he) or normalization."
    return [_finding(
        f"gradient_flow_{verdict}", "warning",
        [str(prediction.get("first_layer")), str(prediction.get("last_layer"))],
        f"At initialization the gradient reaching {prediction.get('first_layer')} is predicted to "
        f"be {ratio_text} times the one reaching {prediction.get('last_layer')} ({bound}): "
        f"{verdict} gradients. {remedy}",
        {"ratio": ratio, "log10_ratio": prediction.get("log10_ratio"), "thresholds": thresholds})]


def find(result: AnalysisResult) -> list[dict[str, Any]]:
    """All findings for an analysed model: errors and warnings first, then information."""
    prediction = gradient_flow.predict(result)
    weighted = {entry["name"] for entry in prediction.get("layers", [])}
    findings: list[dict[str, Any]] = []
    findings += _stage_finding(result)
    findings += _coverage_finding(result)
    findings += _residual_value(result, prediction)
    findings += _stride_kernel_findings(result)
    findings += _early_downsampling(result)
    findings += _deep_plain_stack(result, weighted)
    findings += _saturating(result, prediction)
    findings += _dense_head(result)
    findings += _checkerboard(result)
    findings += _dilation_gridding(result)
    findings += _shape_mismatch(result)
    findings += _misaligned(result)
    findings += _gradient_verdict(prediction)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f["severity"]])  # stable: keeps the order above
    return findings
