"""HDF5 inspection in a sandboxed child process: legacy .h5 models and .keras weights.

The API process never imports h5py for uploads: a fresh interpreter
(``python -m app.ingest.h5_child``) opens the file under memory, CPU and wall-clock
limits, and answers with one JSON line. A crash, a timeout or a limit ends only that child
and becomes a 422 with code ``h5_unreadable``. At most ``max_concurrent_hdf5_inspections``
children run at once per process (each may take ``child_memory_bytes``); a request that
finds every slot busy for ``child_timeout_s`` gets a 503 ``inspection_busy``.

The same inspection runs on a legacy ``.h5`` upload (:func:`read_h5_model`, which also
reads its ``model_config``) and on the weights member(s) of a ``.keras`` archive
(:func:`inspect_archive_weights`), so that no HDF5 file reaches a worker's Keras with an
external link, external storage or a virtual dataset.

Example::

    contents = read_h5_model(Path("model.h5"), settings)
    contents.config["class_name"]   # 'Sequential'
    inspect_archive_weights(Path("model.keras"), ["model.weights.h5"], settings)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import app
from app.config import Settings
from app.errors import InvalidArchitecture, ServiceBusy
from app.ingest.jsonparse import parse_json_bytes

_PACKAGE_ROOT = Path(app.__file__).resolve().parent.parent
#: Most groups, datasets and links walked in one .h5 file (Keras files hold a few thousand).
MAX_HDF5_OBJECTS = 200_000
_CHILD_CODES = {"invalid_architecture", "unsafe_hdf5", "hdf5_limit_exceeded", "h5_unreadable",
                "invalid_archive"}
_slots_guard = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


@dataclass(frozen=True)
class H5Contents:
    config: Any
    keras_version: str | None
    backend: str | None
    has_weights: bool


def _unreadable(detail: str) -> InvalidArchitecture:
    return InvalidArchitecture(detail, code="h5_unreadable")


def child_command(path: Path, settings: Settings, member: str | None = None) -> list[str]:
    """The command line of the child that inspects ``path`` (or its zip ``member``)."""
    return [
        sys.executable, "-E", "-s", "-m", "app.ingest.h5_child", str(path),
        *(["--member", member] if member is not None else []),
        "--memory-bytes", str(settings.child_memory_bytes),
        "--cpu-seconds", str(settings.child_cpu_seconds),
        "--max-dataset-bytes", str(settings.max_archive_uncompressed_bytes),
        "--max-total-bytes", str(settings.max_archive_uncompressed_bytes),
        "--max-config-bytes", str(settings.max_archive_config_bytes),
        "--max-objects", str(MAX_HDF5_OBJECTS),
    ]


def inspection_slots(settings: Settings) -> threading.BoundedSemaphore:
    """The process-wide semaphore bounding HDF5 children (one per configured size)."""
    size = settings.max_concurrent_hdf5_inspections
    with _slots_guard:
        if size not in _slots:
            _slots[size] = threading.BoundedSemaphore(size)
        return _slots[size]


def _child_environment() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HDF5_USE_FILE_LOCKING": "FALSE",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _run_child(path: Path, settings: Settings, member: str | None = None) -> dict[str, Any]:
    """Run one inspection child (within the concurrency bound) and return its answer."""
    slots = inspection_slots(settings)
    if not slots.acquire(timeout=settings.child_timeout_s):
        raise ServiceBusy(
            f"Every HDF5 inspection slot ({settings.max_concurrent_hdf5_inspections}) stayed busy "
            f"for {settings.child_timeout_s:g} s. Retry the upload shortly."
        )
    try:
        completed = subprocess.run(
            child_command(path, settings, member),
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
    finally:
        slots.release()
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
        detail = str(answer.get("detail", "The HDF5 file was refused."))
        if member is not None:
            detail = f"The .keras archive's weights member {member!r} is refused: {detail}"
        raise InvalidArchitecture(detail, code=code)
    return answer


def read_h5_model(path: Path, settings: Settings) -> H5Contents:
    """Inspect a legacy HDF5 model file in a child process and parse its ``model_config``."""
    answer = _run_child(path, settings)
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


def inspect_archive_weights(path: Path, members: list[str], settings: Settings) -> None:
    """Put every HDF5 member of a ``.keras`` archive through the .h5 inspection (read in place).

    Raises ``InvalidArchitecture`` (``unsafe_hdf5``, ``hdf5_limit_exceeded``,
    ``h5_unreadable``) naming the member, before any worker could open it.
    """
    for member in members:
        _run_child(path, settings, member)
