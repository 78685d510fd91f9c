"""Planting code at every position of real saved model configs (the position-fuzz tests).

A *position* is a place in the JSON tree of a model config: a new key added to any object
(``add``), the value of any existing key (``replace``), any element of any list
(``element``). A *payload* is something that runs code if Keras ever builds it: a function
reference of the kind a ``compile_config`` carries (``keras.utils.plot_model``,
``keras.config.set_floatx``, a save-image function), a Lambda whose marshalled bytecode
writes a canary file, and references to Python modules outside Keras (``subprocess.Popen``,
``os.system``). Each payload that can name a path names a file in the canary directory.

Example::

    documents = real_documents()
    cases = list(plant_everywhere(documents["example3.json"], payloads(canary_dir)))
"""

from __future__ import annotations

import base64
import codecs
import io
import json
import marshal
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import orjson

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
PLANTED_KEY = "convlens_probe"


def canary_lambda(canary: Path) -> dict[str, Any]:
    """A Keras 3 Lambda layer whose marshalled function writes ``canary`` when called."""
    source = f"lambda x: (__import__('pathlib').Path({str(canary)!r}).write_text('ran'), x)[1]"
    function = eval(source)  # noqa: S307 - the payload of a security test
    code = codecs.encode(marshal.dumps(function.__code__), "base64").decode("ascii")
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "probe_lambda", "trainable": True, "dtype": "float32",
                       "function": {"class_name": "__lambda__", "config": {"value": [code, None, None]}},
                       "arguments": {}}}


def payloads(canary_dir: Path) -> dict[str, dict[str, Any]]:
    """Every payload by name; each one would run code if Keras built it."""
    return {
        "plot_model": {"module": "keras.utils", "class_name": "function", "config": "plot_model",
                       "registered_name": "plot_model"},
        "set_floatx": {"module": "keras.config", "class_name": "function", "config": "set_floatx",
                       "registered_name": "set_floatx"},
        "save_img": {"module": "keras.utils", "class_name": "save_img", "registered_name": None,
                     "config": {"path": str(canary_dir / "save_img.png"), "x": [[[0.0]]]}},
        "lambda": canary_lambda(canary_dir / "lambda"),
        "marshalled": {"class_name": "__lambda__", "config": {
            "value": canary_lambda(canary_dir / "marshalled")["config"]["function"]["config"]["value"]}},
        "subprocess": {"module": "subprocess", "class_name": "Popen", "registered_name": None,
                       "config": {"args": ["touch", str(canary_dir / "popen")]}},
        "os_system": {"module": "os", "class_name": "function", "config": "system",
                      "registered_name": "system"},
    }


@dataclass(frozen=True)
class Case:
    document: str
    payload: str
    position: tuple[str, tuple[Any, ...]]  # (kind, path of keys / indices)

    def label(self) -> str:
        kind, path = self.position
        return f"{self.document} {self.payload} {kind} $" + "".join(
            f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)


def positions(tree: Any) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every dict position (a new key; each existing key's value) and list element."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(tree, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            yield "add", path
            for key, value in node.items():
                yield "replace", (*path, key)
                stack.append((value, (*path, key)))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield "element", (*path, index)
                stack.append((value, (*path, index)))


def planted(tree: Any, position: tuple[str, tuple[Any, ...]], payload: dict[str, Any]) -> Any:
    """A copy of ``tree`` with ``payload`` at ``position``."""
    copy = orjson.loads(orjson.dumps(tree))
    kind, path = position
    if kind == "add":
        target = copy
        for step in path:
            target = target[step]
        target[PLANTED_KEY] = payload
        return copy
    if not path:
        return payload
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = payload
    return copy


def markers(payload: dict[str, Any], original: Any) -> list[str]:
    """The strings of ``payload`` (as JSON) that the original document does not contain,
    and the planted key: if one of them is in a sanitised config, the payload survived."""
    text = orjson.dumps(original).decode()
    found: list[str] = [json.dumps(PLANTED_KEY)]
    stack: list[Any] = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and json.dumps(item) not in text:
            found.append(json.dumps(item))
    return found


def contains(tree: Any, marks: list[str]) -> bool:
    text = orjson.dumps(tree).decode()
    return any(mark in text for mark in marks)


def plant_everywhere(document: str, tree: Any, kinds: dict[str, dict[str, Any]]) -> Iterator[Case]:
    for position in positions(tree):
        for name in kinds:
            yield Case(document, name, position)


# -- the real saved documents, in each format --------------------------------------------------


def keras_config(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def h5_config(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as handle:
        value = handle.attrs["model_config"]
    return json.loads(value.decode() if isinstance(value, bytes) else value)


def real_documents() -> dict[str, dict[str, Any]]:
    """The documents Keras sees, from real saved models: Keras 3 JSON, tf_keras JSON, the
    config.json of a real ``.keras`` and the model_config of a real ``.h5``."""
    return {
        "example3.json": json.loads((SEED / "example3.json").read_text()),
        "example3.tfkeras.json": json.loads((SEED / "example3.tfkeras.json").read_text()),
        "example2.keras": keras_config(SEED / "example2.keras"),
        "example1.h5": h5_config(SEED / "example1.h5"),
    }


def with_keras_config(source: Path, config: Any) -> bytes:
    """The real ``.keras`` archive at ``source`` with its config.json replaced (weights kept)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(buffer, "w") as archive:
        for info in original.infolist():
            data = original.read(info)
            archive.writestr(info, json.dumps(config).encode() if info.filename == "config.json" else data)
    return buffer.getvalue()


def with_h5_config(source: Path, config: Any, scratch: Path) -> bytes:
    """The real ``.h5`` at ``source`` with its model_config attribute replaced (weights kept)."""
    scratch.write_bytes(source.read_bytes())
    with h5py.File(scratch, "r+") as handle:
        handle.attrs["model_config"] = json.dumps(config)
    return scratch.read_bytes()


def upload_bytes(document: str, config: Any, scratch: Path) -> tuple[str, bytes]:
    """(filename, bytes) carrying ``config`` in the container the document came from."""
    if document.endswith(".keras"):
        return "model.keras", with_keras_config(SEED / document, config)
    if document.endswith(".h5"):
        return "model.h5", with_h5_config(SEED / document, config, scratch)
    return "model.json", json.dumps(config).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
