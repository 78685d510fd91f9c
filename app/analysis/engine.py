"""The engine: walk a :class:`ModelGraph` once, in topological order, applying the rules.

Every call of every layer is visited once (linear in the size of the graph,
no recursion except into nested models), computing output shapes,
parameters, MACs, activation bytes and receptive fields. A layer without a
rule is reported as unsupported: its outputs become unknown (None shapes,
unknown fields) and the metrics it touches are marked partial; everything
else is still computed.

Example::

    >>> from app.analysis import analyze
    >>> report = analyze(config)                 # doctest: +SKIP
    >>> report["summary"]["total_params"]        # doctest: +SKIP
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from app.analysis.graph import (
    AnalysisResult,
    AxisField,
    LayerNode,
    LayerResult,
    MetricStatus,
    ModelGraph,
    ReceptiveField,
    Shape,
    TensorRef,
)
from app.analysis.rules import lookup_rule
from app.analysis.rules.base import (
    UNKNOWN,
    Ctx,
    Rule,
    UnsupportedVariant,
    elements,
    initializer_name,
)
from app.analysis.traits import Trait
from app.errors import InvalidArchitecture, InvalidInputShape, ResourceLimitExceeded

DTYPE_BYTES = {
    "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1, "uint8": 1,
    "int16": 2, "int32": 4, "int64": 8, "bool": 1, "mixed_float16": 2, "mixed_bfloat16": 2,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "int4": 1,
}
VARIABLE_BYTES = {"mixed_float16": 4, "mixed_bfloat16": 4}
_DEFAULT_GLOROT_KEYS = ("kernel_initializer", "depthwise_initializer")
MODEL_TRAITS = frozenset({Trait.MODEL})
READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError)


def _policy_name(config: dict[str, Any]) -> str:
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        inner = dtype.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return inner["name"]
        return "float32"
    return dtype if isinstance(dtype, str) else "float32"


def dtype_bytes(config: dict[str, Any]) -> tuple[int, int]:
    """(activation bytes, variable bytes) per element from the layer's dtype policy.

    >>> dtype_bytes({"dtype": "mixed_float16"})
    (2, 4)
    """
    return _BYTES_OF_POLICY.get(_policy_name(config), (4, 4))


_BYTES_OF_POLICY = {name: (size, VARIABLE_BYTES.get(name, size)) for name, size in DTYPE_BYTES.items()}
""":func:`dtype_bytes` per known policy name (read for every layer); any other name: 4 and 4."""


def _input_field(shape: Shape | None) -> ReceptiveField | None:
    """A model input with spatial axes (rank >= 3 with batch) starts with a 1-pixel field."""
    if shape is None or len(shape) < 3:
        return None
    spatial = len(shape) - 2
    return ReceptiveField(tuple(AxisField(1, 1, 0) for _ in range(spatial)))


class _Walk:
    """State of one analysis of one (possibly nested) model graph."""

    def __init__(
        self,
        graph: ModelGraph,
        input_shapes: Sequence[Shape | None],
        input_fields: Sequence[ReceptiveField | None] | None,
        trainable: bool,
        depth: int,
    ) -> None:
        self.graph = graph
        self.input_shapes = list(input_shapes)
        self.input_fields = list(input_fields) if input_fields is not None else None
        self.trainable = trainable
        self.depth = depth
        self.by_name: dict[str, LayerNode] = {node.name: node for node in graph.layers}
        # A tensor's shape is in its producer's ``call_output_shapes``; its field is the
        # producer's ``receptive_field`` for the first call and in ``later_fields`` for the
        # calls of a shared layer after it (no dict keyed by tensor: a tuple built and hashed
        # per input).
        self.later_fields: dict[tuple[str, int], ReceptiveField | None] = {}
        self.results: dict[str, LayerResult] = {}
        self.order: list[str] = []
        self.edges: dict[tuple[str, str], None] = {}
        self.unsupported: list[tuple[str, str]] = []
        self.partial: dict[str, list[str]] = {}
        self.misaligned: list[dict[str, Any]] = []

    # -- helpers -------------------------------------------------------------------------------

    def note(self, metric: str, reason: str) -> None:
        reasons = self.partial.setdefault(metric, [])
        if reason not in reasons and len(reasons) < 20:
            reasons.append(reason)

    def topological_calls(self) -> list[tuple[LayerNode, int]]:
        """Kahn's algorithm over calls; InputLayers first. Raises on cycles and dangling refs."""
        calls: list[tuple[LayerNode, int]] = []
        # A layer's calls take consecutive positions: (first position, number of calls) per
        # layer name, so that call i of a layer is at first + i (no tuple key per call).
        index: dict[str, tuple[int, int]] = {}
        for node in self.graph.layers:
            count = len(node.calls) if node.calls else (1 if node.class_name == "InputLayer" else 0)
            index[node.name] = (len(calls), count)
            for call_index in range(count):
                calls.append((node, call_index))
        waiting = [0] * len(calls)
        consumers: list[list[int]] = [[] for _ in calls]
        for position, (node, call_index) in enumerate(calls):
            if not node.calls:
                continue
            for ref in node.calls[call_index].inputs:
                first, count = index.get(ref.layer, (0, 0))
                if not 0 <= ref.node_index < count:
                    raise InvalidArchitecture(
                        f"{node.class_name} '{node.name}' consumes call {ref.node_index} of "
                        f"'{ref.layer}', which does not exist"
                    )
                producer = first + ref.node_index
                waiting[position] += 1
                consumers[producer].append(position)
        ready = deque(p for p, count in enumerate(waiting) if count == 0)
        ordered: list[tuple[LayerNode, int]] = []
        while ready:
            position = ready.popleft()
            ordered.append(calls[position])
            for consumer in consumers[position]:
                waiting[consumer] -= 1
                if waiting[consumer] == 0:
                    ready.append(consumer)
        if len(ordered) != len(calls):
            stuck = sorted({calls[p][0].name for p, c in enumerate(waiting) if c > 0})
            raise InvalidArchitecture(f"the layer graph has a cycle through {stuck[:5]}")
        return ordered

    def result_for(self, node: LayerNode) -> LayerResult:
        result = self.results.get(node.name)
        if result is None:
            # Positional: a dataclass built with keywords goes through a dict of them (about
            # 1,600 instructions more per object in CPython 3.11); the same below for the rest.
            result = LayerResult(node.name, node.class_name, node)
            result.dtype_bytes, result.variable_bytes = dtype_bytes(node.config)
            result.channels_first = node.config.get("data_format") == "channels_first"
            self.results[node.name] = result
            self.order.append(node.name)
        return result

    # -- the walk ------------------------------------------------------------------------------

    def run(self) -> AnalysisResult:
        graph = self.graph
        input_names = {ref.layer: i for i, ref in enumerate(graph.inputs)}
        for node, call_index in self.topological_calls():
            result = self.result_for(node)
            if node.class_name == "InputLayer" and not node.calls:
                position = input_names.get(node.name)
                shape = self.input_shapes[position] if position is not None and position < len(
                    self.input_shapes
                ) else None
                if self.input_fields is not None and position is not None and position < len(self.input_fields):
                    field = self.input_fields[position]
                else:
                    field = _input_field(shape)
                result.output_shapes = [shape]
                result.call_output_shapes = [[shape]]
                result.receptive_field = field
                count = elements(shape)
                result.activation_bytes = None if count is None else count * result.dtype_bytes
                if count is None:
                    self.note("shapes", f"input '{node.name}' has unknown dimensions {_fmt(shape)}")
                result.activation = "linear"
                continue
            self.visit(node, call_index, result)
        for node in graph.layers:  # layers never called: still listed, nothing known
            if node.name not in self.results:
                result = self.result_for(node)
                result.params = result.trainable_params = result.non_trainable_params = None
                result.macs = result.activation_bytes = None
                result.output_shapes = [None]
                result.notes.append("never called in this model")
        listed = [self.results[node.name] for node in graph.layers if node.listed]
        outputs = [self.tensor(ref)[0] for ref in graph.outputs]
        return AnalysisResult(
            model_name=graph.name,
            graph=graph,
            layers=[self.results[name] for name in self.order],
            listed_layers=listed,
            edges=list(self.edges),
            input_shapes=list(self.input_shapes),
            output_shapes=outputs,
            input_layers=[r.layer for r in graph.inputs],
            output_layers=[r.layer for r in graph.outputs],
            unsupported=self.unsupported,
            metrics={},
            misaligned=self.misaligned,
        )

    def tensor(self, ref: TensorRef) -> tuple[Shape | None, ReceptiveField | None]:
        """The shape and field of a tensor computed so far; (None, None) for one that was not."""
        producer = self.results.get(ref.layer)
        calls = producer.call_output_shapes if producer is not None else []
        if not 0 <= ref.node_index < len(calls) or not 0 <= ref.tensor_index < len(
                calls[ref.node_index]):
            return None, None
        field = (producer.receptive_field if ref.node_index == 0  # type: ignore[union-attr]
                 else self.later_fields.get((ref.layer, ref.node_index)))
        return calls[ref.node_index][ref.tensor_index], field

    def visit(self, node: LayerNode, call_index: int, result: LayerResult) -> None:
        call = node.calls[call_index]
        name = node.name
        results = self.results
        edges = self.edges
        inbound = result.inbound
        shapes: list[Shape | None] = []
        fields: list[ReceptiveField | None] = []
        producers: list[str] = []
        for ref in call.inputs:
            producer_name = ref.layer
            # The producer's call was visited before this one (topological order), and
            # topological_calls checked that it exists.
            producer = results[producer_name]
            node_index = ref.node_index
            produced = producer.call_output_shapes[node_index]
            tensor_index = ref.tensor_index
            if not 0 <= tensor_index < len(produced):
                raise InvalidArchitecture(
                    f"{node.class_name} '{name}' consumes output {tensor_index} of "
                    f"'{producer_name}', which has {len(produced)} output(s)"
                )
            shapes.append(produced[tensor_index])
            fields.append(producer.receptive_field if node_index == 0
                          else self.later_fields.get((producer_name, node_index)))
            producers.append(producer_name)
            edges[(producer_name, name)] = None
            if producer_name not in inbound:
                inbound.append(producer_name)
        if call_index == 0:
            result.input_shapes = list(shapes)
        operation = node.operation
        ctx = Ctx(
            name,
            node.class_name,
            node.config,
            shapes,
            call.constants,
            call.tensor_kwargs,
            "op" if operation else self.graph.format,
            producers,
        )
        inner_bytes: int | None | bool = False
        if node.subgraph is not None:
            outputs, field, inner_bytes = self.visit_model(node, ctx, fields, result, call_index)
        else:
            rule = lookup_rule(node.class_name, operation)
            outputs, field = self.apply_rule(node, rule, ctx, fields, result, call_index)
        result.call_output_shapes.append(outputs)
        if call_index == 0:
            result.output_shapes = outputs
            result.receptive_field = field
            if field is not None and field.misaligned:
                self.misaligned.append({"layer": name, "branches": list(field.misaligned)})
        else:
            self.later_fields[(name, call_index)] = field
        size: int | None = 0
        dtype_size = result.dtype_bytes
        for shape in outputs:
            count = elements(shape)
            if count is None:
                size = None
            elif size is not None:
                size += count * dtype_size
        if inner_bytes is not False:  # a nested model: every tensor it computes
            size = inner_bytes  # type: ignore[assignment]
        if result.activation_bytes is not None:
            result.activation_bytes = None if size is None else result.activation_bytes + size
        if size is None and not result.unsupported:
            self.note("activation_bytes", f"'{name}' has unknown output dimensions")

    def apply_rule(
        self,
        node: LayerNode,
        rule: Rule | None,
        ctx: Ctx,
        fields: list[ReceptiveField | None],
        result: LayerResult,
        call_index: int,
    ) -> tuple[list[Shape | None], ReceptiveField | None]:
        try:
            if rule is None:
                raise UnsupportedVariant(f"no rule for class '{node.class_name}'")
            produced = rule.shape(ctx)
            if len(produced) == 1 and type(produced[0]) is tuple:
                outputs: list[Shape | None] = [produced[0]]  # the usual single tuple output
            else:
                outputs = [None if s is None else tuple(s) for s in produced]
            if call_index == 0:
                self.first_call(node, rule, ctx, result)
            macs = rule.macs(ctx, outputs)
            if macs is None:
                self.note("macs", f"'{node.name}': spatial size unknown (pass input_shape)")
                result.macs = None
            elif result.macs is not None:
                result.macs += macs
            return outputs, rule.field(ctx, fields)
        except UnsupportedVariant as unsupported:
            return self.unsupported_layer(node, result, str(unsupported), call_index)
        except InvalidArchitecture:
            raise
        except ResourceLimitExceeded as error:  # the layer's receptive field costs too much
            raise ResourceLimitExceeded(f"{node.class_name} '{node.name}': {error.detail}",
                                        extra={**error.extra, "layer": node.name}) from None
        except READ_ERRORS as error:
            raise InvalidArchitecture(
                f"{node.class_name} '{node.name}': the config could not be read "
                f"({type(error).__name__}: {error}). Received: config={_short(node.config)}"
            ) from error

    def first_call(self, node: LayerNode, rule: Rule, ctx: Ctx, result: LayerResult) -> None:
        """What only the first call decides: parameters (shared layers own one set), the
        activation, the kernel initializer and the fans."""
        trainable, non_trainable = rule.params(ctx)
        if trainable is None or non_trainable is None:
            result.params = result.trainable_params = result.non_trainable_params = None
            self.note("params", f"'{node.name}': input size unknown")
        else:
            if not self.trainable or node.config.get("trainable", True) is False:
                trainable, non_trainable = 0, trainable + non_trainable
            result.trainable_params = trainable
            result.non_trainable_params = non_trainable
            result.params = trainable + non_trainable
        result.has_weights = bool(result.params)
        result.traits = rule.traits
        merge_of = rule.merge_of  # rule.merge_mode(node.config), without the call
        result.merge = rule.merge if merge_of is None else merge_of(node.config)
        if rule.scale_of is not None:
            result.scale = rule.scale_of(node.config)
        result.activation = rule.activation(ctx)
        if rule.window is not None:
            result.window = rule.window(ctx)
        key = rule.initializer_key
        if key:
            result.kernel_initializer = initializer_name(node.config.get(key))
            if result.kernel_initializer is None and key in _DEFAULT_GLOROT_KEYS:
                result.kernel_initializer = "GlorotUniform"
        if rule.fans is not None:
            result.fan_in, result.fan_out = rule.fans(ctx)

    def unsupported_layer(
        self, node: LayerNode, result: LayerResult, reason: str, call_index: int
    ) -> tuple[list[Shape | None], ReceptiveField | None]:
        if call_index == 0:
            result.unsupported = True
            self.unsupported.append((node.name, node.class_name))
            result.notes.append(f"unsupported: {reason}; shapes, parameters, MACs and receptive field unknown")
            result.params = result.trainable_params = result.non_trainable_params = None
            result.activation = None
            for metric in ("shapes", "params", "macs", "receptive_field", "activation_bytes"):
                self.note(metric, f"'{node.name}' ({node.class_name}) is not supported: {reason}")
        result.macs = None
        result.activation_bytes = None
        return [None], UNKNOWN

    def visit_model(
        self,
        node: LayerNode,
        ctx: Ctx,
        fields: list[ReceptiveField | None],
        result: LayerResult,
        call_index: int,
    ) -> tuple[list[Shape | None], ReceptiveField | None, int | None]:
        sub = node.subgraph
        assert sub is not None
        if len(ctx.input_shapes) != len(sub.inputs):
            raise InvalidArchitecture(
                f"model '{node.name}' takes {len(sub.inputs)} input(s). "
                f"Received: {len(ctx.input_shapes)} tensor(s)"
            )
        shapes = [
            _merge_declared(given, declared)
            for given, declared in zip(ctx.input_shapes, sub.input_shapes, strict=True)
        ]
        trainable = self.trainable and sub.trainable and node.config.get("trainable", True) is not False
        walk = _Walk(sub, shapes, fields, trainable, self.depth + 1)
        inner = walk.run()
        for metric, reasons in walk.partial.items():
            for reason in reasons:
                self.note(metric, f"in '{node.name}': {reason}")
        self.misaligned.extend(
            {"layer": f"{node.name}/{m['layer']}", "branches": m["branches"]} for m in walk.misaligned
        )
        if call_index == 0:
            result.subresult = inner
            self.unsupported.extend((f"{node.name}/{n}", c) for n, c in inner.unsupported)
            params = [r.params for r in inner.listed_layers]
            trainables = [r.trainable_params for r in inner.listed_layers]
            if any(p is None for p in params) or any(t is None for t in trainables):
                result.params = result.trainable_params = result.non_trainable_params = None
            else:
                result.params = sum(params)  # type: ignore[arg-type]
                result.trainable_params = sum(trainables)  # type: ignore[arg-type]
                result.non_trainable_params = result.params - result.trainable_params
            result.has_weights = bool(result.params)
            result.traits = MODEL_TRAITS
            result.activation = "linear"
        macs = [r.macs for r in inner.layers]
        if any(m is None for m in macs) or result.macs is None:
            result.macs = None
        else:
            result.macs += sum(macs)  # type: ignore[arg-type]
        outputs = list(inner.output_shapes)
        output_fields = [walk.tensor(ref)[1] for ref in sub.outputs]
        field = output_fields[0] if output_fields else None
        inner_sizes = [r.activation_bytes for r in inner.layers if r.class_name != "InputLayer"]
        inner_bytes = None if any(b is None for b in inner_sizes) else sum(inner_sizes)  # type: ignore[arg-type]
        return outputs, field, inner_bytes


def _merge_declared(given: Shape | None, declared: Shape | None) -> Shape | None:
    if given is None:
        return declared
    if declared is None or len(declared) != len(given):
        return given
    return tuple(g if g is not None else d for g, d in zip(given, declared, strict=True))


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt(shape: Shape | None) -> str:
    return "unknown" if shape is None else str(list(shape))


InputShapeOverride = Sequence[int | None] | Mapping[str, Sequence[int | None]]
"""A shape without the batch dimension for a model's one input, or one per input layer name."""


def _override_shapes(graph: ModelGraph, input_shape: InputShapeOverride | None) -> list[Shape | None]:
    """The model's input shapes with the override applied: a list for a model with one input,
    or ``{"input_layer_name": [...]}`` naming some or all of a model's inputs (the others keep
    their declared shapes).

    >>> from app.analysis.graph import TensorRef
    >>> graph = ModelGraph("m", "Functional", [], [TensorRef("image", 0, 0), TensorRef("mask", 0, 0)],
    ...                    [], input_shapes=[(None, 32, 32, 3), (None, 32, 32, 1)])
    >>> _override_shapes(graph, {"mask": [64, 64, 1]})
    [(None, 32, 32, 3), (None, 64, 64, 1)]
    """
    shapes = list(graph.input_shapes)
    if input_shape is None:
        return shapes
    names = [ref.layer for ref in graph.inputs]
    if isinstance(input_shape, Mapping):
        unknown = [name for name in input_shape if name not in names]
        if unknown or not input_shape:
            raise InvalidInputShape(
                f"input_shape given per input must name the model's input layers {names}. "
                f"Received: input_shape={dict(input_shape)!r}"
            )
        for index, name in enumerate(names):
            if name in input_shape:
                shapes[index] = _override_one(shapes[index], input_shape[name], f"input_shape[{name!r}]")
        return shapes
    if len(shapes) != 1:
        raise InvalidArchitecture(
            f"this model has {len(shapes)} inputs {names}: give input_shape per input, as "
            f"{{{', '.join(repr(n) + ': [...]' for n in names)}}}. Received: input_shape={list(input_shape)}"
        )
    return [_override_one(shapes[0], input_shape, "input_shape")]


def _override_one(declared: Shape | None, input_shape: Any, label: str) -> Shape:
    """One input's override, checked against its declared shape (rank, channels)."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in input_shape
    ):
        raise InvalidArchitecture(
            f"{label} must be a list of positive ints (no batch dimension). Received: {label}={input_shape!r}"
        )
    if declared is not None and len(declared) != len(input_shape) + 1:
        raise InvalidArchitecture(
            f"{label} must have {len(declared) - 1} dimensions like the model input "
            f"{list(declared[1:])}. Received: {label}={list(input_shape)}"
        )
    if declared is not None:
        # channels (or any fixed non-spatial size) must agree with what the weights expect
        last = declared[-1]
        if last is not None and input_shape[-1] is not None and last != input_shape[-1] and len(declared) > 2:
            first = declared[1]
            if first is None or first != input_shape[0]:
                raise InvalidArchitecture(
                    f"{label} must keep the model's {last} channels. Received: {label}={list(input_shape)}"
                )
    return (None, *input_shape)


def analyze_graph(graph: ModelGraph, *, input_shape: InputShapeOverride | None = None) -> AnalysisResult:
    """Analyse a parsed graph: per-layer results in topological order, edges, coverage."""
    shapes = _override_shapes(graph, input_shape)
    walk = _Walk(graph, shapes, None, graph.trainable, 0)
    result = walk.run()
    metrics: dict[str, MetricStatus] = {}
    for metric in ("shapes", "params", "macs", "activation_bytes", "receptive_field"):
        reasons = walk.partial.get(metric)
        metrics[metric] = MetricStatus("partial", "; ".join(reasons)) if reasons else MetricStatus()
    result.metrics = metrics
    result.misaligned = walk.misaligned
    return result
