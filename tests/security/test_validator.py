"""The allowlist validator and the limits, one row per object shape and attack."""

from __future__ import annotations

import copy

import pytest

from app.config import Settings
from app.errors import ResourceLimitExceeded, UnsafeArchitecture
from app.security import check_report_limits, check_static_limits, validate_architecture

SETTINGS = Settings()


def _dense(**config) -> dict:
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "name": "fc", "config": {"name": "fc", "units": 4, **config}, "inbound_nodes": []}


def _model(*layers: dict, **top) -> dict:
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "registered_name": "Functional", "config": {"name": "m", "layers": list(layers)},
            **top}


def _fn(module: str, name: str, registered: str | None = None) -> dict:
    return {"module": module, "class_name": "function", "config": name,
            "registered_name": registered if registered is not None else name}


ACCEPTED = [
    ("plain dense", _model(_dense(activation="relu"))),
    ("activation as builtins function", _model(_dense(activation=_fn("builtins", "gelu")))),
    ("initializer objects", _model(_dense(kernel_initializer={
        "module": "keras.initializers", "class_name": "HeNormal", "config": {"seed": 1},
        "registered_name": None}, kernel_regularizer="l2", kernel_constraint="max_norm"))),
    ("dtype policy", _model(_dense(dtype={"module": "keras", "class_name": "DTypePolicy",
                                          "config": {"name": "mixed_float16"},
                                          "registered_name": None}))),
    ("tf.keras 2 without modules", {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": {"units": 3, "kernel_initializer": {
            "class_name": "GlorotUniform", "config": {"seed": None}}}}]}}),
    ("keras 3 op layer", _model({"module": "keras.src.ops.numpy", "class_name": "Add",
                                 "registered_name": "Add", "name": "add", "config": {}})),
    ("tf.keras TFOpLambda math", _model({"module": "tf_keras.src.layers.core.tf_op_layer",
                                         "class_name": "TFOpLambda",
                                         "registered_name": "TFOpLambda",
                                         "config": {"name": "tf.math.multiply",
                                                    "function": "math.multiply"}})),
    ("inline lookup vocabulary", _model({"module": "keras.layers", "class_name": "StringLookup",
                                         "config": {"name": "l", "vocabulary": ["a", "b"]}})),
    ("keras tensors and tuples", _model(_dense() | {"inbound_nodes": [{"args": [
        {"class_name": "__keras_tensor__", "config": {"shape": [None, 3], "dtype": "float32",
                                                       "keras_history": ["x", 0, 0]}}],
        "kwargs": {"t": {"class_name": "__tuple__", "items": [1, 2]},
                   "a": {"class_name": "__numpy__", "config": {"value": [1], "dtype": "int32"}}}}
    ]})),
    ("top-level compile_config is ignored", _model(_dense(), compile_config={
        "optimizer": {"module": "os", "class_name": "function", "config": "system"},
        "loss": {"class_name": "__lambda__", "config": {"code": "AAAA"}}})),
]

REFUSED = [
    ("lambda layer", _model({"module": "keras.layers", "class_name": "Lambda", "name": "lam",
                             "config": {"name": "lam"}}), "lam", "Lambda"),
    ("__lambda__ activation", _model(_dense(activation={"class_name": "__lambda__",
                                                        "config": {"code": "AAAA"}})),
     "fc", "__lambda__"),
    ("os function", _model(_dense(activation=_fn("os", "system"))), "fc", "outside Keras"),
    ("activation module path string", _model(_dense(activation="keras.utils.get_file")),
     "fc", "not a Keras activation"),
    ("get_file function", _model(_dense(kernel_initializer=_fn("keras.utils", "get_file"))),
     "fc", "non-modelling"),
    ("enable unsafe", _model(_dense(bias_constraint=_fn(
        "keras.src.saving.serialization_lib", "enable_unsafe_deserialization"))),
     "fc", "enable_unsafe_deserialization"),
    ("keras activation under a wrong registered name", _model(_dense(
        activation=_fn("keras.activations", "relu", "pkg>relu"))), "fc", "relu"),
    ("registered_name hijack", _model(_dense() | {"registered_name": "pkg>Dense"}), "fc",
     "registered_name"),
    ("class outside keras", _model({"module": "builtins", "class_name": "eval",
                                    "name": "e", "config": {}}), "e", "outside Keras"),
    ("keras saving as class", _model({"module": "keras.src.saving.saving_lib",
                                      "class_name": "load_model", "name": "lm", "config": {}}),
     "lm", "non-modelling"),
    ("unknown keras class", _model({"module": "keras.layers", "class_name": "Frobnicate",
                                    "name": "f", "config": {}}), "f", "allowlist"),
    ("tfsm layer", _model({"module": "keras.layers", "class_name": "TFSMLayer", "name": "t",
                           "config": {"filepath": "/srv/model"}}), "t", "TFSMLayer"),
    ("torch wrapper", _model({"module": "keras.layers", "class_name": "TorchModuleWrapper",
                              "name": "t", "config": {}}), "t", "TorchModuleWrapper"),
    ("flax layer", _model({"module": "keras.layers", "class_name": "FlaxLayer",
                           "name": "t", "config": {}}), "t", "FlaxLayer"),
    ("path vocabulary", _model({"module": "keras.layers", "class_name": "IntegerLookup",
                                "name": "il", "config": {"vocabulary": "/etc/passwd"}}),
     "il", "file path"),
    ("tf op outside the list", _model({"class_name": "TFOpLambda", "name": "op", "config": {
        "function": "io.read_file"}}), "op", "io.read_file"),
    ("function key outside a tf op layer", _model(_dense(function="math.add")), "fc",
     "function reference"),
    ("object numpy array", _model(_dense(extra={"class_name": "__numpy__", "config": {
        "value": ["x"], "dtype": "object"}})), "fc", "numeric dtype"),
    ("bytes object", _model(_dense(extra={"class_name": "__bytes__", "config": {
        "value": "x"}})), "fc", "__bytes__"),
    ("module without class_name", _model(_dense(extra={"module": "os", "config": {}})),
     "fc", "class_name"),
    ("nested compile_config is checked", _model(_model(_dense(), compile_config={
        "optimizer": _fn("os", "system")}) | {"name": "inner"}), "inner", "outside Keras"),
    ("dotted reference anywhere", _model(_dense(note="subprocess.check_output")), "fc",
     "outside Keras"),
]


@pytest.mark.parametrize(("label", "config"), ACCEPTED, ids=[row[0] for row in ACCEPTED])
def test_accepted(label: str, config: dict) -> None:
    validate_architecture(copy.deepcopy(config), SETTINGS)


@pytest.mark.parametrize(("label", "config", "layer", "reason"), REFUSED,
                         ids=[row[0] for row in REFUSED])
def test_refused(label: str, config: dict, layer: str, reason: str) -> None:
    with pytest.raises(UnsafeArchitecture) as info:
        validate_architecture(config, SETTINGS)
    problem = info.value.to_problem()
    assert problem["status"] == 422 and problem["code"] == "unsafe_architecture"
    assert problem["layer"] == layer, problem
    assert reason in problem["reason"], problem
    assert "Received" in problem["detail"]


def test_validator_does_not_mutate_and_handles_deep_configs() -> None:
    config = _model(_dense())
    node = config
    for depth in range(5000):  # far deeper than Python's recursion limit
        node["config"]["layers"].append(_model())
        node = node["config"]["layers"][-1]
    validate_architecture(config, SETTINGS)  # iterative: no RecursionError
    shallow = _model(_dense(), compile_config={"loss": "mse"})
    before = copy.deepcopy(shallow)
    validate_architecture(shallow, SETTINGS)
    assert shallow == before


def test_static_limits() -> None:
    with pytest.raises(ResourceLimitExceeded, match="units=2,147,483,648"):
        check_static_limits(_model(_dense(units=2**31)), SETTINGS)
    many = _model(*[_dense() for _ in range(30)])
    check_static_limits(many, SETTINGS)
    with pytest.raises(ResourceLimitExceeded, match="more than 20 layers"):
        check_static_limits(many, Settings(max_layers=20))
    nested = _model(_dense())
    for _ in range(5):
        nested = _model(nested)
    check_static_limits(nested, Settings(max_nesting_depth=5))
    with pytest.raises(ResourceLimitExceeded, match="nested more than 4"):
        check_static_limits(nested, Settings(max_nesting_depth=4))
    huge_input = _model({"module": "keras.layers", "class_name": "InputLayer", "name": "in",
                         "config": {"batch_shape": [None, 10**6, 10**6, 3]}})
    with pytest.raises(ResourceLimitExceeded, match="activations"):
        check_static_limits(huge_input, SETTINGS)


def test_report_limits() -> None:
    check_report_limits({"summary": {"total_params": 10, "activation_bytes": None}}, SETTINGS)
    with pytest.raises(ResourceLimitExceeded, match="2,500,050,000 parameters") as info:
        check_report_limits({"summary": {"total_params": 2_500_050_000}}, SETTINGS)
    assert info.value.to_problem()["limit"] == "max_params"
    with pytest.raises(ResourceLimitExceeded, match="activations"):
        check_report_limits({"summary": {"activation_bytes": 2**40}}, SETTINGS)
