"""The engine against Keras's numbers, one row per layer type and variant (no TensorFlow).

Tables: output shapes, parameters with the trainable split. The rows'
expectations are checked against Keras itself in ``test_layer_table_keras.py``.
"""

from __future__ import annotations

import pytest

from app.analysis import analyze
from app.analysis.rules import registered_class_names
from tests.analysis.builders import single_layer_model
from tests.analysis.layer_cases import CASES, LayerCase

# Classes covered by other tables: Keras 3 functional ops, tf.keras TFOpLambda and the
# custom layers of the Keras Applications (test_ops_and_custom.py and the Applications fixtures).
COVERED_ELSEWHERE = {"TFOpLambda", "LayerScale", "CustomScaleLayer", "StochasticDepth"}


def _target(case: LayerCase) -> dict:
    report = analyze(single_layer_model(case.class_name, case.config, case.input_shapes, case.call))
    return report["layers"][-1]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_output_shape_matches_keras(case: LayerCase) -> None:
    assert _target(case)["output_shape"] == case.output_shape


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_params_match_keras(case: LayerCase) -> None:
    layer = _target(case)
    assert (layer["params"], layer["trainable_params"]) == (case.params, case.trainable_params)
    assert layer["non_trainable_params"] == case.params - case.trainable_params


def classes_without_a_row() -> list[str]:
    """Registered layer classes (Keras 3 ops aside) that no table row checks."""
    with_rows = {c.class_name for c in CASES} | COVERED_ELSEWHERE
    return [name for name in registered_class_names() if not name.startswith("ops.") and name not in with_rows]


def test_every_registered_class_has_a_row() -> None:
    assert classes_without_a_row() == []


def test_every_keras3_op_has_a_row() -> None:
    from tests.analysis.test_ops_and_custom import OP_CASES

    with_rows = {"ops." + c[0] for c in OP_CASES}
    missing = [name for name in registered_class_names() if name.startswith("ops.") and name not in with_rows]
    assert missing == []
