"""Reading a legacy .h5 model's ``model_config`` in a sandboxed child process.

The API process never imports h5py for uploads: a fresh interpreter
(``python -m app.ingest.h5_child``) opens the file under memory, CPU and wall-clock
limits, and answers with one JSON line. A crash, a timeout or a limit ends only that child
and becomes a 422 with code ``h5_unreadable``.

Example::

    contents = read_h5_model(Path("model.h5"), settings)
    contents.config["class_name"]   # 'Sequential'
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import app
from app.config import Settings
from app.errors import InvalidArchitecture
from app.ingest.jsonparse import parse_json_bytes

_PACKAGE_ROOT = Path(app.__file__).resolve().parent.parent
#: Most groups, datasets and links walked in one .h5 file (Keras files hold a few thousand).
MAX_HDF5_OBJECTS = 200_000
_CHILD_CODES = {"invalid_architecture", "unsafe_hdf5", "hdf5_limit_exceeded", "h5_unreadable"}


@dataclass(frozen=True)
class H5Contents:
    config: Any
    keras_version: str | None
    backend: str | None
    has_weights: bool


def _unreadable(detail: str) -> InvalidArchitecture:
    return InvalidArchitecture(detail, code="h5_unreadable")


def child_command(path: Path, settings: Settings) -> list[str]:
    """The command line of the child that inspects ``path``."""
    return [
        sys.executable, "-E", "-s", "-m", "app.ingest.h5_child", str(path),
        "--memory-bytes", str(settings.child_memory_bytes),
        "--cpu-seconds", str(settings.child_cpu_seconds),
        "--max-dataset-bytes", str(settings.max_archive_uncompressed_bytes),
        "--max-total-bytes", str(settings.max_archive_uncompressed_bytes),
        "--max-config-bytes", str(settings.max_archive_config_bytes),
        "--max-objects", str(MAX_HDF5_OBJECTS),
    ]


def _child_environment() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HDF5_USE_FILE_LOCKING": "FALSE",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def read_h5_model(path: Path, settings: Settings) -> H5Contents:
    """Inspect a legacy HDF5 model file in a child process and parse its ``model_config``."""
    try:
        completed = subprocess.run(
            child_command(path, settings),
            cwd=_PACKAGE_ROOT,
            env=_child_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=settings.child_timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _unreadable(
            f"Reading the HDF5 file took longer than {settings.child_timeout_s:g} s; it was "
            "stopped."
        ) from None
    if completed.returncode < 0:
        try:
            signal_name = signal.Signals(-completed.returncode).name
        except ValueError:
            signal_name = f"signal {-completed.returncode}"
        raise _unreadable(
            f"The HDF5 reader crashed on this file ({signal_name}); the file is refused."
        )
    try:
        answer = json.loads(completed.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        answer = None
    if completed.returncode != 0 or not isinstance(answer, dict):
        raise _unreadable(
            f"The HDF5 reader failed on this file (exit status {completed.returncode})."
        )
    if not answer.get("ok"):
        code = answer.get("code") if answer.get("code") in _CHILD_CODES else "h5_unreadable"
        raise InvalidArchitecture(str(answer.get("detail", "The HDF5 file was refused.")),
                                  code=code)
    raw = answer.get("model_config")
    if not isinstance(raw, str):
        raise _unreadable("The HDF5 reader returned no model_config.")
    config = parse_json_bytes(raw.encode("utf-8"), settings, what="model_config attribute")
    return H5Contents(
        config=config,
        keras_version=answer.get("keras_version") if isinstance(answer.get("keras_version"), str)
        else None,
        backend=answer.get("backend") if isinstance(answer.get("backend"), str) else None,
        has_weights=bool(answer.get("has_weights")),
    )
