"""The gate's allowlist and limits, one row per object shape and attack."""

from __future__ import annotations

import copy

import pytest

from app.config import Settings
from app.errors import InvalidArchitecture, ResourceLimitExceeded, UnsafeArchitecture
from app.security import check_report_limits, gate_architecture
from tests.fixtures.load import FIXTURES_DIR as FIXTURES

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
    ("top-level compile_config is dropped unread", _model(_dense(), compile_config={
        "optimizer": {"module": "os", "class_name": "function", "config": "system"},
        "loss": {"class_name": "__lambda__", "config": {"code": "AAAA"}}})),
    ("nested compile_config is dropped unread", _model(_model(_dense(), compile_config={
        "optimizer": _fn("os", "system")}) | {"name": "inner"})),
    ("unknown plain settings are dropped", _model(_dense(note="a remark", extra={"a": [1, 2]}))),
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
    ("dotted reference anywhere", _model(_dense(note="subprocess.check_output")), "fc",
     "outside Keras"),
    ("allowlisted object under an unknown key", _model(_dense(smuggled={
        "module": "keras.layers", "class_name": "Dense", "config": {}})), "fc", "smuggled"),
    ("activation function under an unknown key", _model(_dense(hook=_fn("keras.activations", "relu"))),
     "fc", "hook"),
    ("tf op function as a list", _model({"class_name": "TFOpLambda", "name": "op", "config": {
        "function": ["math", "add"]}}), "op", "not a JSON list"),
    ("tf op function as an object", _model({"class_name": "TFOpLambda", "name": "op", "config": {
        "function": {"name": "math.add"}}}), "op", "not a JSON dict"),
    ("enable_unsafe in a call's kwargs", _model(_dense() | {"inbound_nodes": [{"args": [], "kwargs": {
        "unlock": _fn("keras.config", "enable_unsafe_deserialization")}}]}), "fc",
     "enable_unsafe_deserialization"),
    ("layer class in a call's kwargs", _model(_dense() | {"inbound_nodes": [{"args": [], "kwargs": {
        "hook": {"module": "keras.layers", "class_name": "Dense", "config": {}}}}]}), "fc",
     "only tensors and constants"),
    ("lambda in a special object's config", _model(_dense() | {"inbound_nodes": [{"args": [{
        "class_name": "__tuple__", "config": {"value": [1], "more": {
            "class_name": "__lambda__", "config": {"value": "AAAA"}}}}], "kwargs": {}}]}), "fc",
     "__lambda__"),
]


@pytest.mark.parametrize(("label", "config"), ACCEPTED, ids=[row[0] for row in ACCEPTED])
def test_accepted(label: str, config: dict) -> None:
    before = copy.deepcopy(config)
    sanitised = gate_architecture(config, SETTINGS)
    assert config == before  # the input is not modified
    assert "compile_config" not in str(sanitised) and "note" not in str(sanitised)
    assert gate_architecture(sanitised, SETTINGS) == sanitised  # idempotent


@pytest.mark.parametrize(("label", "config", "layer", "reason"), REFUSED,
                         ids=[row[0] for row in REFUSED])
def test_refused(label: str, config: dict, layer: str, reason: str) -> None:
    with pytest.raises(UnsafeArchitecture) as info:
        gate_architecture(config, SETTINGS)
    problem = info.value.to_problem()
    assert problem["status"] == 422 and problem["code"] == "unsafe_architecture"
    assert problem["layer"] == layer, problem
    assert reason in problem["reason"], problem
    assert "Received" in problem["detail"]


def test_deep_documents_are_refused_by_limit_not_by_recursion() -> None:
    config = _model(_dense())
    node = config
    for _ in range(5000):  # far deeper than Python's recursion limit
        node["config"]["layers"].append(_model())
        node = node["config"]["layers"][-1]
    with pytest.raises(ResourceLimitExceeded, match="nested more than 16"):
        gate_architecture(config, SETTINGS)
    for key in ("units", "not_a_dense_setting"):  # a kept key, and one that is dropped
        deep_data = _model(_dense(**{key: []}))
        leaf = deep_data["config"]["layers"][0]["config"][key]
        for _ in range(5000):
            leaf.append([])
            leaf = leaf[0]
        with pytest.raises(ResourceLimitExceeded, match="levels deep"):
            gate_architecture(deep_data, SETTINGS)


def test_static_limits() -> None:
    with pytest.raises(ResourceLimitExceeded, match="units=2,147,483,648"):
        gate_architecture(_model(_dense(units=2**31)), SETTINGS)
    many = _model(*[_dense() | {"name": f"fc{i}"} for i in range(30)])
    gate_architecture(many, SETTINGS)
    with pytest.raises(ResourceLimitExceeded, match="more than 20 layers"):
        gate_architecture(many, Settings(max_layers=20))
    nested = _model(_dense())
    for _ in range(5):
        nested = _model(nested)
    gate_architecture(nested, Settings(max_nesting_depth=5))
    with pytest.raises(ResourceLimitExceeded, match="nested more than 4"):
        gate_architecture(nested, Settings(max_nesting_depth=4))


def test_declared_inputs_are_limited_like_overrides_but_activations_are_not() -> None:
    """The static analysis allocates no activations: a 4096x4096 input passes; an input
    larger than any input_shape override may be does not."""
    big = _model({"module": "keras.layers", "class_name": "InputLayer", "name": "in",
                  "config": {"batch_shape": [None, 4096, 4096, 3]}})
    gate_architecture(big, SETTINGS)
    huge_input = _model({"module": "keras.layers", "class_name": "InputLayer", "name": "in",
                         "config": {"batch_shape": [None, 10**6, 10**6, 3]}})
    with pytest.raises(ResourceLimitExceeded, match="elements per sample") as info:
        gate_architecture(huge_input, SETTINGS)
    assert info.value.to_problem()["limit"] == "max_input_elements"
    check_report_limits({"summary": {"total_params": 10, "activation_bytes": 2**40}}, SETTINGS)


@pytest.mark.parametrize(("name", "refused"), [
    ("conv/1", True), ("a/", True), (7, True), (["x"], True),
    ("conv_1", False), ("é-ß 1", False), ("", False),
])
def test_names_keras_refuses(name: object, refused: bool) -> None:
    config = _model(_dense() | {"name": name, "config": {"name": name, "units": 4}})
    if refused:
        with pytest.raises(InvalidArchitecture) as info:
            gate_architecture(config, SETTINGS)
        assert info.value.code == "invalid_layer_name"
        assert "Received" in info.value.detail
    else:
        assert gate_architecture(config, SETTINGS)["config"]["layers"][0]["name"] == name


def test_tf_keras_documents_keep_slashes_in_names() -> None:
    """tf.keras 2 accepts '/' in names (its DenseNet uses 'conv1/conv'): only Keras 3
    documents are held to Keras 3's rule."""
    tf_keras = {"class_name": "Functional", "keras_version": "2.21.0", "config": {
        "name": "m", "layers": [{"class_name": "Dense", "name": "conv1/conv",
                                 "config": {"name": "conv1/conv", "units": 2}}]}}
    assert gate_architecture(tf_keras, SETTINGS) == tf_keras


def test_report_limits() -> None:
    check_report_limits({"summary": {"total_params": 10, "activation_bytes": None}}, SETTINGS)
    with pytest.raises(ResourceLimitExceeded, match="2,500,050,000 parameters") as info:
        check_report_limits({"summary": {"total_params": 2_500_050_000}}, SETTINGS)
    assert info.value.to_problem()["limit"] == "max_params"
    with pytest.raises(ResourceLimitExceeded, match="30,000 layers"):
        check_report_limits({"summary": {"layer_count": 30_000}}, SETTINGS)


def test_the_static_analysis_has_no_activation_limit() -> None:
    """DenseNet121 at 4608 px needs 78 GiB of activations per sample, above the old 64 GiB
    static limit: the analysis allocates none of it and answers (jobs check memory)."""
    import gzip
    import json
    from pathlib import Path

    from app.analysis import analyze

    path = Path(__file__).resolve().parents[1] / "fixtures" / "applications" / "densenet121.json.gz"
    config = gate_architecture(json.loads(gzip.decompress(path.read_bytes())), SETTINGS)
    report = analyze(config, input_shape=[4608, 4608, 3])
    check_report_limits(report, SETTINGS)
    assert report["summary"]["activation_bytes"] > SETTINGS.max_activation_bytes
    assert report["summary"]["input_shapes"] == [[None, 4608, 4608, 3]]


def _constant(value: object) -> dict:
    return {"module": "keras.initializers", "class_name": "Constant", "config": {"value": value},
            "registered_name": None}


def test_repeated_leaf_objects_keep_their_exact_content_and_are_not_shared() -> None:
    """The walk lets a repeated leaf (a dtype policy, an initializer) through once by content:
    1, 1.0 and true stay apart, each layer gets its own copy, and a different leaf after an
    accepted one is still checked."""
    layers = [_dense(kernel_initializer=_constant(value)) | {"name": f"fc{index}"}
              for index, value in enumerate([1, 1.0, True, 1, 1])]
    sanitised = gate_architecture(_model(*layers), SETTINGS)
    kept = [layer["config"]["kernel_initializer"] for layer in sanitised["config"]["layers"]]
    assert [(type(k["config"]["value"]), k["config"]["value"]) for k in kept] == [
        (int, 1), (float, 1.0), (bool, True), (int, 1), (int, 1)]
    kept[3]["config"]["value"] = 7
    assert kept[0]["config"]["value"] == 1 and kept[4]["config"]["value"] == 1
    assert kept[3] is not kept[4] and kept[3]["config"] is not kept[4]["config"]

    hostile = _constant(1) | {"module": "os", "class_name": "system"}
    refused = _model(*layers, _dense(kernel_initializer=hostile) | {"name": "bad"})
    with pytest.raises(UnsafeArchitecture) as caught:
        gate_architecture(refused, SETTINGS)
    assert caught.value.extra["layer"] == "bad", caught.value


@pytest.mark.parametrize("fixture", ["resnet50", "nasnetmobile", "densenet121.tfkeras"])
def test_leaf_memo_changes_nothing_but_time(fixture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cross-check: the walk with its memo of leaf objects returns the same sanitised config
    and counts the same containers as the walk that looks at every object."""
    from app.security import gate
    from tests.fixtures.load import FIXTURES_DIR, load_config

    config = load_config(FIXTURES_DIR / "applications" / f"{fixture}.json.gz")
    keras3 = "module" in config
    memo = gate._Walk(SETTINGS, keras3=keras3)
    fast = memo.object(config, "$", None, gate._TOP, 0, 0)
    assert memo.leaves, "the fixture repeats leaf objects"
    monkeypatch.setattr(gate, "_leaf_key", lambda node: None)
    plain = gate._Walk(SETTINGS, keras3=keras3)
    assert plain.object(config, "$", None, gate._TOP, 0, 0) == fast
    assert (plain.containers, plain.layers) == (memo.containers, memo.layers)
    assert not plain.leaves


@pytest.mark.parametrize("fixture", ["resnet50", "nasnetmobile", "densenet121.tfkeras"])
def test_the_tensor_shortcut_changes_nothing_but_time(fixture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cross-check: the walk's shortcut for Keras 3 layer-call tensors returns the same
    sanitised config and counts the same containers as the general walk of special objects."""
    from app.security import gate
    from tests.fixtures.load import FIXTURES_DIR, load_config

    config = load_config(FIXTURES_DIR / "applications" / f"{fixture}.json.gz")
    keras3 = "module" in config
    taken: list[bool] = []
    shortcut = gate._Walk.keras_tensor

    def counted(self: gate._Walk, *args: object) -> object:
        result = shortcut(self, *args)  # type: ignore[arg-type]
        taken.append(result is not None)
        return result

    monkeypatch.setattr(gate._Walk, "keras_tensor", counted)
    fast = gate._Walk(SETTINGS, keras3=keras3)
    sanitised = fast.object(config, "$", None, gate._TOP, 0, 0)
    assert any(taken) == keras3, "Keras 3 documents write their layer calls' tensors this way"
    monkeypatch.setattr(gate._Walk, "keras_tensor", lambda self, *args: None)
    plain = gate._Walk(SETTINGS, keras3=keras3)
    assert plain.object(config, "$", None, gate._TOP, 0, 0) == sanitised
    assert (plain.containers, plain.layers) == (fast.containers, fast.layers)


def _walk_without_memos(config: dict, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, object]:
    """The gate's walk that looks at every object and every layer config."""
    from app.security import gate

    with monkeypatch.context() as patched:
        patched.setattr(gate, "_leaf_key", lambda node: None)
        patched.setattr(gate, "_MEMO_CATEGORIES", frozenset())
        plain = gate._Walk(SETTINGS, keras3="module" in config)
        return plain.object(config, "$", None, gate._TOP, 0, 0), plain


@pytest.mark.parametrize("fixture", sorted(
    path.name.removesuffix(".json.gz") for path in (FIXTURES / "applications").glob("*.json.gz")))
def test_layer_config_memo_changes_nothing_but_time(fixture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cross-check on every Applications config, both formats: the walk that lets a repeated
    layer config through once by content returns byte for byte the sanitised config (key
    order included) and counts the containers and layers of the walk that looks at every
    config, and gives each layer a config object of its own."""
    import orjson

    from app.security import gate
    from tests.fixtures.load import load_config

    config = load_config(FIXTURES / "applications" / f"{fixture}.json.gz")
    memo = gate._Walk(SETTINGS, keras3="module" in config)
    fast = memo.object(config, "$", None, gate._TOP, 0, 0)
    repeated = len(config["config"]["layers"]) - len(memo.configs)
    assert repeated > len(config["config"]["layers"]) // 2, "Applications repeat their configs"
    plain, walked = _walk_without_memos(config, monkeypatch)
    assert orjson.dumps(fast) == orjson.dumps(plain)
    assert (memo.containers, memo.layers) == (walked.containers, walked.layers)  # type: ignore[attr-defined]
    configs = [id(layer["config"]) for layer in fast["config"]["layers"]]
    initializers = [id(layer["config"].get("kernel_initializer")) for layer in fast["config"]["layers"]
                    if isinstance(layer["config"].get("kernel_initializer"), dict)]
    assert len(set(configs)) == len(configs) and len(set(initializers)) == len(initializers)


def _same_config_layers(*names: object) -> dict:
    return _model(*[_dense(kernel_initializer=_constant(0.5)) | {"name": f"entry{index}"}
                    for index, _ in enumerate(names)])


@pytest.mark.parametrize(("name", "code", "text"), [
    ("a/b", "invalid_layer_name", "contains '/'"),
    (7, "invalid_layer_name", "must be a string"),
    ("keras.utils.get_file", "unsafe_architecture", "non-modelling"),
])
def test_a_repeated_layer_config_still_has_its_name_checked(name: object, code: str, text: str) -> None:
    """A layer config the walk has let through is let through again by content only with its
    own name checked: the same refusal as when it comes first, naming the layer."""
    for names in (["fc", "fc", name], [name, "fc"]):
        config = _same_config_layers(*names)
        for layer, given in zip(config["config"]["layers"], names, strict=True):
            layer["config"]["name"] = given
        with pytest.raises((InvalidArchitecture, UnsafeArchitecture)) as caught:
            gate_architecture(config, SETTINGS)
        assert caught.value.code == code and text in str(caught.value), caught.value


def test_repeated_layer_configs_count_their_containers_against_the_limit() -> None:
    """Repeated configs count their containers every time: a document over the containers
    limit is refused with the same message with and without repeats."""
    import orjson

    repeated = _same_config_layers(*range(40))
    for index, layer in enumerate(repeated["config"]["layers"]):
        layer["config"]["name"] = f"fc{index}"
    walk_limit = Settings(max_json_elements=150)
    with pytest.raises(ResourceLimitExceeded) as caught:
        gate_architecture(repeated, walk_limit)
    assert caught.value.extra["limit"] == "max_json_elements"
    fitting = Settings(max_json_elements=100_000)
    sanitised = gate_architecture(repeated, fitting)
    assert [layer["config"]["name"] for layer in sanitised["config"]["layers"]] == [
        f"fc{index}" for index in range(40)]
    assert orjson.dumps(gate_architecture(sanitised, fitting)) == orjson.dumps(sanitised)


def _tensor(config: dict, **extra: object) -> dict:
    return {"class_name": "__keras_tensor__", "config": config, **extra}


def _called_with(*tensors: dict) -> dict:
    first = _dense() | {"name": "a", "config": {"name": "a", "units": 4}}
    second = _dense() | {"name": "b", "config": {"name": "b", "units": 4},
                         "inbound_nodes": [{"args": list(tensors), "kwargs": {}}]}
    return _model(first, second)


@pytest.mark.parametrize("tensor", [
    _tensor({"shape": [None, 4], "dtype": "float32", "keras_history": ["os.system", 0, 0]}),
    _tensor({"shape": [None, 4], "dtype": "keras.saving.load_model", "keras_history": ["a", 0, 0]}),
    _tensor({"shape": [None, {"class_name": "function", "module": "os", "config": "system"}],
             "dtype": "float32", "keras_history": ["a", 0, 0]}),
    _tensor({"shape": [None, 4], "keras_history": ["a", 0, 0], "sneaky": {"module": "os", "class_name": "system"}}),
    _tensor({"shape": [None, 4], "dtype": "float32", "keras_history": ["a", 0, 0]}, module="os"),
])
def test_a_hostile_layer_call_tensor_is_refused_as_by_the_general_walk(
        tensor: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code-like string or an object anywhere in a layer call's tensor is refused, with the
    message the general walk gives (the shortcut never decides a refusal of its own)."""
    from app.security import gate

    with pytest.raises(UnsafeArchitecture) as fast:
        gate_architecture(_called_with(tensor), SETTINGS)
    monkeypatch.setattr(gate._Walk, "keras_tensor", lambda self, *args: None)
    with pytest.raises(UnsafeArchitecture) as plain:
        gate_architecture(_called_with(tensor), SETTINGS)
    assert str(fast.value) == str(plain.value)


def test_layer_call_tensors_count_against_the_container_limit() -> None:
    """The shortcut counts a tensor's containers like the general walk: the limit refuses
    at the same count."""
    from app.security import gate

    tensor = _tensor({"shape": [None, 4], "dtype": "float32", "keras_history": ["a", 0, 0]})
    document = _called_with(*[copy.deepcopy(tensor) for _ in range(50)])
    walk = gate._Walk(SETTINGS, keras3=True)
    walk.object(document, "$", None, gate._TOP, 0, 0)
    tight = SETTINGS.model_copy(update={"max_json_elements": walk.containers - 1})
    with pytest.raises(ResourceLimitExceeded):
        gate_architecture(document, tight)
    assert gate_architecture(document, SETTINGS.model_copy(update={"max_json_elements": walk.containers}))


@pytest.mark.parametrize("fixture", ["resnet50", "nasnetmobile", "densenet121.tfkeras"])
def test_the_call_record_shortcut_changes_nothing_but_time(fixture: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Cross-check: the walk's shortcut for Keras 3 layer-call records (``args`` and
    ``kwargs``) returns the same sanitised config and counts the same containers as the
    general walk of the records."""
    import orjson

    from app.security import gate
    from tests.fixtures.load import FIXTURES_DIR, load_config

    config = load_config(FIXTURES_DIR / "applications" / f"{fixture}.json.gz")
    keras3 = "module" in config
    taken: list[bool] = []
    shortcut = gate._Walk.call_record

    def counted(self: gate._Walk, *args: object) -> object:
        result = shortcut(self, *args)  # type: ignore[arg-type]
        taken.append(result is not None)
        return result

    monkeypatch.setattr(gate._Walk, "call_record", counted)
    fast = gate._Walk(SETTINGS, keras3=keras3)
    sanitised = fast.object(config, "$", None, gate._TOP, 0, 0)
    assert any(taken) == keras3, "Keras 3 documents write their layer calls this way"
    monkeypatch.setattr(gate._Walk, "call_record", lambda self, *args: None)
    plain = gate._Walk(SETTINGS, keras3=keras3)
    assert orjson.dumps(plain.object(config, "$", None, gate._TOP, 0, 0)) == orjson.dumps(sanitised)
    assert (plain.containers, plain.layers) == (fast.containers, fast.layers)


_FINE = {"shape": [None, 4], "dtype": "float32", "keras_history": ["a", 0, 0]}


@pytest.mark.parametrize("record", [
    {"args": [_tensor(_FINE)], "kwargs": {"activation": "os.system"}},
    {"args": [_tensor(_FINE)], "kwargs": {"mask": "keras.saving.load_model"}},
    {"args": [_tensor(_FINE | {"keras_history": ["os.system", 0, 0]})],
     "kwargs": {"mask": "keras.saving.load_model"}},
    {"args": [[_tensor(_FINE), _tensor(_FINE | {"dtype": "subprocess.Popen"})]], "kwargs": {}},
    {"args": [_tensor(_FINE), "os.system"], "kwargs": {}},
    {"args": [_tensor(_FINE), {"module": "os", "class_name": "system"}], "kwargs": {}},
    {"args": [_tensor(_FINE)], "kwargs": {"mask": {"module": "os", "class_name": "system"}}},
    {"args": [_tensor(_FINE)], "kwargs": {}, "sneaky": {"module": "os", "class_name": "system"}},
])
def test_a_hostile_layer_call_record_is_refused_as_by_the_general_walk(
        record: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code-like string or an object anywhere in a layer call record is refused, with the
    message the general walk gives (the shortcut for records never decides a refusal of its
    own)."""
    from app.security import gate

    document = _called_with()
    document["config"]["layers"][1]["inbound_nodes"] = [record]
    with pytest.raises(UnsafeArchitecture) as fast:
        gate_architecture(document, SETTINGS)
    monkeypatch.setattr(gate._Walk, "call_record", lambda self, *args: None)
    with pytest.raises(UnsafeArchitecture) as plain:
        gate_architecture(document, SETTINGS)
    assert str(fast.value) == str(plain.value)


def test_layer_call_records_count_against_the_container_limit() -> None:
    """The shortcut for records counts their containers like the general walk: the limit
    refuses at the same count, with merge layers' lists of tensors counted too."""
    from app.security import gate

    tensor = _tensor({"shape": [None, 4], "dtype": "float32", "keras_history": ["a", 0, 0]})
    records = [{"args": [[copy.deepcopy(tensor), copy.deepcopy(tensor)]], "kwargs": {"mask": None}}
               for _ in range(20)]
    document = _called_with()
    document["config"]["layers"][1]["inbound_nodes"] = records
    walk = gate._Walk(SETTINGS, keras3=True)
    walk.object(document, "$", None, gate._TOP, 0, 0)
    for limit in range(walk.containers - 30, walk.containers):
        with pytest.raises(ResourceLimitExceeded):
            gate_architecture(document, SETTINGS.model_copy(update={"max_json_elements": limit}))
    assert gate_architecture(document, SETTINGS.model_copy(update={"max_json_elements": walk.containers}))
