"""convlens analysis engine: a pure-Python reading of a Keras layer graph.

``analyze(config)`` turns a Keras model config (``json.loads(model.to_json())``,
Keras 3 or tf.keras 2.x) into the report dict: per-layer shapes, parameters,
MACs, activation memory and receptive fields, predicted gradient flow and
findings. It imports no TensorFlow and runs in milliseconds.

Example::

    >>> from app.analysis import analyze
    >>> report = analyze(config, input_shape=[224, 224, 3])   # doctest: +SKIP
    >>> report["summary"]["total_params"]                      # doctest: +SKIP
    138357544
"""

from app.analysis.engine import analyze_graph
from app.analysis.graph import (
    AnalysisResult,
    AxisField,
    LayerCall,
    LayerNode,
    LayerResult,
    ModelGraph,
    ReceptiveField,
    TensorRef,
)
from app.analysis.parse import build_graph
from app.analysis.report import analyze

__all__ = [
    "AnalysisResult",
    "AxisField",
    "LayerCall",
    "LayerNode",
    "LayerResult",
    "ModelGraph",
    "ReceptiveField",
    "TensorRef",
    "analyze",
    "analyze_graph",
    "build_graph",
]
