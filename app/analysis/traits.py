"""What a layer class *is*, declared once by its rule and read by everything else.

The rule registry (:mod:`app.analysis.rules`) is the only place that knows a Keras class name.
Every other part of convlens (gradient prediction, findings, the graph drawing, the measured
probe) asks a layer for its :class:`Trait` set and, for layers that combine tensors, its
:class:`Merge` mode, instead of keeping its own list of class names.

>>> from app.analysis.rules import lookup
>>> Trait.SPATIAL_KERNEL in lookup("DepthwiseConv2D", None).traits
True
>>> lookup("Average", None).merge
<Merge.AVERAGE: 'average'>
"""

from __future__ import annotations

from enum import StrEnum


class Trait(StrEnum):
    """One fact about a layer class. A class has at least one."""

    INPUT = "input"
    """A model input (``InputLayer``)."""
    KERNEL = "kernel"
    """Holds a kernel that maps inputs to outputs linearly (convolutions, Dense, EinsumDense):
    the gradient prediction models its variance; the measured probe reports its gradient."""
    SPATIAL_KERNEL = "spatial_kernel"
    """Slides a kernel window over the spatial axes (every convolution, transposed included)."""
    DEPTHWISE = "depthwise"
    """The spatial kernel works per channel (depthwise and separable convolutions)."""
    SEPARABLE = "separable"
    """A depthwise kernel followed by a pointwise (1x1) one."""
    TRANSPOSED = "transposed"
    """A transposed convolution: each input unit spreads over a window of outputs."""
    UPSAMPLING = "upsampling"
    """Raises the spatial resolution (UpSampling, transposed convolutions)."""
    RESIZING = "resizing"
    """Resamples or crops the spatial axes to a size from the config (Resizing, CenterCrop...)."""
    POOLING = "pooling"
    """A local pooling window (max or average)."""
    GLOBAL_POOLING = "global_pooling"
    """Pools over every spatial position: the field becomes global."""
    AVERAGING = "averaging"
    """A pooling that averages its window (the gradient is shared out, not routed to a maximum)."""
    NORMALIZATION = "normalization"
    """Normalizes activations to zero mean, unit variance (BatchNormalization, LayerNorm...)."""
    ACTIVATION = "activation"
    """A stand-alone non-linearity (Activation, ReLU, ...)."""
    MERGE = "merge"
    """Combines several tensors; :class:`Merge` says how."""
    PREPROCESSING = "preprocessing"
    """Prepares raw inputs (rescaling, normalization by data statistics, augmentation)."""
    REGULARIZATION = "regularization"
    """Only acts in training (dropout, noise) or on the loss: identity at inference."""
    IDENTITY = "identity"
    """Passes its input through unchanged at inference."""
    FLATTEN = "flatten"
    """Collapses every non-batch axis into one vector (Flatten)."""
    RESHAPE = "reshape"
    """Rearranges elements without computing (Flatten, Reshape, Permute, RepeatVector)."""
    PADDING = "padding"
    """Pads the spatial axes (ZeroPadding)."""
    CROPPING = "cropping"
    """Crops the spatial axes (Cropping)."""
    DENSE = "dense"
    """A fully connected layer over the last axis (Dense, EinsumDense)."""
    EMBEDDING = "embedding"
    """Looks rows up in a table (Embedding)."""
    RECURRENT = "recurrent"
    """Iterates over a sequence axis (LSTM, GRU, ConvLSTM, their wrappers)."""
    ATTENTION = "attention"
    """Attention: every output can see every input position."""
    WRAPPER = "wrapper"
    """Wraps another layer (Bidirectional, TimeDistributed)."""
    SCALE = "scale"
    """Multiplies by a learned per-channel scale (ConvNeXt's LayerScale)."""
    OPERATION = "operation"
    """A functional op recorded in the graph (Keras 3 ops, tf.keras TFOpLambda)."""
    MODEL = "model"
    """A model used as a layer (nested Functional / Sequential)."""


class Merge(StrEnum):
    """How a merging layer combines its inputs (it matters for gradients and for findings)."""

    SUM = "sum"
    """Add, Subtract: gradients pass unchanged to every input."""
    AVERAGE = "average"
    """Average: the sum divided by the number of inputs."""
    PRODUCT = "product"
    """Multiply: gating; each input's gradient is scaled by the others."""
    SELECT = "select"
    """Maximum, Minimum: the gradient goes to the selected input."""
    CONCAT = "concat"
    """Concatenate: inputs side by side along an axis."""
    DOT = "dot"
    """Dot: a contraction of two tensors."""


ELEMENTWISE_MERGES = frozenset({Merge.SUM, Merge.AVERAGE, Merge.PRODUCT, Merge.SELECT})
"""Merges that combine tensors element by element (broadcasting them)."""
RESIDUAL_MERGES = frozenset({Merge.SUM, Merge.AVERAGE, Merge.SELECT})
"""Element-wise merges that a residual connection uses (Multiply is gating, not a shortcut)."""
SKIP_MERGES = frozenset({Merge.SUM, Merge.AVERAGE, Merge.CONCAT})
"""Merges through which a skip connection carries the gradient around a branch."""
SPATIAL_MERGES = ELEMENTWISE_MERGES | {Merge.CONCAT}
"""Merges that keep the spatial layout (their receptive fields are unions)."""
