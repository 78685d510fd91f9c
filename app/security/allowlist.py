"""The explicit allowlist of Keras objects convlens lets through to Keras.

Everything in a model config that Keras may turn into a Python object carries a
``class_name`` (and, in Keras 3, a ``module`` and ``registered_name``). Keras resolves
those by importing ``module`` and looking up ``class_name``; every published bypass of
Keras's safe mode abused that lookup. convlens therefore accepts only the exact
``(module, class_name)`` pairs listed here, for modelling objects whose configs are data:
layers, models, initializers, regularizers, constraints, dtype policies, seed generators
and a few symbolic-math operations. Anything else is refused before Keras sees it.

Example::

    >>> ("keras.layers", "Conv2D") in ALLOWED_PAIRS
    True
    >>> ("keras.layers", "Lambda") in ALLOWED_PAIRS
    False
"""

from __future__ import annotations

from typing import Final

# -- categories -----------------------------------------------------------------------
LAYER: Final = "layer"
MODEL: Final = "model"
INITIALIZER: Final = "initializer"
REGULARIZER: Final = "regularizer"
CONSTRAINT: Final = "constraint"
DTYPE_POLICY: Final = "dtype_policy"
SEED_GENERATOR: Final = "seed_generator"
OPERATION: Final = "operation"
TF_OP_LAYER: Final = "tf_op_layer"

# Layers whose configs are plain data. Lambda, TFSMLayer, TorchModuleWrapper, JaxLayer,
# FlaxLayer, the abstract Layer/Wrapper bases and tf.keras DenseFeatures (feature columns)
# are deliberately absent. Lookup layers are present but their vocabularies are checked.
LAYER_CLASSES: Final[frozenset[str]] = frozenset(
    """
    Activation ActivityRegularization AdaptiveAveragePooling1D AdaptiveAveragePooling2D
    AdaptiveAveragePooling3D AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D
    Add AdditiveAttention AlphaDropout Attention AugMix AutoContrast Average
    AveragePooling1D AveragePooling2D AveragePooling3D AvgPool1D AvgPool2D AvgPool3D
    BatchNormalization Bidirectional CategoryEncoding CenterCrop Concatenate
    Conv1D Conv1DTranspose Conv2D Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM1D
    ConvLSTM2D ConvLSTM3D Convolution1D Convolution1DTranspose Convolution2D
    Convolution2DTranspose Convolution3D Convolution3DTranspose Cropping1D Cropping2D
    Cropping3D CutMix Dense DepthwiseConv1D DepthwiseConv2D Discretization Dot Dropout ELU
    EinsumDense Embedding Equalization Flatten GRU GRUCell GaussianDropout GaussianNoise
    GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D GlobalAvgPool1D
    GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D
    GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GroupNormalization
    GroupQueryAttention HashedCrossing Hashing Identity InputLayer IntegerLookup LSTM
    LSTMCell LayerNormalization LeakyReLU Masking MaxNumBoundingBoxes MaxPool1D MaxPool2D
    MaxPool3D MaxPooling1D MaxPooling2D MaxPooling3D Maximum MelSpectrogram Minimum MixUp
    MultiHeadAttention Multiply Normalization PReLU Permute Pipeline RMSNormalization RNN
    RandAugment RandomBrightness RandomColorDegeneration RandomColorJitter RandomContrast
    RandomCrop RandomElasticTransform RandomErasing RandomFlip RandomGaussianBlur
    RandomGrayscale RandomHue RandomInvert RandomPerspective RandomPosterization
    RandomRotation RandomSaturation RandomSharpness RandomShear RandomTranslation
    RandomZoom ReLU RepeatVector Rescaling Reshape Resizing ReversibleEmbedding
    STFTSpectrogram SeparableConv1D SeparableConv2D SeparableConvolution1D
    SeparableConvolution2D SimpleRNN SimpleRNNCell Softmax Solarization SpatialDropout1D
    SpatialDropout2D SpatialDropout3D SpectralNormalization StackedRNNCells StringLookup
    Subtract TextVectorization TimeDistributed UnitNormalization UpSampling1D UpSampling2D
    UpSampling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D
    LocallyConnected1D LocallyConnected2D RandomHeight RandomWidth ThresholdedReLU
    """.split()
)

#: Layers that look up a vocabulary: allowed only when the vocabulary is inline data.
LOOKUP_LAYERS: Final[frozenset[str]] = frozenset(
    {"StringLookup", "IntegerLookup", "TextVectorization"}
)
#: Config keys of lookup layers that Keras treats as a file path when they hold a string.
LOOKUP_PATH_KEYS: Final[tuple[str, ...]] = ("vocabulary", "idf_weights")

MODEL_CLASSES: Final[frozenset[str]] = frozenset({"Sequential", "Functional", "Model"})

INITIALIZER_CLASSES: Final[frozenset[str]] = frozenset(
    """
    Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity IdentityInitializer
    LecunNormal LecunUniform Ones Orthogonal OrthogonalInitializer RandomNormal
    RandomUniform STFT STFTInitializer TruncatedNormal VarianceScaling Zeros
    """.split()
)
REGULARIZER_CLASSES: Final[frozenset[str]] = frozenset(
    {"L1", "L2", "L1L2", "OrthogonalRegularizer"}
)
CONSTRAINT_CLASSES: Final[frozenset[str]] = frozenset(
    {"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"}
)
DTYPE_POLICY_CLASSES: Final[frozenset[str]] = frozenset(
    {"DTypePolicy", "FloatDTypePolicy", "QuantizedDTypePolicy", "QuantizedFloat8DTypePolicy",
     "Int4DTypePolicy", "Policy"}
)

# Symbolic operations Keras 3 records when ops are applied to KerasTensors in the functional
# API (``x + 1.0`` becomes ``keras.src.ops.numpy.Add``). Pure tensor math only.
KERAS_OPERATIONS: Final[dict[str, frozenset[str]]] = {
    "keras.src.ops.numpy": frozenset(
        """
        Abs Absolute Add Amax Amin Average Clip Concatenate Divide Exp ExpandDims Flatten
        GetItem Log Matmul Max Maximum Mean Min Minimum Multiply Negative Power Reshape
        Sqrt Square Squeeze Stack Subtract Sum Tanh Transpose TrueDivide
        """.split()
    ),
    "keras.src.ops.nn": frozenset(
        """
        Elu Gelu HardSigmoid HardSilu LeakyRelu LogSoftmax Relu Relu6 Selu Sigmoid Silu
        Softmax Softplus Softsign
        """.split()
    ),
    "keras.src.ops.core": frozenset({"Cast"}),
    "keras.src.ops.math": frozenset({"Rsqrt"}),
}

# Modules under which Keras (3 and 2) publishes the public classes of each category.
# ``None`` is a config without a ``module`` key (tf.keras 2.x, Keras 2): Keras then looks
# ``class_name`` up in its own registry only.
_LAYER_MODULES = (None, "keras.layers", "keras", "tf_keras.layers")
_MODEL_MODULES = (
    None, "keras", "keras.models", "keras.src.models.functional", "keras.src.models.sequential",
    "keras.src.models.model", "keras.engine.functional", "keras.engine.sequential",
    "keras.engine.training", "keras.src.engine.functional", "keras.src.engine.sequential",
    "keras.src.engine.training", "tf_keras.src.engine.functional",
    "tf_keras.src.engine.sequential", "tf_keras.src.engine.training",
)
_INITIALIZER_MODULES = (None, "keras.initializers")
_REGULARIZER_MODULES = (None, "keras.regularizers")
_CONSTRAINT_MODULES = (None, "keras.constraints")
_DTYPE_POLICY_MODULES = (None, "keras", "keras.dtype_policies", "keras.mixed_precision")

_TF_OP_LAYER_MODULES = (
    None, "keras.layers", "tf_keras.src.layers.core.tf_op_layer",
    "keras.src.layers.core.tf_op_layer", "keras.layers.core.tf_op_layer",
)


def _pairs(modules: tuple[str | None, ...], classes: frozenset[str], category: str) -> dict:
    return {(module, name): category for module in modules for name in classes}


#: (module, class_name) -> category. The complete list of objects convlens lets Keras build.
ALLOWED_PAIRS: Final[dict[tuple[str | None, str], str]] = {
    **_pairs(_LAYER_MODULES, LAYER_CLASSES, LAYER),
    **_pairs(_MODEL_MODULES, MODEL_CLASSES, MODEL),
    **_pairs(_INITIALIZER_MODULES, INITIALIZER_CLASSES, INITIALIZER),
    **_pairs(_REGULARIZER_MODULES, REGULARIZER_CLASSES, REGULARIZER),
    **_pairs(_CONSTRAINT_MODULES, CONSTRAINT_CLASSES, CONSTRAINT),
    **_pairs(_DTYPE_POLICY_MODULES, DTYPE_POLICY_CLASSES, DTYPE_POLICY),
    **_pairs(_TF_OP_LAYER_MODULES, frozenset({"TFOpLambda", "SlicingOpLambda"}), TF_OP_LAYER),
    **{
        (module, name): OPERATION
        for module, names in KERAS_OPERATIONS.items()
        for name in names
    },
    ("keras.random", "SeedGenerator"): SEED_GENERATOR,
    ("keras.src.random.seed_generator", "SeedGenerator"): SEED_GENERATOR,
    # Layers the Keras Applications define for themselves (ConvNeXt, InceptionResNetV2).
    ("keras.src.applications.convnext", "LayerScale"): LAYER,
    ("keras.src.applications.inception_resnet_v2", "CustomScaleLayer"): LAYER,
    ("tf_keras.src.applications.convnext", "LayerScale"): LAYER,
    ("tf_keras.src.applications.inception_resnet_v2", "CustomScaleLayer"): LAYER,
    (None, "LayerScale"): LAYER,
    (None, "CustomScaleLayer"): LAYER,
    # tf.keras 2.x serialises ``Constant`` initializers built from TF's own class this way.
    ("tensorflow.python.ops.init_ops_v2", "Constant"): INITIALIZER,
}

#: registered_name values other than ``None`` / ``class_name`` that real configs carry.
ALLOWED_REGISTERED_NAMES: Final[dict[tuple[str | None, str], frozenset[str]]] = {
    ("tf_keras.src.applications.inception_resnet_v2", "CustomScaleLayer"): frozenset(
        {"Custom>CustomScaleLayer"}
    ),
}

# -- objects that are refused, with the reason given to the client --------------------
DENIED_CLASS_REASONS: Final[dict[str, str]] = {
    "Lambda": "Lambda layers carry Python code (marshalled bytecode or a function reference)",
    "TFSMLayer": "TFSMLayer loads a TensorFlow SavedModel from a path on the server",
    "TorchModuleWrapper": "TorchModuleWrapper carries a pickled PyTorch module",
    "JaxLayer": "JaxLayer wraps arbitrary JAX functions",
    "FlaxLayer": "FlaxLayer wraps an arbitrary Flax module",
    "DenseFeatures": "DenseFeatures carries TensorFlow feature-column objects",
    "Layer": "a bare Layer is a subclassing base, it has no modelling config",
    "Wrapper": "a bare Wrapper is a subclassing base, it has no modelling config",
    "InstanceProperty": "tf.keras InstanceProperty layers call arbitrary attributes",
    "InstanceMethod": "tf.keras InstanceMethod layers call arbitrary methods",
    "ClassMethod": "tf.keras ClassMethod layers call arbitrary class methods",
    "__lambda__": "marshalled Python bytecode",
    "__bytes__": "raw bytes have no place in a model architecture",
    "__typespec__": "TensorFlow type specs are not part of a model architecture",
    "function": "a reference to a Python function",
}

# -- plain-string references Keras resolves by name -----------------------------------
ACTIVATION_NAMES: Final[frozenset[str]] = frozenset(
    """
    celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu hard_swish hard_tanh
    leaky_relu linear log_sigmoid log_softmax mish relu relu6 selu sigmoid silu soft_shrink
    softmax softplus softsign sparse_plus sparse_sigmoid sparsemax squareplus swish tanh
    tanh_shrink threshold
    """.split()
)
#: Modules under which a ``{"class_name": "function"}`` may name an activation.
ACTIVATION_FUNCTION_MODULES: Final[frozenset[str]] = frozenset(
    {"builtins", "keras.activations", "keras.src.activations.activations"}
)
INITIALIZER_NAMES: Final[frozenset[str]] = frozenset(
    """
    constant glorot_normal glorot_uniform he_normal he_uniform identity lecun_normal
    lecun_uniform ones orthogonal random_normal random_uniform stft truncated_normal
    variance_scaling zeros uniform normal one zero
    """.split()
) | INITIALIZER_CLASSES
REGULARIZER_NAMES: Final[frozenset[str]] = frozenset(
    {"l1", "l2", "l1_l2", "orthogonal_regularizer"}
) | REGULARIZER_CLASSES
CONSTRAINT_NAMES: Final[frozenset[str]] = frozenset(
    {"max_norm", "min_max_norm", "non_neg", "unit_norm", "maxnorm", "nonneg", "unitnorm"}
) | CONSTRAINT_CLASSES

#: Config keys whose string value Keras resolves to an activation function.
ACTIVATION_KEYS: Final[frozenset[str]] = frozenset(
    {"activation", "recurrent_activation", "gate_activation", "attention_activation"}
)

# tf.keras 2.x records TensorFlow ops applied to KerasTensors as TFOpLambda layers named by
# the op's path under ``tf.``; only element-wise / reduction / shape math is accepted.
TF_OP_FUNCTIONS: Final[frozenset[str]] = frozenset(
    """
    __operators__.add __operators__.getitem __operators__.eq __operators__.ne
    math.add math.add_n math.subtract math.multiply math.divide math.truediv math.floordiv
    math.scalar_mul math.negative math.abs math.square math.sqrt math.rsqrt math.pow
    math.exp math.log math.log1p math.sigmoid math.tanh math.maximum math.minimum
    math.reduce_mean math.reduce_sum math.reduce_max math.reduce_min math.reduce_prod
    math.reduce_std math.reduce_variance math.reduce_logsumexp math.softplus math.erf
    math.reciprocal math.sign math.round math.floor math.ceil math.l2_normalize
    math.multiply_no_nan math.divide_no_nan math.squared_difference
    nn.relu nn.relu6 nn.elu nn.selu nn.gelu nn.silu nn.swish nn.sigmoid nn.tanh nn.softmax
    nn.log_softmax nn.leaky_relu nn.softplus nn.softsign nn.bias_add nn.l2_normalize
    nn.depth_to_space nn.space_to_depth nn.moments
    compat.v1.transpose compat.v1.squeeze compat.v1.shape compat.v1.gather
    transpose reshape concat stack expand_dims squeeze identity cast clip_by_value tile
    split pad gather shape ones_like zeros_like broadcast_to where einsum linalg.matmul
    image.resize compat.v1.image.resize linalg.l2_normalize
    """.split()
)

# -- Keras APIs that never belong in a model config ------------------------------------
#: Last components of dotted names that point at Keras's non-modelling APIs.
NON_MODELLING_FUNCTIONS: Final[frozenset[str]] = frozenset(
    """
    load_model save_model model_from_json model_from_yaml model_from_config load_weights
    save_weights get_file enable_unsafe_deserialization deserialize_keras_object
    serialize_keras_object register_keras_serializable clear_session load_img save_img
    image_dataset_from_directory text_dataset_from_directory audio_dataset_from_directory
    timeseries_dataset_from_array func_load get_registered_object
    """.split()
)
#: Top-level packages whose names in a dotted string mark a Python reference.
PYTHON_REFERENCE_PACKAGES: Final[frozenset[str]] = frozenset(
    """
    keras tf_keras tensorflow tf builtins os posix nt subprocess sys shutil socket
    importlib runpy pickle marshal numpy np io pathlib codecs ctypes urllib requests http
    """.split()
)
