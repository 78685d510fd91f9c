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
from tests.security.applications_configs import build, load_stored

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


@pytest.mark.parametrize(("flavour", "at_least"), [("keras", 40), ("tf_keras", 70)])
def test_every_application_model_passes_the_gate(flavour: str, at_least: int) -> None:
    """Every Applications model's config as Keras builds it (stored: see the freshness test)."""
    stored = load_stored(flavour)
    assert len(stored["configs"]) >= at_least, sorted(stored["configs"])
    refused = []
    for name, config in stored["configs"].items():
        try:
            _gate(config)
        except Exception as exc:  # noqa: BLE001 - collect them all
            refused.append(f"{flavour} {name}: {exc}")
    assert not refused, "\n".join(refused)


_VERSION_AND_NAMES = (
    "import json, sys; from tests.security.applications_configs import _library, application_names; "
    "library = _library(sys.argv[1]); print(json.dumps([library.__version__, application_names(library)]))"
)


@pytest.mark.tensorflow
@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_stored_application_configs_are_fresh(flavour: str, tmp_path: Path) -> None:
    """The stored configs are those of the installed library: same version and same models,
    checked in seconds. Only when the version changed are all the models rebuilt and compared
    (minutes); a difference asks for ``python -m tests.security.applications_configs --store``."""
    stored = load_stored(flavour)
    completed = subprocess.run(
        [sys.executable, "-c", _VERSION_AND_NAMES, flavour],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    version, names = json.loads(completed.stdout.strip().splitlines()[-1])
    if version == stored["version"]:
        assert names == sorted(stored["configs"]), "run python -m tests.security.applications_configs --store"
        return
    built = build(tmp_path, flavour)
    changed = sorted(name for name in set(built["configs"]) | set(stored["configs"])
                     if built["configs"].get(name) != stored["configs"].get(name))
    pytest.fail(
        f"{flavour} {version} is installed, the configs were stored with {stored['version']} "
        f"({len(changed)} of them differ: {changed[:10]}). Run python -m tests.security.applications_configs --store"
    )
