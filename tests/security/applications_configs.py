"""The config of every Keras Applications model (Keras 3 and tf.keras 2.x), weights=None,
built with Keras and stored so that the gate test reads them without TensorFlow.

    python -m tests.security.applications_configs --store            # rebuild and store both
    python -m tests.security.applications_configs OUT_DIR keras      # one file per model

The store is ``tests/security/data/applications-<flavour>.json.xz``: ``{"library",
"version", "configs": {model name: model.to_json() parsed}}``, keyed by the library version
that built it (``test_stored_application_configs_are_fresh`` rebuilds them when it changes).
"""

from __future__ import annotations

import inspect
import json
import lzma
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STORE = Path(__file__).resolve().parent / "data"
FLAVOURS = ("keras", "tf_keras")


def _library(flavour: str) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if flavour == "keras":
        import keras as library
    else:
        import tf_keras as library
    return library


def application_names(library: Any) -> list[str]:
    return [
        name for name in sorted(dir(library.applications))
        if name[0].isupper() and callable(getattr(library.applications, name))
        and not inspect.ismodule(getattr(library.applications, name))
    ]


def write_configs(out_dir: Path, flavour: str) -> list[str]:
    """Build every model of ``flavour`` and write ``<flavour>-<Model>.json`` and
    ``<flavour>.version`` under ``out_dir``."""
    library = _library(flavour)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in application_names(library):
        model = getattr(library.applications, name)(weights=None)
        (out_dir / f"{flavour}-{name}.json").write_text(model.to_json())
        written.append(name)
        library.backend.clear_session()
    (out_dir / f"{flavour}.version").write_text(library.__version__)
    return written


def archive_path(flavour: str) -> Path:
    return STORE / f"applications-{flavour}.json.xz"


def load_stored(flavour: str) -> dict[str, Any]:
    """``{"library", "version", "configs"}`` as stored."""
    stored: dict[str, Any] = json.loads(lzma.decompress(archive_path(flavour).read_bytes()))
    return stored


def read_built(out_dir: Path, flavour: str) -> dict[str, Any]:
    """What :func:`write_configs` wrote, in the stored layout."""
    configs = {
        path.stem.split("-", 1)[1]: json.loads(path.read_text())
        for path in sorted(out_dir.glob(f"{flavour}-*.json"))
    }
    version = (out_dir / f"{flavour}.version").read_text().strip()
    return {"library": flavour, "version": version, "configs": configs}


def build(out_dir: Path, flavour: str, *, timeout_s: float = 3600) -> dict[str, Any]:
    """Build every model of ``flavour`` in a fresh process (one library per process)."""
    subprocess.run(
        [sys.executable, "-m", "tests.security.applications_configs", str(out_dir), flavour],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
        check=True, timeout=timeout_s,
    )
    return read_built(out_dir, flavour)


def store(built: dict[str, Any]) -> Path:
    STORE.mkdir(exist_ok=True)
    path = archive_path(built["library"])
    data = json.dumps(built, sort_keys=True, separators=(",", ":")).encode("utf-8")
    path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    return path


if __name__ == "__main__":
    if sys.argv[1] == "--store":
        for flavour in sys.argv[2:] or FLAVOURS:
            with tempfile.TemporaryDirectory() as folder:
                path = store(build(Path(folder), flavour))
                print(f"{path}: {len(load_stored(flavour)['configs'])} models")
    else:
        write_configs(Path(sys.argv[1]), sys.argv[2])
