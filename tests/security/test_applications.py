"""Every Keras Applications architecture (Keras 3 and tf.keras 2.x) passes the safety gate."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.security import gate_architecture

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "applications"


def without_compile_configs(value: Any) -> Any:
    """``value`` without the ``compile_config`` of any model in it (what the gate drops)."""
    if isinstance(value, dict):
        return {key: without_compile_configs(item) for key, item in value.items()
                if key != "compile_config"}
    if isinstance(value, list):
        return [without_compile_configs(item) for item in value]
    return value


def _gate(config: dict) -> None:
    """The gate accepts the model and keeps everything of it but the compile settings."""
    sanitised = gate_architecture(config, Settings())
    assert sanitised == without_compile_configs(config)


def test_stored_application_fixtures_pass_the_gate() -> None:
    paths = sorted(FIXTURES.glob("*.json.gz"))
    assert paths, f"no application fixtures under {FIXTURES}"
    for path in paths:
        _gate(json.loads(gzip.decompress(path.read_bytes())))


@pytest.mark.tensorflow
@pytest.mark.slow
@pytest.mark.parametrize(("flavour", "at_least"), [("keras", 40), ("tf_keras", 70)])
def test_every_application_model_passes_the_gate(tmp_path: Path, flavour: str,
                                                 at_least: int) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.security.applications_configs", str(tmp_path), flavour],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    paths = sorted(tmp_path.glob(f"{flavour}-*.json"))
    assert len(paths) >= at_least, [p.name for p in paths]
    refused = []
    for path in paths:
        try:
            _gate(json.loads(path.read_text()))
        except Exception as exc:  # noqa: BLE001 - collect them all
            refused.append(f"{path.name}: {exc}")
    assert not refused, "\n".join(refused)
