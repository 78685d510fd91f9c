"""The layer graph the engine works on, and the per-layer results it produces.

A Keras model config (Keras 3 or tf.keras 2.x JSON) is parsed into a
:class:`ModelGraph`: one :class:`LayerNode` per Keras layer, in the order of
Keras ``model.layers``, each with one :class:`LayerCall` per time the layer is
called (shared layers are called more than once). A model used as a layer
carries its own nested :class:`ModelGraph` in ``LayerNode.subgraph``.

The engine then computes a :class:`LayerResult` per layer and bundles them
into an :class:`AnalysisResult`: the per-layer results in topological order
(every layer after the layers that feed it), the layer-level edges and the
model's input and output shapes. That object is what the gradient-flow
predictor and the findings receive.

Shapes are tuples that include the batch dimension, ``None`` meaning unknown,
exactly as Keras prints them: ``(None, 224, 224, 3)``.

Example::

    >>> from app.analysis import build_graph
    >>> graph = build_graph(config)             # doctest: +SKIP
    >>> [layer.name for layer in graph.layers]  # doctest: +SKIP
    ['input_layer', 'conv2d', 'max_pooling2d']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from app.analysis.traits import Merge, Trait

Shape = tuple[int | None, ...]
"""A tensor shape with the batch dimension first; ``None`` is unknown."""


@dataclass(slots=True, unsafe_hash=True)
class TensorRef:
    """A reference to one output tensor of one call of a layer.

    ``TensorRef("conv1", 0, 0)`` is the first output of the first call of
    layer ``conv1`` (Keras's ``keras_history`` triple). A value, never changed once the graph
    is built (not a frozen dataclass for the cost of building one, see :class:`AxisField`);
    while building it, the parser gives ``layer`` the named layer's own string object.
    """

    layer: str
    node_index: int
    tensor_index: int


@dataclass(slots=True)
class LayerCall:
    """One call of a layer (a Keras "inbound node").

    ``inputs`` are the tensors the call consumes, in argument order.
    ``constants`` holds the non-tensor arguments recorded with the call, e.g.
    ``{"y": 2.0}`` for a tf.keras ``TFOpLambda`` computing ``x * 2.0``; a
    tensor passed as a keyword argument is in ``inputs`` and its keyword in
    ``tensor_kwargs`` (``{"y": 1}`` = ``inputs[1]`` was passed as ``y``).
    """

    inputs: list[TensorRef] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    tensor_kwargs: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class LayerNode:
    """One Keras layer as read from the config.

    ``config`` is the layer's own ``config`` dict untouched. ``listed`` is
    False for the implicit InputLayer of a Sequential model, which Keras does
    not list in ``model.layers``. ``subgraph`` is set when the layer is itself
    a model (Sequential or Functional used as a layer). ``operation`` is True for a Keras 3
    functional op (``x + y``, recorded with an ops module), which is not listed either.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    module: str | None = None
    calls: list[LayerCall] = field(default_factory=list)
    subgraph: ModelGraph | None = None
    listed: bool = True
    operation: bool = False


@dataclass(slots=True)
class ModelGraph:
    """A parsed model: its layers in ``model.layers`` order, inputs and outputs.

    ``input_shapes`` are the declared shapes (batch included) of ``inputs``,
    in order; ``None`` entries where the config declares none.
    """

    name: str
    class_name: str
    layers: list[LayerNode]
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    input_shapes: list[Shape | None] = field(default_factory=list)
    format: str = "keras3"
    trainable: bool = True

    def layer(self, name: str) -> LayerNode:
        """The layer called ``name`` (KeyError if absent)."""
        for node in self.layers:
            if node.name == name:
                return node
        raise KeyError(name)


@dataclass(slots=True, repr=False, unsafe_hash=True)
class AxisField:
    """Receptive field along one spatial axis, relative to the model input.

    ``size`` (pixels of the input seen), ``stride`` (input pixels between two
    neighbouring output units) and ``padding`` (how far the first unit's
    field starts before input pixel 0), as in Araujo et al., Distill 2019.
    Values are Fractions internally (upsampling gives fractional strides);
    ``padding`` is None when the spatial size needed to know it is unknown.

    After upsampling, neighbouring units' fields differ (a transposed convolution's outputs
    receive from different numbers of inputs): they repeat every ``period`` units, and
    ``phases`` holds the true field ``(first, last)`` input pixel of units ``0 .. period-1``
    (None: a unit that reads no input). ``size``/``stride``/``padding`` are then the
    *envelope*: the smallest field of that stride containing every unit's true field (see
    docs/receptive-fields.md). ``exact`` is False when the envelope only bounds the fields
    (a pattern too long to follow was replaced by its envelope upstream).

    A value: never changed once built, so layers share it (it is hashable). Not a frozen
    dataclass only because those cost several times as much to build (an attribute set through
    ``object.__setattr__`` per field), and the engine builds one per spatial axis per layer.

    >>> AxisField(3, 1, 1)
    AxisField(size=3, stride=1, padding=1)
    >>> AxisField(4, 1, 1, period=2, phases=((0, 2), (0, 2))).unit_sizes
    (3, 3)
    """

    size: Fraction | int
    stride: Fraction | int
    padding: Fraction | int | None
    period: int = 1
    phases: tuple[tuple[Fraction | int, Fraction | int] | None, ...] = ()
    exact: bool = True

    def __repr__(self) -> str:
        text = f"AxisField(size={self.size!r}, stride={self.stride!r}, padding={self.padding!r}"
        if self.period != 1:
            text += f", period={self.period}, phases={self.phases!r}"
        if not self.exact:
            text += ", exact=False"
        return text + ")"

    @property
    def unit_sizes(self) -> tuple[Fraction | int, Fraction | int]:
        """The smallest and largest true field of one unit (the size itself when all agree)."""
        sizes = [last - first + 1 for first, last in (p for p in self.phases if p is not None)]
        if not sizes:
            return self.size, self.size
        return min(sizes), max(sizes)


@dataclass(slots=True, unsafe_hash=True)
class ReceptiveField:
    """A tensor's receptive field: per spatial axis, or global.

    ``is_global`` is True when every unit sees the whole input (after global
    pooling, Flatten into Dense, attention, squeeze-and-excitation gating);
    ``axes`` is then None. ``misaligned`` names the pairs of branches merged
    at this point whose field centres differ ("a|b"). ``unknown`` is True
    when a layer without a rule lies on the way (no number is invented). A value like
    :class:`AxisField`: shared between layers, never changed once built.
    """

    axes: tuple[AxisField, ...] | None
    is_global: bool = False
    misaligned: tuple[str, ...] = ()
    unknown: bool = False


@dataclass(slots=True, unsafe_hash=True)
class Window:
    """The sliding window of a convolution or a pooling layer, as its rule read and checked it.

    Read once, by the rule, from the layer's config (an integral float such as ``3.0`` is 3, an
    int is repeated over the ``rank`` spatial axes): the gradient-flow prediction and the findings
    read the window here, never the config, so that the three agree on every spelling.
    ``groups`` and ``multiplier`` (``depth_multiplier``) are 1 where the layer has none; a
    pooling's ``dilation`` is 1 along every axis. A value, never changed once built (hashable,
    not frozen for the cost of building one: see :class:`AxisField`).

    >>> Window((3, 3), (2, 2), (1, 1), "same").taps
    9
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str
    groups: int = 1
    multiplier: int = 1

    @property
    def taps(self) -> int:
        """Positions one output reads per channel: the product of the kernel sizes."""
        taps = 1
        for size in self.kernel:
            taps *= size
        return taps


@dataclass(slots=True)
class LayerResult:
    """Everything the engine computed for one layer.

    - ``output_shapes``: the output shapes of the layer's first call, one per
      output tensor (``call_output_shapes`` has all calls).
    - ``params``/``trainable_params``/``non_trainable_params``: as Keras's
      ``count_params`` and its trainable split; None when unknown.
    - ``macs``: multiply-accumulates per sample over all calls; None when unknown.
    - ``activation_bytes``: bytes of the layer's outputs per sample over all
      calls (elements x dtype size); None when a size is unknown.
    - ``dtype_bytes``/``variable_bytes``: bytes per element of the layer's outputs and of its
      weights, from its dtype policy (``mixed_float16``: 2 and 4).
    - ``receptive_field``: the field of the first output of the first call,
      None for tensors without spatial axes.
    - ``activation``: the activation the layer applies (``"relu"``,
      ``"sigmoid"``, ...; ``"linear"`` for none), for activation layers too.
    - ``kernel_initializer``: class name of the kernel initializer if any.
    - ``has_weights``: the layer owns trainable or non-trainable weights.
    - ``fan_in``/``fan_out``: of the main kernel (as Keras's variance-scaling
      initializers compute them), None for layers without a kernel.
    - ``sublayers``/``subresult``: for a nested model, its own results.
    - ``unsupported``: True when the engine has no rule for the class;
      ``notes`` says which metrics are missing and why.
    - ``window``: the sliding window of a convolution or pooling (:class:`Window`), None for
      other layers.
    - ``channels_first``: the layer's ``data_format`` is ``"channels_first"``.
    - ``traits``/``merge``/``scale``: what the layer's rule declares (see
      :mod:`app.analysis.traits`); empty for unsupported layers, ``{MODEL}`` for a
      nested model.
    """

    name: str
    class_name: str
    node: LayerNode
    inbound: list[str] = field(default_factory=list)
    output_shapes: list[Shape | None] = field(default_factory=list)
    call_output_shapes: list[list[Shape | None]] = field(default_factory=list)
    input_shapes: list[Shape | None] = field(default_factory=list)
    params: int | None = 0
    trainable_params: int | None = 0
    non_trainable_params: int | None = 0
    macs: int | None = 0
    activation_bytes: int | None = 0
    receptive_field: ReceptiveField | None = None
    activation: str | None = None
    kernel_initializer: str | None = None
    has_weights: bool = False
    fan_in: int | None = None
    fan_out: int | None = None
    dtype_bytes: int = 4
    variable_bytes: int = 4
    subresult: AnalysisResult | None = None
    unsupported: bool = False
    notes: list[str] = field(default_factory=list)
    traits: frozenset[Trait] = frozenset()
    merge: Merge | None = None
    scale: float | None = None
    window: Window | None = None
    channels_first: bool = False

    @property
    def sublayers(self) -> list[LayerResult] | None:
        """The nested model's layer results, or None for a plain layer."""
        return self.subresult.layers if self.subresult is not None else None


@dataclass(slots=True)
class MetricStatus:
    """Whether a metric is complete; ``reason`` says why not."""

    status: str = "complete"
    reason: str | None = None


@dataclass(slots=True)
class AnalysisResult:
    """The analysed graph handed to gradient-flow prediction and findings.

    - ``layers``: per-layer results in topological order (producers first).
    - ``listed_layers``: the same objects in Keras ``model.layers`` order.
    - ``edges``: (source layer, destination layer) pairs, one per tensor
      connection between calls, de-duplicated, in topological order.
    - ``input_shapes``/``output_shapes``: the model's, batch included.
    - ``input_layers``/``output_layers``: the layer names of the model inputs
      and outputs.
    - ``unsupported``: (name, class_name) of layers without a rule, nested
      models included.
    - ``metrics``: per-metric :class:`MetricStatus`.
    - ``misaligned``: merges whose branches' field centres differ:
      ``[{"layer": "add", "branches": ["conv_a|conv_b"]}]``.
    """

    model_name: str
    graph: ModelGraph
    layers: list[LayerResult]
    listed_layers: list[LayerResult]
    edges: list[tuple[str, str]]
    input_shapes: list[Shape | None]
    output_shapes: list[Shape | None]
    input_layers: list[str]
    output_layers: list[str]
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, MetricStatus] = field(default_factory=dict)
    misaligned: list[dict[str, Any]] = field(default_factory=list)
    _by_name: dict[str, LayerResult] | None = field(default=None, repr=False, compare=False)
    _successors: tuple[int, int, dict[str, list[str]]] | None = field(
        default=None, repr=False, compare=False
    )
    #: :func:`app.analysis.skips.find_skips`, found once for the gradient flow and the findings
    _skips: tuple[int, int, Any] | None = field(default=None, repr=False, compare=False)

    def by_name(self) -> dict[str, LayerResult]:
        """Layer results keyed by layer name (built once, then reused: O(1) per call)."""
        if self._by_name is None or len(self._by_name) != len(self.layers):
            self._by_name = {layer.name: layer for layer in self.layers}
        return self._by_name

    def successors(self) -> dict[str, list[str]]:
        """Layer name -> the layers it feeds (from ``edges``).

        Built once and shared by every reader (gradient flow, findings): treat it as
        read-only. It is rebuilt when ``layers`` or ``edges`` change size.
        """
        cached = self._successors
        if cached is not None and cached[0] == len(self.layers) and cached[1] == len(self.edges):
            return cached[2]
        out: dict[str, list[str]] = {layer.name: [] for layer in self.layers}
        for source, destination in self.edges:
            out.setdefault(source, []).append(destination)
        self._successors = (len(self.layers), len(self.edges), out)
        return out
