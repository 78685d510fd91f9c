"""The hostile corpus: real small Keras models, saved and then mutated into attacks.

``build_corpus(workdir)`` returns a list of :class:`Case`, each with the bytes to upload, a
filename, the answer convlens must give (status and stable ``code``) and the gate expected
to stop it (``stage``). Payloads that carry code would write a file under
``workdir/canaries`` if they ever ran (marshalled lambdas that write it, ``get_file`` /
``io.write_file`` / ``os.system`` / ``exec`` gadgets pointed at it): after any test the
canary directory must be empty.

The base models are saved by ``tests.security.base_models`` in a fresh interpreter (Keras
and TensorFlow never enter the test process); the mutations use json, zipfile and h5py.

Example::

    cases = build_corpus(tmp_path)
    [case.name for case in cases if case.carries_code][:2]   # ['lambda_marshal_json', ...]
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Which gate must stop a case: format detection / parsing (ingest), the allowlist
#: validator (validate), the static limits (limits) or the limits on the engine's report.
STAGES = ("ingest", "validate", "limits", "report")


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    data: bytes
    status: int
    code: str
    stage: str
    carries_code: bool
    description: str

    @property
    def fmt(self) -> str:
        return Path(self.filename).suffix.lstrip(".")


@dataclass(frozen=True)
class Corpus:
    cases: list[Case]
    canary_dir: Path
    base_dir: Path

    def canaries(self) -> list[Path]:
        """Every file the payloads would have written (must stay empty)."""
        return sorted(self.canary_dir.iterdir()) if self.canary_dir.exists() else []

    def benign(self) -> dict[str, bytes]:
        """The unmutated models, by filename: they must be accepted."""
        return {name: (self.base_dir / name).read_bytes()
                for name in ("base.json", "base.keras", "base.h5", "tf_keras.json")}


# -- building the base models ----------------------------------------------------------


def build_base_models(base_dir: Path, canary_dir: Path) -> dict[str, Any]:
    """Save the real models (in a child interpreter), once per directory."""
    manifest = base_dir / "manifest.json"
    if not manifest.exists():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        completed = subprocess.run(
            [sys.executable, "-m", "tests.security.base_models", str(base_dir), str(canary_dir)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"saving the base models failed:\n{completed.stderr[-3000:]}")
    return json.loads(manifest.read_text())


# -- helpers ---------------------------------------------------------------------------


def _dumps(config: Any) -> bytes:
    return json.dumps(config).encode("utf-8")


def _layer(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(layer for layer in config["config"]["layers"] if layer.get("name") == name
                or layer.get("config", {}).get("name") == name)


def _function_ref(module: str, function: str) -> dict[str, Any]:
    return {"module": module, "class_name": "function", "config": function,
            "registered_name": function}


def _rezip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with (warnings.catch_warnings(),
          zipfile.ZipFile(buffer, "w", compression=compression) as archive):
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are the point of a case
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            archive.writestr(info, payload)
    return buffer.getvalue()


def _keras_members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _keras_with_config(path: Path, config: Any) -> bytes:
    return _rezip([(name, _dumps(config) if name == "config.json" else payload)
                   for name, payload in _keras_members(path)])


def _h5_variant(base: Path, out: Path, mutate) -> bytes:  # noqa: ANN001
    shutil.copyfile(base, out)
    with h5py.File(out, "r+") as handle:
        mutate(handle)
    return out.read_bytes()


def _pickle_payload(canary: Path) -> bytes:
    class Payload:
        def __reduce__(self):  # noqa: ANN204 - the classic pickle gadget
            return (os.system, (f"touch {canary}",))

    return pickle.dumps(Payload(), protocol=4)


# -- the corpus ------------------------------------------------------------------------


def build_corpus(workdir: Path) -> Corpus:
    """Build (or reuse) the base models under ``workdir`` and return every hostile case."""
    base_dir = workdir / "base"
    canary_dir = workdir / "canaries"
    scratch = workdir / "scratch"
    for directory in (base_dir, canary_dir, scratch):
        directory.mkdir(parents=True, exist_ok=True)
    build_base_models(base_dir, canary_dir)
    canary = canary_dir / "gadget"  # where the non-lambda gadgets would write

    base = json.loads((base_dir / "base.json").read_text())
    lambda_json = json.loads((base_dir / "lambda.json").read_text())
    tf_keras = json.loads((base_dir / "tf_keras.json").read_text())
    lambda_layer = _layer(lambda_json, "payload")
    lambda_code = lambda_layer["config"]["function"]

    cases: list[Case] = []

    def add(name: str, filename: str, data: bytes, status: int, code: str, stage: str,
            carries_code: bool, description: str) -> None:
        cases.append(Case(name, filename, data, status, code, stage, carries_code, description))

    def unsafe(name: str, filename: str, data: bytes, description: str) -> None:
        add(name, filename, data, 422, "unsafe_architecture", "validate", True, description)

    def mutated(mutate) -> dict[str, Any]:  # noqa: ANN001
        config = copy.deepcopy(base)
        mutate(config)
        return config

    # -- code: Lambda with marshalled bytecode, in every container ----------------------
    unsafe("lambda_marshal_json", "model.json", (base_dir / "lambda.json").read_bytes(),
           "Keras 3 Lambda whose marshalled lambda writes a canary")
    unsafe("lambda_marshal_keras", "model.keras", (base_dir / "lambda.keras").read_bytes(),
           ".keras archive with the same Lambda")
    unsafe("lambda_marshal_h5", "model.h5", (base_dir / "lambda.h5").read_bytes(),
           "Keras 3 legacy .h5 with the same Lambda in model_config")
    unsafe("lambda_marshal_tf_keras_h5", "model.h5",
           (base_dir / "tf_keras_lambda.h5").read_bytes(),
           "tf.keras 2.x legacy .h5 whose Lambda is a marshalled code tuple")

    def nested_lambda(config: dict[str, Any]) -> None:
        head = _layer(config, "head")
        inner = copy.deepcopy(head)
        inner.pop("inbound_nodes", None)
        config["config"]["layers"][-1] = {
            "module": "keras", "class_name": "Sequential", "registered_name": None,
            "name": "wrapper", "inbound_nodes": head["inbound_nodes"],
            "config": {"name": "wrapper", "trainable": True,
                       "layers": [copy.deepcopy(lambda_layer) | {"inbound_nodes": []}, inner]},
        }

    unsafe("lambda_in_nested_model_json", "model.json", _dumps(mutated(nested_lambda)),
           "the Lambda hidden inside a nested Sequential")

    def lambda_initializer(config: dict[str, Any]) -> None:
        _layer(config, "conv")["config"]["kernel_initializer"] = copy.deepcopy(lambda_code)

    unsafe("lambda_as_initializer_json", "model.json", _dumps(mutated(lambda_initializer)),
           "a __lambda__ object in place of an initializer")

    # -- references to Python outside Keras ---------------------------------------------
    def os_system(config: dict[str, Any]) -> None:
        _layer(config, "conv")["config"]["activation"] = _function_ref("os", "system")
        _layer(config, "head")["inbound_nodes"][0]["kwargs"]["command"] = f"touch {canary}"

    unsafe("os_system_activation_json", "model.json", _dumps(mutated(os_system)),
           "activation = os.system, with a command that touches the canary")

    def builtins_exec(config: dict[str, Any]) -> None:
        kwargs = _layer(config, "head")["inbound_nodes"][0]["kwargs"]
        kwargs["hook"] = _function_ref("builtins", "exec")
        kwargs["source"] = f"open({str(canary)!r}, 'w').write('ran')"

    unsafe("builtins_exec_in_call_kwargs_json", "model.json", _dumps(mutated(builtins_exec)),
           "builtins.exec in a node's call kwargs (Keras deserialises those generically)")

    def subprocess_class(config: dict[str, Any]) -> None:
        config["config"]["layers"].insert(1, {
            "module": "subprocess", "class_name": "Popen", "registered_name": None,
            "name": "popen", "inbound_nodes": [],
            "config": {"args": ["touch", str(canary)], "name": "popen"},
        })

    unsafe("subprocess_popen_layer_json", "model.json", _dumps(mutated(subprocess_class)),
           "a 'layer' whose module is subprocess")

    def numpy_function(config: dict[str, Any]) -> None:
        _layer(config, "head")["config"]["bias_initializer"] = _function_ref("numpy", "save")
        _layer(config, "head")["inbound_nodes"][0]["kwargs"]["file"] = str(canary)

    unsafe("numpy_save_initializer_json", "model.json", _dumps(mutated(numpy_function)),
           "numpy.save referenced as an initializer")

    def numpy_object_array(config: dict[str, Any]) -> None:
        _layer(config, "head")["inbound_nodes"][0]["kwargs"]["extra"] = {
            "class_name": "__numpy__", "config": {"value": [str(canary)], "dtype": "object"}}

    unsafe("numpy_object_dtype_json", "model.json", _dumps(mutated(numpy_object_array)),
           "an object-dtype __numpy__ array")

    def registered_name(config: dict[str, Any]) -> None:
        _layer(config, "conv")["registered_name"] = "attacker>Conv2D"

    unsafe("registered_name_hijack_json", "model.json", _dumps(mutated(registered_name)),
           "Conv2D whose registered_name points at a custom registration")

    # -- Keras's non-modelling APIs -------------------------------------------------------
    def enable_unsafe(config: dict[str, Any]) -> None:
        _layer(config, "conv")["config"]["kernel_initializer"] = _function_ref(
            "keras.src.saving.serialization_lib", "enable_unsafe_deserialization")

    lambda_keras_config = json.loads(
        dict(_keras_members(base_dir / "lambda.keras"))["config.json"])
    enable_unsafe(lambda_keras_config)
    unsafe("enable_unsafe_then_lambda_keras", "model.keras",
           _keras_with_config(base_dir / "lambda.keras", lambda_keras_config),
           "enable_unsafe_deserialization before a canary Lambda (the CVE-2025-1550 chain)")

    def enable_unsafe_public(config: dict[str, Any]) -> None:
        _layer(config, "head")["inbound_nodes"][0]["kwargs"]["unlock"] = _function_ref(
            "keras.config", "enable_unsafe_deserialization")
        _layer(config, "gap")["config"]["activity_regularizer"] = copy.deepcopy(lambda_code)

    unsafe("enable_unsafe_public_api_json", "model.json", _dumps(mutated(enable_unsafe_public)),
           "keras.config.enable_unsafe_deserialization in call kwargs, then a __lambda__")

    def get_file(config: dict[str, Any]) -> None:
        _layer(config, "head")["config"]["activation"] = _function_ref("keras.utils", "get_file")
        _layer(config, "head")["inbound_nodes"][0]["kwargs"].update(
            {"fname": canary.name, "origin": "file:///etc/hostname",
             "cache_dir": str(canary_dir), "cache_subdir": "."})

    unsafe("get_file_gadget_keras", "model.keras",
           _keras_with_config(base_dir / "base.keras", mutated(get_file)),
           "keras.utils.get_file copying a host file to the canary path")

    def get_file_string(config: dict[str, Any]) -> None:
        _layer(config, "conv")["config"]["activation"] = "keras.src.utils.file_utils.get_file"

    unsafe("get_file_string_json", "model.json", _dumps(mutated(get_file_string)),
           "get_file named by a dotted string where an activation is expected")

    def load_model(config: dict[str, Any]) -> None:
        _layer(config, "head")["inbound_nodes"][0]["kwargs"]["loader"] = _function_ref(
            "keras.src.saving.saving_api", "load_model")
        _layer(config, "head")["inbound_nodes"][0]["kwargs"].update(
            {"filepath": str(base_dir / "lambda.keras"), "safe_mode": False})

    unsafe("load_model_gadget_keras", "model.keras",
           _keras_with_config(base_dir / "base.keras", mutated(load_model)),
           "keras load_model on a Lambda model with safe_mode=False")

    def load_model_class(config: dict[str, Any]) -> None:
        config["config"]["layers"].insert(1, {
            "module": "keras.src.saving.saving_lib", "class_name": "load_model",
            "registered_name": None, "name": "loader", "inbound_nodes": [],
            "config": {"filepath": str(base_dir / "lambda.keras"), "name": "loader"},
        })

    unsafe("load_model_as_layer_json", "model.json", _dumps(mutated(load_model_class)),
           "load_model dressed up as a layer class")

    # -- code-bearing layer classes --------------------------------------------------------
    def insert_layer(class_name: str, module: str, layer_config: dict[str, Any]):  # noqa: ANN202
        def mutate(config: dict[str, Any]) -> None:
            config["config"]["layers"].insert(1, {
                "module": module, "class_name": class_name, "registered_name": None,
                "name": layer_config["name"], "inbound_nodes": [],
                "config": layer_config,
            })
        return mutate

    unsafe("tfsm_layer_keras", "model.keras", _keras_with_config(
        base_dir / "base.keras", mutated(insert_layer("TFSMLayer", "keras.layers", {
            "name": "tfsm", "filepath": str(canary_dir), "call_endpoint": "serve"}))),
        "TFSMLayer loading a SavedModel from a server path")
    unsafe("torch_module_wrapper_json", "model.json", _dumps(mutated(insert_layer(
        "TorchModuleWrapper", "keras.layers",
        {"name": "torch", "module": base64.b64encode(_pickle_payload(canary)).decode()}))),
        "TorchModuleWrapper carrying a pickled module")
    unsafe("jax_layer_json", "model.json", _dumps(mutated(insert_layer(
        "JaxLayer", "keras.layers", {"name": "jax", "call_fn": _function_ref("os", "system")}))),
        "JaxLayer wrapping os.system")
    unsafe("string_lookup_path_json", "model.json", _dumps(mutated(insert_layer(
        "StringLookup", "keras.layers", {"name": "lookup", "vocabulary": "/etc/passwd"}))),
        "StringLookup whose vocabulary is a host file")
    unsafe("text_vectorization_path_json", "model.json", _dumps(mutated(insert_layer(
        "TextVectorization", "keras.layers",
        {"name": "vectorize", "vocabulary": "/etc/hostname", "max_tokens": 10}))),
        "TextVectorization whose vocabulary is a host file")

    def tf_op(function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        config = copy.deepcopy(tf_keras)
        op = _layer(config, "tf.math.multiply")
        op["config"]["function"] = function
        op["inbound_nodes"][0][3] = kwargs
        return config

    unsafe("tf_op_write_file_json", "model.json", _dumps(tf_op(
        "io.write_file", {"filename": str(canary), "contents": "ran"})),
        "tf.keras TFOpLambda calling tf.io.write_file on the canary")
    unsafe("tf_op_numpy_function_json", "model.json", _dumps(tf_op(
        "numpy_function", {"func": _function_ref("os", "system"), "inp": [f"touch {canary}"],
                           "Tout": "int32"})),
        "TFOpLambda calling tf.numpy_function(os.system)")

    # -- HDF5 --------------------------------------------------------------------------
    host_file = Path("/etc/hostname") if Path("/etc/hostname").exists() else Path("/etc/passwd")

    def external_storage(handle: h5py.File) -> None:
        handle.create_dataset("model_weights/leak", shape=(16,), dtype="uint8",
                              external=[(str(host_file), 0, 16)])

    def external_link(handle: h5py.File) -> None:
        handle["model_weights/elsewhere"] = h5py.ExternalLink(str(host_file), "/")

    def soft_link(handle: h5py.File) -> None:
        handle["model_weights/alias"] = h5py.SoftLink("/model_weights")

    def virtual_dataset(handle: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(16,), dtype="uint8")
        layout[:] = h5py.VirtualSource(str(host_file), "data", shape=(16,))
        handle.create_virtual_dataset("model_weights/virtual", layout)

    def shape_bomb(handle: h5py.File) -> None:
        handle.create_dataset("model_weights/bomb", shape=(2**36,), dtype="float32",
                              chunks=(1024,))

    def drop_config(handle: h5py.File) -> None:
        del handle.attrs["model_config"]

    for name, mutate, code, description in (
        ("h5_external_storage", external_storage, "unsafe_hdf5",
         "a dataset whose bytes live in a host file"),
        ("h5_external_link", external_link, "unsafe_hdf5", "an external link to a host file"),
        ("h5_soft_link", soft_link, "unsafe_hdf5", "a soft link (a cycle)"),
        ("h5_virtual_dataset", virtual_dataset, "unsafe_hdf5",
         "a virtual dataset mapping another file"),
        ("h5_shape_bomb", shape_bomb, "hdf5_limit_exceeded",
         "a 256 GiB dataset declared in a few kilobytes"),
        ("h5_without_model_config", drop_config, "invalid_architecture",
         "weights only, no model_config"),
    ):
        add(name, "model.h5", _h5_variant(base_dir / "base.h5", scratch / f"{name}.h5", mutate),
            422, code, "ingest", False, description)

    base_h5 = (base_dir / "base.h5").read_bytes()
    add("h5_truncated", "model.h5", base_h5[: len(base_h5) // 3], 422, "h5_unreadable",
        "ingest", False, "the first third of a legacy .h5")
    add("h5_garbage_after_signature", "model.h5",
        b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 64, 422, "h5_unreadable", "ingest", False,
        "an HDF5 signature followed by garbage")

    # -- zip archives ------------------------------------------------------------------
    base_members = _keras_members(base_dir / "base.keras")
    base_config = dict(base_members)["config.json"]
    add("zip_bomb_member", "model.keras",
        _rezip(base_members + [("bomb.bin", bytes(64 * 1024 * 1024))], zipfile.ZIP_DEFLATED),
        422, "archive_limit_exceeded", "ingest", False, "64 MiB of zeros deflated ~1000-fold")
    add("zip_bomb_config", "model.keras",
        _rezip([("config.json", base_config + b" " * (40 * 1024 * 1024))]
               + [m for m in base_members if m[0] != "config.json"], zipfile.ZIP_DEFLATED),
        422, "archive_limit_exceeded", "ingest", False, "a config.json padded to 40 MiB")
    add("zip_many_members", "model.keras",
        _rezip(base_members + [(f"filler/{index}.txt", b"x") for index in range(1000)]),
        422, "archive_limit_exceeded", "ingest", False, "1,000 members")
    add("zip_traversal_member", "model.keras",
        _rezip(base_members + [("../../../tmp/convlens-escape.txt", b"escaped")]),
        422, "unsafe_archive", "ingest", False, "a member named ../../../tmp/...")
    add("zip_absolute_member", "model.keras",
        _rezip(base_members + [("/tmp/convlens-absolute.txt", b"escaped")]),
        422, "unsafe_archive", "ingest", False, "a member with an absolute path")
    lambda_config_raw = dict(_keras_members(base_dir / "lambda.keras"))["config.json"]
    add("zip_duplicate_config", "model.keras",
        _rezip(base_members + [("config.json", lambda_config_raw)]),
        422, "unsafe_archive", "ingest", True,
        "two config.json members: a benign one, then the Lambda one")
    base_keras = (base_dir / "base.keras").read_bytes()
    add("zip_truncated", "model.keras", base_keras[: int(len(base_keras) * 0.6)],
        422, "invalid_archive", "ingest", False, "the first 60% of a .keras archive")
    encrypted = bytearray(base_keras)
    directory = encrypted.find(b"PK\x01\x02")
    while directory != -1:
        encrypted[directory + 8] |= 0x1  # general purpose flag: encrypted
        directory = encrypted.find(b"PK\x01\x02", directory + 4)
    add("zip_encrypted", "model.keras", bytes(encrypted), 422, "invalid_archive", "ingest",
        False, "members flagged as encrypted")
    npz = io.BytesIO()
    np.savez(npz, x=np.zeros(4))
    add("zip_without_config", "model.keras", npz.getvalue(), 422, "invalid_archive", "ingest",
        False, "an .npz (a zip with no config.json)")

    # -- formats and extensions -------------------------------------------------------------
    add("keras_named_h5", "model.h5", base_keras, 415, "unsupported_format", "ingest", False,
        "a .keras archive uploaded as .h5")
    add("h5_named_keras", "model.keras", base_h5, 415, "unsupported_format", "ingest", False,
        "a legacy .h5 uploaded as .keras")
    add("json_named_keras", "model.keras", _dumps(base), 415, "unsupported_format", "ingest",
        False, "JSON uploaded as .keras")
    add("unknown_extension", "model.pkl", _dumps(base), 415, "unsupported_format", "ingest",
        False, "a model JSON named .pkl")
    add("pickle_payload", "model.keras", _pickle_payload(canary), 415, "unsupported_format",
        "ingest", True, "a pickle whose __reduce__ runs os.system('touch canary')")
    add("savedmodel_protobuf", "saved_model.pb", b"\x08\x01\x12\x0c" + b"\x00" * 64, 415,
        "unsupported_format", "ingest", False, "a SavedModel protobuf")
    add("empty_file", "model.json", b"", 415, "unsupported_format", "ingest", False,
        "zero bytes")

    # -- JSON limits --------------------------------------------------------------------
    add("deep_json", "model.json", b"[" * 100_000 + b"]" * 100_000, 415,
        "unsupported_format", "ingest", False, "100,000 nested arrays (not an object)")
    add("deep_json_object", "model.json",
        b'{"class_name": "Sequential", "config": ' + b'{"a": ' * 100_000 + b"1"
        + b"}" * 100_001, 422, "json_limit_exceeded", "ingest", False,
        "100,000 nested objects")
    add("ten_thousand_digits", "model.json",
        b'{"class_name": "Sequential", "config": {"layers": [], "n": ' + b"9" * 10_000
        + b"}}", 422, "json_limit_exceeded", "ingest", False, "a 10,000-digit integer")
    add("nan_literal", "model.json",
        _dumps(base).replace(b'"momentum": 0.99', b'"momentum": NaN'), 422,
        "json_limit_exceeded", "ingest", False, "NaN where a number is expected")
    add("non_utf8", "model.json", b'{"class_name": "Sequential", "config": {"name": "\xff\xfe"}}',
        422, "invalid_json", "ingest", False, "bytes that are not UTF-8")
    add("truncated_json", "model.json", _dumps(base)[:1000], 422, "invalid_json", "ingest",
        False, "the first kilobyte of a model JSON")
    add("not_a_model", "model.json", b'{"weights": [1, 2, 3]}', 422, "invalid_architecture",
        "ingest", False, "a JSON object that is no Keras model")

    # -- resource limits --------------------------------------------------------------------
    def dense_units(config: dict[str, Any]) -> None:
        _layer(config, "head")["config"]["units"] = 2**31

    add("dense_2_31_units", "model.json", _dumps(mutated(dense_units)), 422,
        "resource_limit_exceeded", "limits", False, "a Dense with 2**31 units")

    def input_bomb(config: dict[str, Any]) -> None:
        _layer(config, "image")["config"]["batch_shape"] = [None, 200_000, 200_000, 3]

    add("input_shape_bomb", "model.json", _dumps(mutated(input_bomb)), 422,
        "resource_limit_exceeded", "limits", False, "a 200,000 x 200,000 x 3 input")

    def params_bomb(config: dict[str, Any]) -> None:
        head = _layer(config, "head")
        head["config"]["units"] = 50_000
        head["config"]["activation"] = "relu"
        second = copy.deepcopy(head)
        second["name"] = second["config"]["name"] = "head2"
        second["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["head", 0, 0]
        second["inbound_nodes"][0]["args"][0]["config"]["shape"] = [None, 50_000]
        config["config"]["layers"].append(second)
        config["config"]["output_layers"] = [["head2", 0, 0]]

    add("params_bomb_report", "model.json", _dumps(mutated(params_bomb)), 422,
        "resource_limit_exceeded", "report", False,
        "two Dense(50,000) layers: 2.5 billion parameters, each layer's units modest")

    def kernel_bomb(config: dict[str, Any]) -> None:
        conv = _layer(config, "conv")["config"]
        conv["kernel_size"] = [10**12, 10**12]  # 'same': every output sees the whole input
        conv["padding"] = "same"

    add("kernel_wider_than_the_input_by_10_12", "model.json", _dumps(mutated(kernel_bomb)), 422,
        "resource_limit_exceeded", "report", False,
        "a 'same' Conv2D with a 10^12 x 10^12 kernel: the gradient prediction once looped over "
        "every tap (the request never ended); refused for its parameters in milliseconds")

    def nested_models(config: dict[str, Any]) -> None:
        head = _layer(config, "head")
        inner: dict[str, Any] = {k: v for k, v in copy.deepcopy(head).items()
                                 if k != "inbound_nodes"}
        for depth in range(24):
            inner = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                     "config": {"name": f"level{depth}", "trainable": True, "layers": [inner]}}
        inner["inbound_nodes"] = head["inbound_nodes"]
        inner["name"] = "level23"
        config["config"]["layers"][-1] = inner
        config["config"]["output_layers"] = [["level23", 0, 0]]

    add("nested_models_bomb", "model.json", _dumps(mutated(nested_models)), 422,
        "resource_limit_exceeded", "limits", False, "24 Sequential models nested in each other")

    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return Corpus(cases=cases, canary_dir=canary_dir, base_dir=base_dir)


if __name__ == "__main__":  # python -m tests.security.corpus OUT_DIR: list the cases
    corpus = build_corpus(Path(sys.argv[1]))
    for case in corpus.cases:
        print(f"{case.name:40} {case.filename:16} {len(case.data):>10,} {case.status} "
              f"{case.code:24} {case.stage}")
