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
from app.analysis.fields import receptive_field_summary
from app.analysis.graph import AnalysisResult, LayerResult
from app.analysis.skips import Skips, find_skips
from app.analysis.traits import RESIDUAL_MERGES, SPATIAL_MERGES, Merge, Trait

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
    "residual_connections": "info: what the residual merges (skip connections) buy for the gradient",
    "dense_connections": "info: concatenations that pass earlier feature maps forward (DenseNet)",
    "full_resolution_compute": "warning: most of the compute runs at the full input resolution",
    "bias_before_normalization": "info: a bias right before BatchNormalization is cancelled by it",
    "residual_branch_nonnegative": "warning: residual branches end in ReLU before the addition",
    "gradient_flow_vanishing": "warning: predicted vanishing gradients at initialization",
    "gradient_flow_exploding": "warning: predicted exploding gradients at initialization",
    "gradient_flow_normalization_growth": "info: gradients grow under normalization at "
                                          "initialization, in the range where networks train",
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
FULL_RESOLUTION_SHARE = 0.5
"""From this share of the MACs computed at effective stride 1, the compute is called full-resolution."""
FULL_RESOLUTION_MIN_MACS = 100_000_000
"""...and only when those MACs matter (a 28x28 digit classifier is cheap at any resolution)."""
NONNEGATIVE_ACTIVATIONS = frozenset({"relu", "relu6", "sigmoid", "hard_sigmoid", "softplus",
                                     "exponential"})
"""Activation functions (by the name the rules report) whose outputs are never negative."""
SATURATING_MIN_COUNT = 3


def _number(value: Fraction | int | float | None) -> int | float | None:
    if value is None or type(value) is int:  # the usual plain int: isinstance() of Fraction
        return value                          # goes through the ABC machinery (numbers.Rational)
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else round(float(value), 4)
    return value


def _channels(layer: LayerResult) -> int | None:
    shape = layer.output_shapes[0] if layer.output_shapes else None
    if not shape:
        return None
    value = shape[1 if layer.channels_first else -1]
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


def _local_axes(layer: LayerResult) -> tuple[Any, ...] | None:
    """The per-axis field of a layer's local (convolutional) paths, None without one.

    A layer behind a squeeze-and-excitation gate is ``global`` (the gate sees everything) but
    keeps the axes of its convolutional path: those say where it works.
    """
    field = layer.receptive_field
    if field is None or field.axes is None or field.unknown:
        return None
    return field.axes


def _field_stride(layer: LayerResult) -> Fraction | int | None:
    """The largest effective stride over the spatial axes, None without a spatial field."""
    axes = _local_axes(layer)
    return None if axes is None else _axis_max([axis.stride for axis in axes])


class _Layout:
    """What several passes read of every layer, gathered in one pass over ``result.layers``
    (:func:`_layout`): a graph can hold tens of thousands of layers, and at that size each pass
    over them costs more in memory traffic than in arithmetic.

    - ``position``: layer name -> its index in ``result.layers``;
    - ``sources``: per index, the indices of the layer's inputs (``inbound`` through
      ``position``, in order, names not in the graph left out): the passes that follow the
      inputs read these instead of looking each name up again;
    - ``strides``/``sizes``: per index, :func:`_field_stride` and :func:`_field_size` (None
      without a spatial field);
    - ``flat``: the indices whose stride is None, in order;
    - ``merges``: the layers that merge their inputs (``merge`` set), in order;
    - ``traits``: every trait some layer declares (a pass looking for a trait nobody declares
      has nothing to find).
    """

    __slots__ = ("flat", "merges", "position", "sizes", "sources", "strides", "traits")

    def __init__(self) -> None:
        self.position: dict[str, int] = {}
        self.sources: list[tuple[int, ...]] = []
        self.strides: list[Fraction | int | None] = []
        self.sizes: list[Fraction | int | None] = []
        self.flat: list[int] = []
        self.merges: list[LayerResult] = []
        self.traits: frozenset[Trait] = frozenset()


def _layout(result: AnalysisResult) -> _Layout:
    """The :class:`_Layout` of an analysed graph (one pass; each field's extent is read inline
    for the usual 2D field of plain ints, once per field object otherwise).

    An input of one or two is looked up when its layer is read, among the layers before it
    (names are unique, so the index found is the final one): ``result.layers`` lists inputs
    first, except for shared layers, whose inputs not met yet (and any layer of three inputs or
    more) are looked up once every position is known."""
    facts = _Layout()
    position, strides, sizes, flat = facts.position, facts.strides, facts.sizes, facts.flat
    merges, sources = facts.merges, facts.sources
    later: list[int] = []  # layers with an input not met yet (shared layers)
    trait_sets: set[frozenset[Trait]] = set()  # a few distinct sets: their hashes are cached
    by_field: dict[int, tuple[Fraction | int | None, Fraction | int | None]] = {}
    for index, layer in enumerate(result.layers):
        inbound = layer.inbound
        count = len(inbound)
        if count == 1:  # most layers
            source = position.get(inbound[0])
            if source is not None:
                sources.append((source,))
            else:
                sources.append(())
                later.append(index)
        elif count == 2:  # a residual merge
            source = position.get(inbound[0])
            other = position.get(inbound[1])
            if source is not None and other is not None:
                sources.append((source, other))
            else:
                sources.append(())
                later.append(index)
        elif count:
            sources.append(())
            later.append(index)  # read below, once every position is known
        else:
            sources.append(())
        position[layer.name] = index
        trait_sets.add(layer.traits)
        if layer.merge is not None:
            merges.append(layer)
        field = layer.receptive_field
        if field is None or field.axes is None or field.unknown:  # _local_axes, inline
            strides.append(None)
            sizes.append(None)
            flat.append(index)
            continue
        axes = field.axes
        if len(axes) == 2:  # the usual 2D field, two plain ints per value: _extent, inline
            first, second = axes
            stride, other_stride = first.stride, second.stride
            size, other_size = first.size, second.size
            if type(stride) is int and type(other_stride) is int and type(size) is int \
                    and type(other_size) is int:
                strides.append(other_stride if other_stride > stride else stride)
                sizes.append(other_size if other_size > size else size)
                continue
        key = id(field)  # the fields outlive this loop: ids stay unique
        extent = by_field.get(key)
        if extent is None:
            extent = by_field[key] = _extent(axes)
        strides.append(extent[0])
        sizes.append(extent[1])
    facts.traits = frozenset().union(*trait_sets)
    layers = result.layers
    for index in later:
        sources[index] = tuple([source for source in map(position.get, layers[index].inbound)
                                if source is not None])
    return facts


def _extent(axes: tuple[Any, ...]) -> tuple[Fraction | int, Fraction | int]:
    """(largest stride, largest size) over a field's axes, each as :func:`_axis_max` picks it
    (the first of equal values)."""
    return _axis_max([axis.stride for axis in axes]), _axis_max([axis.size for axis in axes])


def _field_size(layer: LayerResult) -> Fraction | int | None:
    """The largest receptive-field size over the spatial axes, None without a spatial field."""
    axes = _local_axes(layer)
    return None if axes is None else _axis_max([axis.size for axis in axes])


def _resolution(layer: LayerResult) -> list[int | None] | None:
    """The spatial size of a layer's (first) output, channels-first aware."""
    shape = layer.output_shapes[0] if layer.output_shapes else None
    axes = _local_axes(layer)
    if not shape or axes is None or len(shape) < len(axes) + 2:
        return None
    if layer.channels_first:
        spatial = shape[2:2 + len(axes)]
    else:
        spatial = shape[1:1 + len(axes)]
    return [value if isinstance(value, int) else None for value in spatial]


# ---------------------------------------------------------------------------------------------
# Stages and fields
# ---------------------------------------------------------------------------------------------

_PASS_THROUGH_TRAITS = frozenset({Trait.PADDING, Trait.CROPPING})
"""Layers that change the map's size but not what it holds: a stage's output is read before them."""


class _Group:
    """The layers computed at one effective stride (one resampling phase), in graph order: their
    indices in ``result.layers`` and names, and their parameters and MACs summed (gathered as
    they are grouped: the stage does not read every layer again)."""

    __slots__ = ("downsampling", "indices", "kernels", "convolutions", "macs", "names",
                 "params", "stride", "upsampling")

    def __init__(self, stride: Fraction | int) -> None:
        self.stride = stride
        self.indices: list[int] = []
        self.names: list[str] = []
        self.downsampling: list[str] = []
        self.upsampling: list[str] = []
        self.kernels = 0
        self.convolutions = 0
        self.params = 0
        self.macs = 0

    def absorb(self, other: _Group, *, before: bool) -> None:
        self.indices = other.indices + self.indices if before else self.indices + other.indices
        self.names = other.names + self.names if before else self.names + other.names
        self.downsampling = (other.downsampling + self.downsampling if before
                             else self.downsampling + other.downsampling)
        self.upsampling = (other.upsampling + self.upsampling if before
                           else self.upsampling + other.upsampling)
        self.kernels += other.kernels
        self.convolutions += other.convolutions
        self.params += other.params
        self.macs += other.macs


def _group_layers(
    result: AnalysisResult, facts: _Layout
) -> tuple[list[_Group], list[LayerResult]]:
    """Stages (groups that compute) and the head (what follows the last stage).

    Each spatial layer belongs to the group of its effective stride; an upsampling layer starts
    a new phase, so a decoder at stride 8 is not merged with the encoder at stride 8. Padding and
    cropping keep the stride and so never start a stage. A group without a weighted layer (the
    input and its padding, a pooling between two stages) joins the next stage; after the last
    stage it is the head. Non-spatial layers inside the body (a squeeze-and-excitation gate's
    pooled branch) belong to the stage they read from; those that feed nothing spatial are the
    head (global pooling, the classifier). ``facts``: from :func:`_layout`.

    Per-layer state is kept in lists by index (``facts.sources`` lists an input's):
    a layer's inputs usually come before it, and where they do not (shared layers), the state
    of one not reached yet reads as it did by name (phase 0, no group).
    """
    layers = result.layers
    strides, position, sources = facts.strides, facts.position, facts.sources
    successors = result.successors()
    # Whether a layer without a stride feeds a spatial layer, directly or through other layers
    # without one (only those are asked); latest first, so a consumer listed later is known.
    feeds_spatial: dict[int, bool] = {}
    no_successors: list[str] = []
    for index in reversed(facts.flat):
        feeds = False
        for name in successors.get(layers[index].name, no_successors):
            consumer = position.get(name)
            if consumer is not None and (strides[consumer] is not None
                                         or feeds_spatial.get(consumer, False)):
                feeds = True
                break
        feeds_spatial[index] = feeds
    phase = [0] * len(layers)
    group_of: list[_Group | None] = [None] * len(layers)
    groups: dict[tuple[int, Fraction | int], _Group] = {}
    head: list[int] = []
    latest: _Group | None = None  # the group last looked up, and its phase
    latest_phase = 0
    kernel_trait, spatial_kernel_trait = Trait.KERNEL, Trait.SPATIAL_KERNEL  # hoisted lookups
    for index, layer in enumerate(layers):
        stride = strides[index]
        # One pass over the inputs in the graph: the latest phase among them (0 when none:
        # phases never go below 0) and the least and greatest of their known strides.
        inbound_phase = 0
        lowest: Fraction | int | None = None
        highest: Fraction | int | None = None
        inputs = sources[index]
        for source in inputs:
            source_phase = phase[source]
            if source_phase > inbound_phase:
                inbound_phase = source_phase
            source_stride = strides[source]
            if source_stride is not None:
                if lowest is None or source_stride < lowest:
                    lowest = source_stride
                if highest is None or source_stride > highest:
                    highest = source_stride
        group: _Group | None
        if stride is None:
            phase[index] = inbound_phase
            group = None  # the first input's group, if it has one yet
            for source in inputs:
                if group_of[source] is not None:
                    group = group_of[source]
                    break
            if group is None or not feeds_spatial[index]:
                head.append(index)
                continue
        else:
            upsamples = lowest is not None and stride < lowest
            if upsamples:
                inbound_phase += 1
            phase[index] = inbound_phase
            if latest is not None and inbound_phase == latest_phase and stride == latest.stride:
                group = latest  # the previous layer's group (the key compares as the dict does)
            else:
                key = (inbound_phase, stride)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(stride)
                latest, latest_phase = group, inbound_phase
            if highest is not None and stride > highest:
                group.downsampling.append(layer.name)
            if upsamples:
                group.upsampling.append(layer.name)
        group.indices.append(index)
        group.names.append(layer.name)
        group_of[index] = group
        value = layer.params
        if value is not None:
            group.params += value
        value = layer.macs
        if value is not None:
            group.macs += value
        traits = layer.traits
        if kernel_trait in traits:
            group.kernels += 1
        if spatial_kernel_trait in traits:
            group.convolutions += 1
    stages: list[_Group] = []
    pending: list[_Group] = []
    for group in groups.values():
        if group.kernels == 0:
            pending.append(group)
            continue
        for waiting in reversed(pending):
            group.absorb(waiting, before=True)
        pending = []
        stages.append(group)
    if not stages:
        return [], []
    # the head in graph order: the trailing groups' layers and the head's (never both)
    head += [index for group in pending for index in group.indices]
    head.sort()
    return stages, [layers[index] for index in head]


def _stage_output(group: _Group, later: set[str], result: AnalysisResult,
                  sizes: list[Fraction | int | None]) -> LayerResult:
    """The map a stage hands on: of its layers read by a later stage or the head, the one with
    the widest field (the last of equal ones; read before any padding); the widest-field layer
    when nothing follows. ``sizes``: :func:`_field_size` of each of the group's layers.

    Latest first, so the last of the widest is the first of them met: a layer's consumers are
    looked up only when its field is wider than that of every feeding layer after it.
    """
    successors = result.successors()
    by_name = result.by_name()
    layers = result.layers
    widest: LayerResult | None = None
    widest_size: Fraction | int | None = None
    feeding: LayerResult | None = None
    feeding_size: Fraction | int | None = None
    index = len(sizes)
    for size in reversed(sizes):
        index -= 1
        if size is None:
            continue
        if widest_size is None or size > widest_size:
            widest, widest_size = layers[group.indices[index]], size
        if later and (feeding_size is None or size > feeding_size) and \
                not later.isdisjoint(successors.get(group.names[index], ())):
            feeding, feeding_size = layers[group.indices[index]], size
    best = feeding if feeding is not None else widest
    if best is None:  # every group holds a layer with a field (the one that started it)
        raise ValueError("a stage without a spatial layer")
    seen = 0
    while best.traits & _PASS_THROUGH_TRAITS and best.inbound and seen < 64:
        previous = by_name.get(best.inbound[0])
        if previous is None or _field_size(previous) is None:
            break
        best, seen = previous, seen + 1
    return best


def _sum(values: Iterable[int | None]) -> int:
    total = 0  # a loop, not sum(<generator>): over every layer, several times
    for value in values:
        if value is not None:
            total += value
    return total


def _input_channels(result: AnalysisResult) -> int | None:
    by_name = result.by_name()
    for name in result.input_layers:
        layer = by_name.get(name)
        if layer is not None and _local_axes(layer) is not None:
            return _channels(layer)
    return None


def stages_of(
    result: AnalysisResult, facts: _Layout | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The stages of an analysed model and its head, as the report states them.

    A stage is every layer computed at one effective stride (parallel branches and shortcuts
    included) that holds at least one weighted layer; its ``downsampling_layers`` are those
    whose stride exceeds their inputs' (the layers that change the resolution). ``resolution``
    and ``channels_out`` are those of the map the stage hands on. The head is every layer after
    the last stage (global pooling, a final pooling, the classifier), None when there is none.
    ``facts``: :func:`_layout` when the caller has it.
    """
    if facts is None:
        facts = _layout(result)
    groups, head_layers = _group_layers(result, facts)
    field_sizes = facts.sizes
    stages: list[dict[str, Any]] = []
    previous_size: Fraction | int | None = None
    previous_channels = _input_channels(result)
    for index, group in enumerate(groups):
        later = {name for following in groups[index + 1:] for name in following.names}
        later |= {layer.name for layer in head_layers}
        # The largest and least field in one loop (the first of equal ones, as _axis_max and
        # min pick them).
        names = group.names
        layer_sizes = [field_sizes[at] for at in group.indices]
        end_size: Fraction | int | None = None
        least: Fraction | int | None = None
        for size in layer_sizes:
            if size is not None:
                if end_size is None or size > end_size:
                    end_size = size
                if least is None or size < least:
                    least = size
        output = _stage_output(group, later, result, layer_sizes)
        start_size = previous_size if previous_size is not None else least
        channels = _channels(output)
        stages.append({
            "index": index + 1,
            "effective_stride": _number(group.stride),
            "resolution": _resolution(output),
            "first_layer": names[0],
            "last_layer": names[-1],
            "output_layer": output.name,
            "downsampling_layers": group.downsampling,
            "upsampling_layers": group.upsampling,
            "layer_count": len(names),
            "layers": names,
            "convolutions": group.convolutions,
            "weighted_layers": group.kernels,
            "params": group.params,
            "macs": group.macs,
            "field_start": _number(start_size),
            "field_end": _number(end_size),
            "field_growth": (_number(end_size - start_size)
                             if end_size is not None and start_size is not None else None),
            "channels_in": previous_channels,
            "channels_out": channels,
            "channel_growth": (round(channels / previous_channels, 4)
                               if channels and previous_channels else None),
        })
        previous_size, previous_channels = end_size, channels
    head = None
    if head_layers and stages:
        position = facts.position
        head = {
            "first_layer": head_layers[0].name,
            "last_layer": head_layers[-1].name,
            "layer_count": len(head_layers),
            "layers": [layer.name for layer in head_layers],
            "params": _sum(layer.params for layer in head_layers),
            "macs": _sum(layer.macs for layer in head_layers),
            "downsampling_layers": [layer.name for layer in head_layers
                                    if facts.strides[position[layer.name]] is not None
                                    and Trait.POOLING in layer.traits],
            "global": any(Trait.GLOBAL_POOLING in layer.traits or Trait.FLATTEN in layer.traits
                          for layer in head_layers),
        }
    return stages, head


def _dims(resolution: list[int | None] | None) -> str:
    return "x".join("?" if value is None else str(value) for value in resolution or [])


def _stage_finding(result: AnalysisResult, facts: _Layout | None = None) -> list[dict[str, Any]]:
    stages, head = stages_of(result, facts)
    if not stages:
        return []
    parts = []
    for stage in stages:
        channels = (f", channels {stage['channels_in']}->{stage['channels_out']}"
                    if stage["channels_in"] else
                    (f", {stage['channels_out']} channels" if stage["channels_out"] else ""))
        where = f"{_dims(stage['resolution'])} at stride" if stage["resolution"] else "stride"
        parts.append(f"stage {stage['index']} {where} {stage['effective_stride']} "
                     f"({stage['convolutions']} conv): field {stage['field_start']}->"
                     f"{stage['field_end']} px{channels}")
    count = len(stages)
    message = (f"{count} stage{'s' if count != 1 else ''} between downsamplings: "
               + "; ".join(parts) + ". "
               "Early stages see edges and textures, later ones larger parts; each "
               "downsampling trades resolution for field and (usually) channels.")
    downsampling = [name for stage in stages for name in stage["downsampling_layers"]]
    return [_finding("stages", "info", downsampling, message, {"stages": stages, "head": head})]


def _coverage_finding(result: AnalysisResult, summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    if summary is None:
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
               "coverage": list(coverage), "head_is_global": summary.get("head_is_global")}
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
    """Convolutions (not transposed) and poolings whose stride exceeds their (dilated) kernel
    along an axis: input pixels no output reads. Each layer's :class:`Window` as its rule read
    it."""
    layers: list[str] = []
    details: list[dict[str, Any]] = []
    spatial_kernel, transposed, pooling = Trait.SPATIAL_KERNEL, Trait.TRANSPOSED, Trait.POOLING
    for layer in result.layers:
        window = layer.window
        if window is None:
            continue
        traits = layer.traits
        if spatial_kernel in traits and transposed not in traits:
            # no stride above 1 (max(strides) <= 1 without max(), a call CPython 3.11 makes
            # costly: see gradient_flow.log10_layer_gradient_norm); kernels are positive (the
            # rules refuse others): no gap
            for stride in window.strides:
                if stride > 1:
                    break
            else:
                continue
        elif pooling not in traits:
            continue
        kernel, strides, dilation = window.kernel, list(window.strides), window.dilation
        effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=False)]
        wider = False
        for s, k in zip(strides, effective, strict=False):  # a loop, not any(<generator>)
            if s > k:
                wider = True
                break
        if wider:
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


def _deep_plain_stack(result: AnalysisResult, weighted: set[str],
                      facts: _Layout | None = None) -> list[dict[str, Any]]:
    """The longest chain of weighted layers with no merge and no normalization in between.
    ``facts``: :func:`_layout` when the caller has it."""
    layers = result.layers
    sources = (facts if facts is not None else _layout(result)).sources
    # Per layer index: the length of the run ending there and the index of its last weighted
    # layer (-1: none); per weighted layer, the previous one in its run (back-pointers rebuild
    # the chain). A layer not reached yet reads as length 0 (as one missing from the runs).
    lengths = [0] * len(layers)
    lasts = [-1] * len(layers)
    previous_weighted = [-1] * len(layers)
    best_length, best_last = 0, -1
    normalization = Trait.NORMALIZATION
    for index, layer in enumerate(layers):
        if normalization in layer.traits or layer.merge in SPATIAL_MERGES:
            continue  # a run of 0
        length, last = 0, -1
        for source in sources[index]:  # the longest run among the inputs, the first of equal ones
            if lengths[source] > length:
                length, last = lengths[source], lasts[source]
        if layer.name in weighted:
            previous_weighted[index] = last
            length, last = length + 1, index
        lengths[index], lasts[index] = length, last
        if length > best_length:
            best_length, best_last = length, last
    count = best_length
    if count < DEEP_PLAIN_THRESHOLD:
        return []
    names: list[str] = []
    cursor = best_last
    while cursor >= 0 and len(names) < count:
        names.append(layers[cursor].name)
        cursor = previous_weighted[cursor]
    names.reverse()
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
    saturating = gradient_flow.SATURATING_ACTIVATIONS
    for layer in result.layers:
        # gradient_flow.activation_of, inline ("linear" for None, which does not saturate)
        activation = layer.activation
        if activation not in saturating or layer.name in outputs:
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


def _dense_head(result: AnalysisResult, facts: _Layout | None = None,
                params: int | None = None) -> list[dict[str, Any]]:
    """Flatten-to-Dense heads that hold most of the parameters. ``facts`` and ``params`` (the
    model's parameters): when the caller has them."""
    if facts is not None and Trait.FLATTEN not in facts.traits:
        return []  # no Flatten: no such head
    total = params if params is not None else _sum(layer.params for layer in result.listed_layers)
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


def _checkerboard(result: AnalysisResult, facts: _Layout | None = None) -> list[dict[str, Any]]:
    """Transposed convolutions whose kernel the stride does not divide (each layer's
    :class:`Window`). ``facts``: :func:`_layout` when the caller has it."""
    if facts is not None and Trait.TRANSPOSED not in facts.traits:
        return []  # no transposed convolution: nothing to check
    layers, details = [], []
    for layer in result.layers:
        if Trait.TRANSPOSED not in layer.traits:
            continue
        window = layer.window
        if window is None:
            continue
        kernel, strides = list(window.kernel), list(window.strides)
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


_UPSTREAM_DILATED = 8
"""Nearest dilated convolutions kept per layer when looking for dilation chains."""


def _dilation_gridding(result: AnalysisResult) -> list[dict[str, Any]]:
    """Chains of dilated convolutions whose rates share a factor (each layer's
    :class:`Window`)."""
    spatial_kernel = Trait.SPATIAL_KERNEL
    # Most graphs dilate nothing: a first look, without keying every convolution by name,
    # finds whether some convolution dilates at all.
    for layer in result.layers:
        window = layer.window
        if window is None:
            continue
        dilated = False  # max(window.dilation) > 1, without max(): see _stride_kernel_findings
        for rate in window.dilation:
            if rate > 1:
                dilated = True
                break
        if dilated and spatial_kernel in layer.traits:
            break
    else:
        return []  # no dilated convolution: no chain to look for
    dilation_of: dict[str, int] = {}
    for layer in result.layers:
        window = layer.window
        if spatial_kernel in layer.traits and window is not None:
            dilation_of[layer.name] = max(window.dilation)
    # The nearest dilated convolutions upstream of each layer (through non-convolution layers;
    # a plain convolution ends the search). Only dilated ones can form a chain, and a few are
    # enough: keeping every convolution behind a residual chain's shortcuts was quadratic.
    upstream: dict[str, list[str]] = {}
    for layer in result.layers:
        found: list[str] = []
        for name in layer.inbound:
            if name in dilation_of:
                if dilation_of[name] > 1:
                    found.append(name)
            else:
                found.extend(upstream.get(name, ()))
        upstream[layer.name] = list(dict.fromkeys(found))[:_UPSTREAM_DILATED] if found else []
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
    return [_finding(
        "dilation_gridding", "warning", names,
        f"{', '.join(chains[0])} stack dilation rates {rates} that share a common factor: each "
        "unit samples its input on a sparse grid and the holes never fill in (gridding; Wang et "
        "al. 2018). Use rates without a common factor (e.g. 1, 2, 3) or a non-dilated "
        "convolution in between.", {"chains": chains})]


def _shape_mismatch(result: AnalysisResult, facts: _Layout | None = None) -> list[dict[str, Any]]:
    """Residual-style merges (Add, ...) whose inputs differ in shape and are broadcast.

    Multiply is left out: gating (squeeze-and-excitation) broadcasts a per-channel scale on
    purpose. ``facts``: :func:`_layout` when the caller has it.
    """
    merges: list[dict[str, Any]] = []
    for layer in (facts if facts is not None else _layout(result)).merges:
        if layer.merge not in RESIDUAL_MERGES or len(layer.input_shapes) < 2:
            continue
        # whether the known shapes differ (more than one as a set), without building the set
        known: tuple[int | None, ...] | None = None
        differ = False
        for shape in layer.input_shapes:
            if shape:
                if known is None:
                    known = tuple(shape)
                elif tuple(shape) != known:
                    differ = True
                    break
        if differ:
            shapes = [list(shape) if shape else None for shape in layer.input_shapes]
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


# ---------------------------------------------------------------------------------------------
# Where the compute goes, and what the blocks are built of
# ---------------------------------------------------------------------------------------------


def _count_text(value: int) -> str:
    """A count in a finding's words: 3 significant digits and k, M or G.

    >>> _count_text(4_089_184_256), _count_text(950), _count_text(12_345), _count_text(7 * 10**400)
    ('4.09G', '950', '12.3k', '7e+391G')
    """
    if value >= 10**300:  # past float range (a hostile config's counts): the digits themselves
        digits = str(value // 10**9)
        return f"{int(digits[:3]) / 100:g}e+{len(digits) - 1}G"
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return str(value)


def _full_resolution_compute(result: AnalysisResult, facts: _Layout | None = None,
                             params: int | None = None) -> list[dict[str, Any]]:
    """Most MACs spent at effective stride 1: no, or late, downsampling.

    Compute per layer grows with the number of positions, so a network that keeps the input
    resolution through its convolutions pays for every pixel at every layer; the usual designs
    (ResNet's stride-2 7x7 stem and pooling, MobileNet's strided stem) reach stride 4 within two
    layers. ``facts`` and ``params`` (the model's parameters): when the caller has them.
    """
    strides = (facts if facts is not None else _layout(result)).strides
    # One loop for every sum: over all layers, over those at stride 1 (``full``), and over the
    # weighted ones among them.
    total = all_activation = activation = macs = convs = before_downsampling = 0
    weighted: list[LayerResult] = []
    first_downsampling: str | None = None
    kernel_trait, spatial_kernel_trait = Trait.KERNEL, Trait.SPATIAL_KERNEL  # hoisted lookups
    for layer, stride in zip(result.layers, strides, strict=True):
        layer_macs = layer.macs
        if layer_macs is not None:
            total += layer_macs
        layer_bytes = layer.activation_bytes
        if layer_bytes is not None:
            all_activation += layer_bytes
        if stride is None:
            continue
        if stride == 1:
            if layer_bytes is not None:
                activation += layer_bytes
            traits = layer.traits
            if spatial_kernel_trait in traits and first_downsampling is None:
                before_downsampling += 1
            if layer_macs and kernel_trait in traits:
                weighted.append(layer)
                macs += layer_macs
                if spatial_kernel_trait in traits:
                    convs += 1
        elif stride > 1 and first_downsampling is None:
            first_downsampling = layer.name
    if total <= 0:
        return []
    share = macs / total
    if share < FULL_RESOLUTION_SHARE or macs < FULL_RESOLUTION_MIN_MACS or not weighted:
        return []
    resolution = _resolution(weighted[0])
    if params is None:
        params = _sum(layer.params for layer in result.listed_layers)
    where = (f"the first downsampling ({first_downsampling}) comes after {before_downsampling} "
             f"convolution(s)" if first_downsampling else "nothing downsamples")
    per_param = round(total / params) if params else None
    reuse = (f" for {_count_text(params)} parameters ({per_param:,} MACs per parameter)"
             if per_param else "")
    message = (
        f"{len(weighted)} weighted layer(s) ({convs} convolution(s)) run at the full "
        f"{_dims(resolution)} input resolution: {_count_text(macs)} of the {_count_text(total)} "
        f"MACs ({share:.0%}){reuse}, and {where}. Every position costs the same at every layer, "
        f"so downsampling by 2 before them would cut their MACs to a quarter "
        f"({_count_text(macs)} -> {_count_text(macs // 4)}) and double the field each later "
        "layer adds. A strided stem or an early pooling (ResNet reaches stride 4 within two "
        "layers) keeps the detail the first convolutions extract and spends the rest on "
        "smaller maps.")
    return [_finding("full_resolution_compute", "warning", [layer.name for layer in weighted],
                     message, {
                         "resolution": resolution,
                         "macs": macs,
                         "total_macs": total,
                         "share": round(share, 4),
                         "layers": len(weighted),
                         "convolutions": convs,
                         "params": params,
                         "macs_per_param": per_param,
                         "first_downsampling": first_downsampling,
                         "convolutions_before_downsampling": before_downsampling,
                         "activation_bytes": activation,
                         "activation_share": round(activation / all_activation, 4)
                         if all_activation else None,
                         "macs_if_downsampled_by_2": macs // 4,
                     })]


def _cancels_bias(layer: LayerResult, producer: LayerResult) -> bool:
    """Whether a normalization layer subtracts a per-channel mean over the batch (it keeps a
    moving mean) along the producer's channel axis: such a layer cancels any bias before it."""
    config = layer.node.config
    if Trait.NORMALIZATION not in layer.traits or "moving_mean_initializer" not in config:
        return False
    shape = producer.output_shapes[0] if producer.output_shapes else None
    rank = len(shape) if shape else None
    axis = config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    if len(axes) != 1 or not isinstance(axes[0], int):
        return False
    channels_first = producer.channels_first
    wanted = 1 if channels_first else -1
    value = axes[0]
    if rank is not None and value >= 0 and not channels_first:
        value -= rank
    return value == wanted


def _bias_before_normalization(result: AnalysisResult, facts: _Layout | None = None,
                               params: int | None = None) -> list[dict[str, Any]]:
    """Weighted layers whose bias the normalization right after them cancels.
    ``facts`` and ``params`` (the model's parameters): when the caller has them."""
    if facts is not None and Trait.NORMALIZATION not in facts.traits:
        return []  # nothing normalizes: no bias is cancelled
    successors = result.successors()
    by_name = result.by_name()
    layers: list[str] = []
    wasted = 0
    kernel_trait, normalization_trait = Trait.KERNEL, Trait.NORMALIZATION
    no_consumers: list[str] = []
    for layer in result.layers:
        if kernel_trait not in layer.traits:
            continue
        consumers = successors.get(layer.name, no_consumers)
        if len(consumers) != 1:
            continue
        consumer = by_name.get(consumers[0])
        # _cancels_bias's first test before the layer's config is read (most layers stop here)
        if consumer is None or normalization_trait not in consumer.traits:
            continue
        if not layer.node.config.get("use_bias") or not _cancels_bias(consumer, layer):
            continue
        channels = _channels(layer)
        if channels is None:
            continue
        layers.append(layer.name)
        wasted += channels
    if not layers:
        return []
    total = params if params is not None else _sum(layer.params for layer in result.listed_layers)
    return [_finding(
        "bias_before_normalization", "info", layers,
        f"{len(layers)} layer(s) ({layers[0]}{', ...' if len(layers) > 1 else ''}) add a bias "
        f"and feed BatchNormalization directly: the normalization subtracts the batch mean of "
        f"each channel, which removes the bias, so {wasted:,} parameters "
        f"({wasted / total:.2%} of the total) are trained for nothing. use_bias=False on these "
        "layers gives the same model (the normalization's beta is the bias).",
        {"layers": len(layers), "redundant_params": wasted, "total_params": total})]


def _residual_branch_nonnegative(result: AnalysisResult,
                                 facts: _Layout | None = None) -> list[dict[str, Any]]:
    """Identity shortcuts added to a branch whose last layer outputs only non-negative values.

    He et al. (2016, "Identity mappings in deep residual networks", fig. 4c) measured this
    "ReLU before addition" block against the original (ReLU after the addition): the residual
    can only add, never subtract, and ResNet-110 on CIFAR-10 got 7.84% error instead of 6.61%.
    ``facts``: :func:`_layout` when the caller has it.
    """
    by_name = result.by_name()
    found: list[dict[str, str]] = []
    merges: list[str] = []  # the merges and their branch ends, in the order of ``found``
    ends: list[str] = []
    # Without shared layers ``result.layers`` lists every layer after all of its inputs, so a
    # layer listed after the branch's end cannot be its ancestor (no walk needed to say so).
    # Built only when a walk is needed: a shortcut that is an input of the branch's end (the
    # usual ``x + relu(conv(x))``) is its ancestor at once.
    position: dict[str, int] | None = None
    walked = False
    sums = (Merge.SUM, Merge.AVERAGE)  # built once, not per layer
    kernel_trait, activation_trait = Trait.KERNEL, Trait.ACTIVATION
    nonnegative = NONNEGATIVE_ACTIVATIONS
    for layer in (facts if facts is not None else _layout(result)).merges:
        if layer.merge not in sums:
            continue
        inbound = layer.inbound
        if len(inbound) != 2 or inbound[0] == inbound[1]:  # two distinct inputs (as a set)
            if len(set(inbound)) != 2:
                continue
        first, second = inbound[0], inbound[1]
        # Each input in turn as the branch (the second first), the other as its shortcut (one
        # tuple for both orders, not a pair per order).
        for branch in (second, first):
            end = by_name.get(branch)
            if end is None:
                continue
            activation = end.activation or "linear"
            if activation not in nonnegative:
                continue
            traits = end.traits
            if kernel_trait not in traits and activation_trait not in traits:
                continue
            shortcut = first if branch is second else second
            if shortcut not in end.inbound:
                if not walked:
                    position, walked = _positions(result), True
                if position is not None and \
                        position.get(shortcut, -1) > position.get(branch, -1):
                    continue
                if not _reaches(by_name, branch, shortcut):
                    continue
            name = layer.name
            found.append({"merge": name, "branch_end": branch, "shortcut": shortcut,
                          "activation": activation})
            merges.append(name)
            ends.append(branch)
            break
    if not found:
        return []
    example = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return [_finding(
        "residual_branch_nonnegative", "warning", list(dict.fromkeys(merges + ends)),
        f"{example['merge']}{more} adds {example['branch_end']}'s {example['activation']} output "
        f"to the identity shortcut from {example['shortcut']}: a residual branch that ends in a "
        "non-negative activation can only add to its input, never subtract, so the signal "
        "grows block after block. He et al. (2016) measured this 'ReLU before addition' block "
        "worse than ReLU after the addition (ResNet-110 on CIFAR-10: 7.84% against 6.61% "
        "error); end the branch with a linear layer (or BatchNormalization) and apply the "
        "activation after the Add, or use pre-activation blocks.",
        {"merges": found})]


def _positions(result: AnalysisResult) -> dict[str, int] | None:
    """Each layer's index in ``result.layers`` by name; None when some layer is called more
    than once (shared layers), where that order need not put a layer after its inputs."""
    position: dict[str, int] = {}
    for index, layer in enumerate(result.layers):
        if len(layer.call_output_shapes) > 1:
            return None
        position[layer.name] = index
    return position


def _reaches(by_name: dict[str, LayerResult], start: str, target: str, limit: int = 256) -> bool:
    """Whether ``target`` is an ancestor of ``start`` (a bounded walk up the inputs)."""
    pending = [start]
    seen = {start}
    while pending and len(seen) <= limit:
        name = pending.pop()
        layer = by_name.get(name)
        if layer is None:
            continue
        for parent in layer.inbound:
            if parent == target:
                return True
            if parent not in seen:
                seen.add(parent)
                pending.append(parent)
    return False


def _residual_value(result: AnalysisResult, prediction: dict[str, Any],
                    skips: Skips) -> list[dict[str, Any]]:
    """What the skip connections (:mod:`app.analysis.skips`) buy for the gradient: one finding
    for residual merges, one for dense ones (concatenations of parallel branches are neither)."""
    skipping = [entry for entry in prediction.get("layers", []) if entry["skip_connections"]]
    if not skips.count or not skipping or prediction.get("verdict") is None:
        return []
    depth = prediction.get("depth") or {}
    shortest, longest = depth.get("shortest"), depth.get("longest")
    ratio, verdict = prediction.get("ratio"), prediction.get("verdict")
    ratio_text = f"{ratio:.2g}" if isinstance(ratio, float) else str(ratio)
    gradient = (f"Between the first weighted layer and the output the gradient can pass through "
                f"{shortest} weighted layers instead of {longest}; the predicted gradient there is "
                f"{ratio_text} of the last layer's ({verdict}).")
    if shortest is not None and longest is not None and shortest >= longest:
        gradient += " The skips do not shorten the path from the first layer."
    details = {"layers_bypassed": len(skipping), "shortest_path": shortest, "longest_path": longest,
               "gradient_ratio": ratio, "gradient_verdict": verdict}
    found = []
    if skips.residual:
        found.append(_finding("residual_connections", "info", skips.residual, (
            f"{len(skips.residual)} residual merge(s) add a shortcut to a branch "
            f"(skip connections around {len(skipping)} weighted layer(s) in all). {gradient}"),
            {"merges": len(skips.residual), **details}))
    if skips.dense:
        found.append(_finding("dense_connections", "info", skips.dense, (
            f"{len(skips.dense)} concatenation(s) pass earlier feature maps forward beside the "
            "maps computed from them (dense connections, Huang et al. 2017): later layers reuse "
            "earlier features, and channels grow with every merge. "
            + ("" if skips.residual else gradient)),
            {"merges": len(skips.dense), **details}))
    return found


def _gradient_verdict(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    verdict = prediction.get("verdict")
    ratio = prediction.get("ratio")
    thresholds = prediction.get("thresholds", {})
    ratio_text = (f"{ratio:.2g}" if isinstance(ratio, float)
                  else f"1e{prediction.get('log10_ratio')}")
    first, last = prediction.get("first_layer"), prediction.get("last_layer")
    details = {"ratio": ratio, "log10_ratio": prediction.get("log10_ratio"),
               "thresholds": thresholds}
    if prediction.get("growth_under_normalization"):
        return [_finding(
            "gradient_flow_normalization_growth", "info", [str(first), str(last)],
            f"At initialization the gradient reaching {first} is predicted to be {ratio_text} "
            f"times the one reaching {last}: BatchNormalization in training mode makes the "
            "backward signal grow with depth (Yang et al. 2019). Networks in this range train "
            "with standard recipes (ResNet, Inception, MobileNet: see the calibration in "
            "docs/gradient-flow.md), so this is not called exploding; a learning-rate warm-up, "
            "or the last normalization of each residual branch initialised to zero (Goyal et "
            "al. 2017), keeps the first steps stable.", details)]
    if verdict not in ("vanishing", "exploding"):
        return []
    bound = (f"below {thresholds.get('vanishing_below')}" if verdict == "vanishing"
             else f"above {thresholds.get('exploding_above_with_normalization')}"
             if prediction.get("normalized") else f"above {thresholds.get('exploding_above')}")
    if verdict == "vanishing":
        remedy = ("Use ReLU-family activations with He initialization, BatchNormalization or "
                  "residual connections.")
    elif prediction.get("normalized"):
        remedy = ("Even with normalization this growth is beyond what trains in the calibration "
                  "set: check the initializers and scale layers on the path.")
    else:
        remedy = "Use variance-preserving initialization (glorot/he) or normalization."
    return [_finding(
        f"gradient_flow_{verdict}", "warning", [str(first), str(last)],
        f"At initialization the gradient reaching {first} is predicted to be {ratio_text} times "
        f"the one reaching {last} ({bound}): {verdict} gradients. {remedy}", details)]


def find(result: AnalysisResult, *, field_summary: dict[str, Any] | None = None,
         prediction: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All findings for an analysed model: errors and warnings first, then information.

    ``field_summary`` and ``prediction`` are the report's ``receptive_field`` summary and
    gradient-flow prediction when the caller has them (the report builder computes each
    once); otherwise they are computed here.
    """
    if prediction is None:
        prediction = gradient_flow.predict(result)
    weighted = {entry["name"] for entry in prediction.get("layers", [])}
    facts = _layout(result)
    params = _sum(layer.params for layer in result.listed_layers)
    findings: list[dict[str, Any]] = []
    findings += _stage_finding(result, facts)
    findings += _coverage_finding(result, field_summary)
    findings += _residual_value(result, prediction, find_skips(result))
    findings += _stride_kernel_findings(result)
    findings += _early_downsampling(result)
    findings += _deep_plain_stack(result, weighted, facts)
    findings += _saturating(result, prediction)
    findings += _dense_head(result, facts, params)
    findings += _checkerboard(result, facts)
    findings += _dilation_gridding(result)
    findings += _shape_mismatch(result, facts)
    findings += _misaligned(result)
    findings += _full_resolution_compute(result, facts, params)
    findings += _residual_branch_nonnegative(result, facts)
    findings += _bias_before_normalization(result, facts, params)
    findings += _gradient_verdict(prediction)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f["severity"]])  # stable: keeps the order above
    return findings
