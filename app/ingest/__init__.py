"""Architecture ingestion: Keras JSON, .keras archives and legacy .h5, without TensorFlow.

Example::

    from app.ingest import ingest_bytes
    ingested = ingest_bytes(b'{"class_name": "Sequential", "config": {"layers": []}}',
                            filename="model.json", settings=settings)
    ingested.format   # 'json'
"""

from app.ingest.detect import detect_format
from app.ingest.jsonparse import json_depth, parse_json_bytes
from app.ingest.service import (
    IngestedArchitecture,
    check_model_config,
    ingest_bytes,
    ingest_config,
    read_architecture,
)
from app.ingest.shapes import parse_input_shape

__all__ = [
    "IngestedArchitecture",
    "check_model_config",
    "detect_format",
    "ingest_bytes",
    "ingest_config",
    "json_depth",
    "parse_input_shape",
    "parse_json_bytes",
    "read_architecture",
]
