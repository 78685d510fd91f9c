"""The report's schema: pydantic models of every field :func:`app.analysis.analyze` returns
(``schema_version`` 1.0), with descriptions and units.

The engine builds the report as plain dicts (fast) and the service stores and returns its
JSON bytes as they are; these models document it (they are the OpenAPI response models of
every route that returns a report) and the test suite validates every report it produces
against them with extra fields forbidden, so a change to the report is a change here. What
may change within a version is written in ``docs/report-schema.md``.

Units: lengths of receptive fields are **input pixels** (per spatial axis, in the order of
the input's spatial dimensions); parameters are **counts**; MACs are **multiply-accumulates
per sample** (FLOPs = 2 x MACs); memory is **bytes per sample** (activations) or **bytes**
(parameters); gradient scales are **dimensionless ratios**, with their log10.

Example::

    >>> from app.analysis import analyze
    >>> from app.api.docs import seed_config
    >>> report = Report.model_validate(analyze(seed_config("example3")))
    >>> report.summary.total_params, report.layers[1].receptive_field.axes[0].size
    (57034, 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

SCHEMA_VERSIONS = ("1.0", "1.1", "1.2", "2.0")
"""The versions these models describe. 1.1 adds, per receptive-field axis after upsampling,
``period``, ``unit_sizes`` and ``exact`` (optional fields; sizes may then be fractional).
1.2 adds the optional ``effective_field`` section (the measured effective receptive field).
2.0 gives gradient flow one quantity (``gradient_flow.quantity``) for the prediction and the
measurement: ``predicted.ratio`` and ``log10_relative_gradient_scale`` change meaning,
``measured.ratio``/``per_layer`` replace ``measured.first_to_last_ratio``."""

Shape = list[int | None]
"""A tensor shape with the batch dimension first (null: unknown, always null for the batch)."""

Number = int | float
"""An int, or a float where upsampling made a field's stride or padding fractional."""

Severity = Literal["info", "warning", "error"]
MetricStatus = Literal["complete", "partial"]
GradientVerdict = Literal["vanishing", "healthy", "exploding"]


class Strict(BaseModel):
    """Every report object: exactly the fields documented, no others."""

    model_config = ConfigDict(extra="forbid")


# -- summary ---------------------------------------------------------------------------------


class Summary(Strict):
    """Totals over the layers Keras lists in ``model.layers`` (nested models counted once)."""

    total_params: int = Field(description="Parameters (count), as Keras's count_params().")
    trainable_params: int = Field(description="Trainable parameters (count).")
    non_trainable_params: int = Field(description="Non-trainable parameters (count), e.g. BatchNorm statistics.")
    macs: int = Field(description="Multiply-accumulates per sample of the forward pass (count).")
    flops: int = Field(description="Floating-point operations per sample: 2 x macs.")
    flops_definition: str = Field(description="What macs and flops count and what they leave out.")
    activation_bytes: int = Field(description="Memory of every layer's outputs for one sample (bytes).")
    param_bytes: int = Field(description="Memory of the parameters at their dtypes (bytes).")
    input_shapes: list[Shape | None] = Field(description="Each model input's shape (batch first, null).")
    output_shapes: list[Shape | None] = Field(description="Each model output's shape (batch first, null).")
    layer_count: int = Field(description="Layers in model.layers (nested models count as one).")
    incomplete: list[Literal["params", "macs", "activation_bytes"]] = Field(
        description="Totals that leave out layers whose value is unknown (see coverage)."
    )


# -- receptive fields ------------------------------------------------------------------------


class FieldAxis(Strict):
    """The receptive field along one spatial axis (Araujo et al., Distill 2019)."""

    size: Number = Field(description="Input pixels one unit sees along this axis.")
    stride: Number = Field(description="Input pixels between two neighbouring units (effective stride).")
    padding: Number | None = Field(
        description="Input pixels the first unit's field starts before pixel 0 (effective padding); "
        "null when the input size needed to know it is unknown."
    )
    period: int | None = Field(
        default=None,
        description="(1.1) After upsampling, where neighbouring units' fields differ: units after which the "
        "pattern repeats; size, stride and padding are then the envelope of one period.",
    )
    unit_sizes: list[Number] | None = Field(
        default=None, description="(1.1) With period: the smallest and largest field of one unit (input pixels)."
    )
    exact: bool | None = Field(
        default=None, description="(1.1) false: the envelope is an upper bound, not exact."
    )


class LayerField(Strict):
    """A layer output's receptive field."""

    axes: list[FieldAxis] | None = Field(
        description="Per spatial axis; null when only global paths reach the unit."
    )
    global_: bool = Field(
        alias="global",
        description="Some path into the unit sees the whole input (global pooling, attention, a gate).",
    )
    misaligned: list[list[str]] | None = Field(
        default=None,
        description="Up to three pairs of merged branches whose field centres differ (the worst first).",
    )
    misaligned_count: int | None = Field(
        default=None, description="How many misaligned pairs there are, when more than those listed."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MisalignedMerge(Strict):
    """A merge where branches with different field centres first meet."""

    layer: str = Field(description="The merging layer.")
    branches: list[list[str]] = Field(description="Its worst misaligned pairs (two layer names each).")
    pair_count: int = Field(description="Misaligned pairs first meeting here (count).")
    max_offset: float = Field(description="Largest distance between two field centres (input pixels).")


class ReceptiveFieldSummary(Strict):
    """The last spatial feature map's field and how much of the input it covers."""

    layer: str | None = Field(description="The last layer with a spatial field (null: none).")
    axes: list[FieldAxis] | None = Field(description="Its field per spatial axis.")
    global_: bool = Field(alias="global", description="Whether it also has global paths.")
    input: str | None = Field(description="The spatial input layer the field is measured on.")
    input_size: list[int | None] | None = Field(description="That input's spatial size (pixels per axis).")
    coverage: list[float | None] | None = Field(
        description="Field size over input size per axis (1.0 or more: the whole input)."
    )
    sees_whole_input: bool | None = Field(description="Whether every axis's coverage is at least 1.")
    misaligned: list[MisalignedMerge] = Field(description="Merges of branches with different field centres.")
    head_is_global: bool = Field(description="Whether some layer after it sees the whole input.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- layers ----------------------------------------------------------------------------------


class Layer(Strict):
    """One layer of ``model.layers`` (a nested model lists its own ``layers``)."""

    name: str = Field(description="The layer's name in the model.")
    class_name: str = Field(description="The Keras class, e.g. Conv2D.")
    inbound: list[str] = Field(description="The layers whose outputs it reads (Keras's 'Connected to').")
    output_shape: Shape | list[Shape | None] | None = Field(
        description="Its output shape (batch first, null); a list of shapes for several outputs; "
        "null when unknown."
    )
    params: int | None = Field(description="Parameters (count); null when unknown.")
    trainable_params: int | None = Field(description="Trainable parameters (count).")
    non_trainable_params: int | None = Field(description="Non-trainable parameters (count).")
    macs: int | None = Field(description="Multiply-accumulates per sample (count); null when unknown.")
    activation_bytes: int | None = Field(description="Memory of its outputs for one sample (bytes).")
    receptive_field: LayerField | None = Field(description="Its output's field; null when not spatial or unknown.")
    activation: str | None = Field(description="Its activation function, when it has one.")
    calls: int = Field(description="How many times the model calls it (shared layers: more than one).")
    supported: bool = Field(description="Whether convlens has a rule for its class (else its metrics are unknown).")
    notes: list[str] | None = Field(default=None, description="Assumptions made for this layer.")
    layers: list[Layer] | None = Field(default=None, description="A nested model's own layers.")


# -- gradient flow ---------------------------------------------------------------------------


class GradientThresholds(Strict):
    vanishing_below: float = Field(description="Ratios below this are vanishing (dimensionless).")
    exploding_above: float = Field(description="Ratios above this are exploding (dimensionless).")
    exploding_above_with_normalization: float | None = Field(
        default=None,
        description="Ratios above this are exploding when normalization lies on the path.",
    )


class GradientQuantity(Strict):
    """The one per-layer quantity that the prediction and the measurement both report."""

    name: str = Field(description="Its stable name, e.g. pre_activation_gradient_norm.")
    definition: str
    why: str = Field(description="Why this quantity (docs/gradient-flow.md has the argument).")
    unit: str


class GradientComparison(Strict):
    """Measured against predicted, per weighted layer (same quantity, same normalisation)."""

    layers: int = Field(description="Layers with both values (count).")
    median_factor: float | None = Field(description="Median of max(p/m, m/p) over those layers.")
    max_factor: float | None = Field(description="The largest such factor.")
    within_factor: float | None = Field(description="Share of layers within agreement_factor (0 to 1).")
    agreement_factor: float = Field(description="The factor within which a layer agrees.")
    ratio_factor: float | None = Field(description="max(p/m, m/p) of the first-to-last ratios.")


class PathRange(Strict):
    shortest: int = Field(description="Fewest layers on a path (count).")
    longest: int = Field(description="Most layers on a path (count).")


class CountRange(Strict):
    fewest: int = Field(description="Fewest on any path to an output (count).")
    most: int = Field(description="Most on any path to an output (count).")


class LayerScale(Strict):
    name: str = Field(description="The layer.")
    log10_relative_gradient_scale: float = Field(description="log10 of its gradient RMS over the last layer's.")


class PredictedLayer(Strict):
    """One weighted layer's predicted gradient at initialization."""

    name: str
    class_name: str
    initializer: str | None = Field(description="Its kernel initializer (null: no kernel).")
    weight_variance: list[float | None] = Field(
        description="Variance of each kernel at initialization (null: beyond float range).")
    fan_in: int | None = Field(description="Keras's fan-in of its first kernel (count).")
    fan_out: int | None = Field(description="Keras's fan-out of its last kernel (count).")
    activation: str = Field(description="The activation after it.")
    activation_gain: float | None = Field(
        description="Mean square derivative of that activation (dimensionless; null beyond 1e300).")
    pre_activation_variance: float | None = Field(
        description="Predicted variance of its pre-activations (null beyond 1e300).")
    log10_relative_gradient_scale: float = Field(
        description="log10 of the quantity (gradient_flow.quantity) over the last weighted layer's."
    )
    relative_gradient_scale: float | None = Field(description="That ratio (dimensionless; null beyond 1e300).")
    log10_relative_weight_gradient_scale: float = Field(description="The same for its weight gradient.")
    depth_to_output: PathRange | None = Field(
        description="Weighted layers after it on its paths to an output; null: none reached."
    )
    skip_connections: int = Field(description="Merges downstream of it that an input not computed "
                                  "from it also reaches: paths around it (count).")
    skip_layers: list[str] = Field(description="Up to eight of those merges.")
    saturating_activations: CountRange | None = Field(description="sigmoid/tanh-like activations on its paths.")
    normalizations: CountRange | None = Field(description="Normalization layers on its paths.")


class PredictedGradientFlow(Strict):
    """Gradient flow predicted from the architecture at initialization (no TensorFlow)."""

    method: str = Field(description="How the prediction is made.")
    ratio_definition: str = Field(description="What ratio measures.")
    thresholds: GradientThresholds
    assumptions: list[str] = Field(description="What the prediction assumes.")
    status: Literal["complete", "partial", "not_computed"] = Field(
        description="complete; partial when notes list assumptions made; not_computed with a reason."
    )
    verdict: GradientVerdict | None = Field(description="null when not computed.")
    reason: str | None = Field(default=None, description="Why it was not computed.")
    quantity: str | None = Field(default=None, description="The quantity's name (gradient_flow.quantity).")
    ratio: float | None = Field(default=None, description="The quantity at the first weighted layer over the last's.")
    log10_ratio: float | None = Field(default=None, description="log10 of ratio.")
    normalized: bool | None = Field(
        default=None, description="Whether normalization lies on the first weighted layer's path (the rule uses it)."
    )
    growth_under_normalization: bool | None = Field(
        default=None, description="Growth above exploding_above that normalization makes benign."
    )
    per_layer: dict[str, float | None] | None = Field(
        default=None, description="The quantity per weighted layer over the last's, by name in graph order."
    )
    weight_gradient_ratio: float | None = Field(default=None, description="The same ratio for weight gradients.")
    log10_weight_gradient_ratio: float | None = Field(default=None, description="log10 of weight_gradient_ratio.")
    weight_gradient_verdict: GradientVerdict | None = Field(default=None)
    first_layer: str | None = Field(default=None, description="The first weighted layer reaching an output.")
    last_layer: str | None = Field(default=None, description="The last weighted layer.")
    weighted_layers: int | None = Field(default=None, description="Weighted layers (count).")
    depth: PathRange | None = Field(
        default=None,
        description="Weighted layers after the first weighted layer on its paths to an output "
        "(its depth_to_output).",
    )
    skip_connections: int | None = Field(
        default=None,
        description="Skip connections in the network: residual merges (Add, Average, a scaled "
        "sum) and dense ones (a concatenation with maps computed from one of its inputs); "
        "parallel branches concatenated (Inception) are none. The count the residual_connections "
        "and dense_connections findings and the graph drawing give.",
    )
    saturating_activations_on_longest_path: int | None = Field(default=None, description="Count.")
    weakest_layer: LayerScale | None = Field(default=None)
    strongest_layer: LayerScale | None = Field(default=None)
    reasons: list[str] | None = Field(default=None, description="Why the verdict, in words.")
    layers: list[PredictedLayer] = Field(description="Per weighted layer.")
    notes: list[str] = Field(description="Assumptions made on the way (up to 50).")


class TensorSpec(Strict):
    name: str
    shape: list[int] = Field(description="Shape without the batch dimension, as fed to the model.")
    dtype: str


class OutputSpec(TensorSpec):
    loss: str = Field(description="The loss used on this output for the measurement.")


class ModelIO(Strict):
    inputs: list[TensorSpec]
    outputs: list[OutputSpec]


class MeasuredThresholds(Strict):
    vanishing_ratio: float = Field(description="Ratios below this are vanishing (dimensionless).")
    exploding_ratio: float = Field(description="Ratios above this are exploding (dimensionless).")
    exploding_ratio_with_normalization: float | None = Field(
        default=None, description="Ratios above this are exploding when normalization lies on the path."
    )


class MeasuredWeight(Strict):
    layer: str
    name: str = Field(description="The weight tensor's path.")
    shape: list[int]
    grad_norm: float | None = Field(description="Mean L2 norm of its gradient over the batches; null: disconnected.")
    connected: bool = Field(description="Whether the loss reaches it.")
    weight_norm: float | None = Field(description="L2 norm of the weights.")


class MeasuredLayer(Strict):
    name: str
    class_name: str
    grad_norm: float | None = Field(
        description="L2 norm of its weight gradients (mean over batches); null: no weights."
    )
    grad_rms: float | None = Field(default=None, description="grad_norm over the square root of its parameter count.")
    params: int | None = Field(default=None, description="Its trainable parameters (count).")
    activation_mean: float | None = Field(description="Mean of its outputs on the batches.")
    activation_std: float | None = Field(description="Standard deviation of its outputs.")
    dead_fraction: float | None = Field(description="Share of ReLU units never positive on the batches (0 to 1).")


class AblationLayer(Strict):
    name: str
    grad_norm_with_skips: float
    grad_norm_without_skips: float
    ratio: float | None = Field(description="Without over with (dimensionless).")


class RemovedAdd(Strict):
    add: str = Field(description="The Add layer removed.")
    kept_branch: str = Field(description="The branch whose output replaces the sum.")
    shortcut: str = Field(description="The shortcut dropped.")


class SkippedAdd(Strict):
    add: str = Field(description="An Add layer left in place.")
    reason: str


class SkipAblation(Strict):
    """The same measurement with the residual additions removed."""

    status: Literal["measured", "not_applicable", "failed", "not_requested"]
    reason: str | None = None
    removed_adds: list[RemovedAdd] | None = None
    skipped_adds: list[SkippedAdd] | None = Field(default=None, description="Add layers left in place, with why.")
    layers: list[AblationLayer] | None = None
    early_layers: list[str] | None = None
    early_layers_mean_ratio: float | None = None
    first_to_last_ratio_without_skips: float | None = None
    verdict_without_skips: GradientVerdict | None = None
    summary: str | None = None


class MeasuredGradientFlow(Strict):
    """Gradient flow measured with TensorFlow on seeded synthetic batches (a queued job)."""

    status: Literal["measured"]
    method: str
    batches: int
    batch_size: int
    seed: int
    io: ModelIO
    thresholds: MeasuredThresholds
    ratio_definition: str
    loss: float | None = Field(description="Mean loss over the batches.")
    weights: list[MeasuredWeight]
    layers: list[MeasuredLayer]
    first_layer: str | None
    last_layer: str | None
    quantity: str = Field(description="The quantity's name (gradient_flow.quantity).")
    assumptions: list[str] = Field(description="What the measurement assumed (the prediction's conditions).")
    ratio: float | None = Field(description="The quantity at the first weighted layer over the last's.")
    log10_ratio: float | None
    per_layer: dict[str, float | None] = Field(
        description="The quantity per weighted layer over the last's, by name in graph order."
    )
    non_finite_gradients: bool
    verdict: GradientVerdict | None
    summary: str
    skip_ablation: SkipAblation
    device: str = Field(description="Where it ran, e.g. CPU:0.")
    elapsed_s: float = Field(description="Wall time of the measurement (seconds).")


class FailedMeasurement(Strict):
    """A gradients job that failed or was cancelled (the job keeps the full error)."""

    status: Literal["failed"]
    verdict: None = None
    reason: str = Field(description="Why, in words.")
    code: str | None = Field(default=None, description="The job error's stable code, when it has one.")


class GradientFlow(Strict):
    quantity: GradientQuantity | None = Field(default=None, description="What ratio and per_layer measure.")
    predicted: PredictedGradientFlow
    measured: MeasuredGradientFlow | FailedMeasurement | None = Field(
        description="null until a gradients job has measured it."
    )
    comparison: GradientComparison | None = Field(default=None, description="Measured against predicted.")
    agreement: Literal["agree", "disagree"] | None = Field(
        default=None, description="Whether the measured verdict is the predicted one (null: not measured)."
    )


# -- effective receptive field (measured) -----------------------------------------------------


class EffectiveFieldHeatmap(Strict):
    """The measured influence over the whole input, as block means scaled to a maximum of 1."""

    cell: list[int] = Field(description="Input pixels per heat-map cell along each spatial axis.")
    values: list[list[float]] = Field(description="Rows of cells (first spatial axis), each 0..1.")


class EffectiveFieldLayer(Strict):
    """How the input influences the centre unit of one layer, beside its theoretical field."""

    layer: str = Field(description="The layer measured (top level of the model).")
    output_size: list[int] = Field(description="Its output's spatial size (units per axis).")
    unit: list[int] = Field(description="The unit measured: (units - 1) // 2 per axis.")
    field_box: list[list[Number]] = Field(
        description="The unit's theoretical field per axis as [first, last] input pixel (may reach past the input)."
    )
    field_centre: list[float] = Field(description="Centre of the theoretical field per axis (input pixels).")
    visible_field_size: list[int] = Field(description="Pixels of the theoretical field inside the input, per axis.")
    field_clipped: bool = Field(description="Whether the theoretical field reaches past the input's edges.")
    total_influence: float = Field(description="Sum of the mean absolute input gradient (0: nothing reaches the unit).")
    centre: list[float] | None = Field(description="Centre of mass of the influence per axis (input pixels).")
    centre_offset: list[float] | None = Field(description="centre minus field_centre per axis (input pixels).")
    size95: list[int] | None = Field(
        description="Per axis, the central run of input pixels holding 95% of the influence (pixels)."
    )
    fraction: list[float | None] | None = Field(
        description="size95 over the visible theoretical field size, per axis (1.0: all of it)."
    )
    radius95: float | None = Field(description="Radius around the centre holding 95% of the influence (pixels).")
    area95: int | None = Field(description="Fewest input pixels holding 95% of the influence (count).")
    area_fraction: float | None = Field(description="area95 over the visible theoretical field's pixels.")
    mass_inside_field: float | None = Field(
        description="Share of the influence inside the theoretical field (1.0: always, by definition)."
    )
    heatmap: EffectiveFieldHeatmap
    note: str | None = Field(default=None, description="Why the numbers may not be trusted, when they may not.")


class MeasuredEffectiveField(Strict):
    """The effective receptive field, measured with TensorFlow (a queued job): what does matter to a
    unit, where the theoretical field says what can."""

    status: Literal["measured"]
    method: str
    mass: float = Field(description="Share of the influence the *95 numbers hold (0.95).")
    samples: int = Field(description="Random inputs averaged over (count).")
    seed: int
    input_size: list[int] = Field(description="The input's spatial size measured at (pixels per axis).")
    weights: Literal["uploaded", "initialisation"] = Field(
        description="The uploaded file's weights, or Keras's initialisation when it had none."
    )
    layers: list[EffectiveFieldLayer]
    device: str = Field(description="Where it ran (cpu or gpu).")
    elapsed_s: float = Field(description="Wall time of the measurement (seconds).")
    job_id: str = Field(description="The effective_field job that measured it.")


class FailedEffectiveField(Strict):
    status: Literal["failed"]
    reason: str
    error: dict[str, Any] | None
    job_id: str


# -- findings --------------------------------------------------------------------------------


class FindingBase(Strict):
    severity: Severity
    layers: list[str] = Field(description="The layers involved.")
    message: str = Field(description="What was found and why it matters, in words.")
    measurement: Literal["confirmed", "contradicted"] | None = Field(
        default=None, description="For gradient-flow findings: what the measurement says (absent before one)."
    )
    measurement_note: str | None = Field(default=None, description="That, in words.")


class StageSummary(Strict):
    index: int = Field(description="1 for the first stage.")
    effective_stride: Number = Field(description="Input pixels per output pixel in this stage.")
    resolution: list[int | None] = Field(description="Spatial size of its feature maps (pixels per axis).")
    first_layer: str
    last_layer: str
    output_layer: str = Field(description="The layer whose output leaves the stage.")
    downsampling_layers: list[str]
    upsampling_layers: list[str]
    layer_count: int
    layers: list[str]
    convolutions: int
    weighted_layers: int
    params: int = Field(description="Parameters in the stage (count).")
    macs: int = Field(description="Multiply-accumulates per sample in the stage.")
    field_start: Number = Field(description="Receptive field entering the stage (input pixels).")
    field_end: Number = Field(description="Receptive field leaving the stage (input pixels).")
    field_growth: Number = Field(description="field_end - field_start (input pixels).")
    channels_in: int
    channels_out: int
    channel_growth: float = Field(description="channels_out / channels_in.")


class HeadSummary(Strict):
    first_layer: str
    last_layer: str
    layer_count: int
    layers: list[str]
    params: int
    macs: int
    downsampling_layers: list[str]
    global_: bool = Field(alias="global", description="Whether the head pools globally.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StagesDetails(Strict):
    stages: list[StageSummary]
    head: HeadSummary | None


class CoverageDetails(Strict):
    layer: str
    field: list[Number] = Field(description="Field size per axis (input pixels).")
    input_size: list[int | None]
    coverage: list[float | None]
    head_is_global: bool


class KernelStride(Strict):
    layer: str
    kernel: list[int]
    strides: list[int]


class StrideKernel(KernelStride):
    skipped_pixels_per_step: list[int]


class LayersDetails(Strict):
    layers: list[KernelStride]


class StrideDetails(Strict):
    layers: list[StrideKernel]


class DownsamplingDetails(Strict):
    effective_stride: int
    convolutions_before: int
    field: int = Field(description="Input pixels.")


class DeepStackDetails(Strict):
    length: int = Field(description="Weighted layers in a row (count).")
    threshold: int


class SaturatingDetails(Strict):
    count: int
    activations: list[str]
    gradient_verdict: GradientVerdict | None
    gradient_ratio: float | None


class DenseHeadDetails(Strict):
    head_params: int
    total_params: int
    share: float = Field(description="head_params / total_params (0 to 1).")


class DilationDetails(Strict):
    chains: list[list[str]]


class ShapeMismatch(Strict):
    layer: str
    class_name: str
    inputs: list[str]
    input_shapes: list[Shape | None]


class ShapeMismatchDetails(Strict):
    merges: list[ShapeMismatch]


class MisalignedOrigin(Strict):
    layer: str = Field(description="The merge where the misaligned branches meet.")
    branches: list[list[str]] = Field(description="Pairs of branch layers whose field centres differ.")


class MisalignedDetails(Strict):
    merges: list[MisalignedOrigin]


class ResidualDetails(Strict):
    merges: int = Field(description="The finding's merges (count).")
    layers_bypassed: int = Field(description="Weighted layers some skip connection goes around.")
    shortest_path: int = Field(description="Weighted layers after the first one on its shortest path to an output.")
    longest_path: int = Field(description="...and on its longest.")
    gradient_ratio: float | None
    gradient_verdict: GradientVerdict | None


class FullResolutionDetails(Strict):
    resolution: list[int | None]
    macs: int
    total_macs: int
    share: float
    layers: int
    convolutions: int
    params: int
    macs_per_param: int
    first_downsampling: str | None
    convolutions_before_downsampling: int
    activation_bytes: int
    activation_share: float
    macs_if_downsampled_by_2: int


class BiasBeforeNormDetails(Strict):
    layers: int
    redundant_params: int
    total_params: int


class NonnegativeBranch(Strict):
    merge: str
    branch_end: str
    shortcut: str
    activation: str


class NonnegativeDetails(Strict):
    merges: list[NonnegativeBranch]


class GradientDetails(Strict):
    ratio: float | None
    log10_ratio: float | None
    thresholds: GradientThresholds


def _finding(code: str, details: type[BaseModel], doc: str) -> type[FindingBase]:
    """The finding model of one code: ``code`` fixed to it and its own ``details``."""
    name = "".join(part.title() for part in code.split("_")) + "Finding"
    model: type[FindingBase] = create_model(
        name,
        __base__=FindingBase,
        __doc__=doc,
        __module__=__name__,
        code=(Literal[code], Field(description="Stable code of the finding.")),  # type: ignore[valid-type,arg-type]
        details=(details, Field(description="The numbers behind the message.")),
    )
    return model


_FINDINGS = [
    _finding("stages", StagesDetails, "The stages between downsamplings, with field and channel growth."),
    _finding("receptive_field_coverage", CoverageDetails, "The last feature map's field covers most of the input."),
    _finding("receptive_field_small", CoverageDetails, "The last feature map's field sees under half the input."),
    _finding("stride_exceeds_kernel", StrideDetails, "A stride larger than the kernel skips input pixels."),
    _finding("aggressive_early_downsampling", DownsamplingDetails, "8x or more downsampling within two convolutions."),
    _finding("deep_plain_stack", DeepStackDetails, "10+ weighted layers in a row, no skip or normalization."),
    _finding("saturating_activations_deep", SaturatingDetails, "sigmoid/tanh-like activations deep in a stack."),
    _finding("dense_head_dominates", DenseHeadDetails, "A Flatten-to-Dense head holds most of the parameters."),
    _finding("checkerboard_transposed_conv", LayersDetails, "Transposed conv kernel not divisible by its stride."),
    _finding("dilation_gridding", DilationDetails, "Stacked dilations with a common factor leave a grid of holes."),
    _finding("residual_shape_mismatch", ShapeMismatchDetails, "An element-wise merge of differently shaped tensors."),
    _finding("misaligned_fields", MisalignedDetails, "Merged branches whose field centres differ."),
    _finding("residual_connections", ResidualDetails, "What the residual merges buy for the gradient."),
    _finding("dense_connections", ResidualDetails, "Concatenations that pass earlier feature maps forward."),
    _finding("full_resolution_compute", FullResolutionDetails, "Most compute runs at full input resolution."),
    _finding("bias_before_normalization", BiasBeforeNormDetails, "A bias right before normalization is cancelled."),
    _finding("residual_branch_nonnegative", NonnegativeDetails, "Residual branches end in ReLU before the addition."),
    _finding("gradient_flow_vanishing", GradientDetails, "Predicted vanishing gradients at initialization."),
    _finding("gradient_flow_exploding", GradientDetails, "Predicted exploding gradients at initialization."),
    _finding("gradient_flow_normalization_growth", GradientDetails,
             "Gradients grow under normalization at initialization, in the range where networks train."),
]

#: The finding codes the schema documents (the engine's ``findings.CODES``, checked by a test).
FINDING_CODES = tuple(model.model_fields["code"].annotation.__args__[0] for model in _FINDINGS)  # type: ignore[union-attr]

if TYPE_CHECKING:  # pragma: no cover - one object type per code, told apart by ``code``
    Finding = FindingBase
else:
    Finding = Annotated[Union[tuple(_FINDINGS)], Field(discriminator="code")]  # noqa: UP007 - built from the list


# -- coverage --------------------------------------------------------------------------------


class MetricCoverage(Strict):
    status: MetricStatus
    reason: str | None = Field(description="Why the metric is partial (null when complete).")


class Metrics(Strict):
    shapes: MetricCoverage
    params: MetricCoverage
    macs: MetricCoverage
    activation_bytes: MetricCoverage
    receptive_field: MetricCoverage
    gradient_flow: MetricCoverage
    findings: MetricCoverage | None = Field(default=None, description="Present when the findings failed.")


class UnsupportedLayer(Strict):
    name: str
    class_name: str


class Coverage(Strict):
    """Whether each metric is complete, and why not (layers without a rule are listed, never
    counted as zero)."""

    status: MetricStatus
    unsupported_layers: list[UnsupportedLayer]
    metrics: Metrics


# -- the report ------------------------------------------------------------------------------


class Report(Strict):
    """What convlens says about an architecture (``schema_version`` 1.0, 1.1, 1.2 or 2.0)."""

    schema_version: Literal["1.0", "1.1", "1.2", "2.0"] = Field(
        description="The schema the report follows (docs/report-schema.md says what may change within one)."
    )
    model_name: str | None = Field(description="The name given, or the model's own.")
    summary: Summary
    layers: list[Layer] = Field(description="Every layer of model.layers, in order.")
    receptive_field: ReceptiveFieldSummary
    gradient_flow: GradientFlow
    findings: list[Finding] = Field(description="What the architecture implies, errors and warnings first.")
    coverage: Coverage
    effective_field: Annotated[MeasuredEffectiveField | FailedEffectiveField, Field(discriminator="status")] | None = (
        Field(default=None, description="(1.2) The measured effective receptive field, once a job measured it.")
    )


def validate_report(report: dict[str, Any]) -> Report:
    """The report as :class:`Report`, or a :class:`pydantic.ValidationError` naming the fields
    that differ from the schema (tests call it on every report they produce)."""
    return Report.model_validate(report, strict=False)
