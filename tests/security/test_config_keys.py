"""The table of config keys the gate keeps (app/security/config_keys.json) covers the
allowlist, keeps everything real models write, and matches the installed Keras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.security import allowlist as al
from app.security.gate import CONFIG_KEYS, accepted_config_keys

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "app" / "security" / "config_keys.json"


def test_every_allowlisted_class_has_its_keys() -> None:
    absent = set(json.loads(STORED.read_text())["absent_from_both_libraries"])
    families = {al.LAYER: al.LAYER_CLASSES, al.INITIALIZER: al.INITIALIZER_CLASSES,
                al.REGULARIZER: al.REGULARIZER_CLASSES, al.CONSTRAINT: al.CONSTRAINT_CLASSES,
                al.DTYPE_POLICY: al.DTYPE_POLICY_CLASSES}
    missing = [f"{category}:{name}" for category, names in families.items() for name in names
               if name not in CONFIG_KEYS.get(category, {}) and f"{category}:{name}" not in absent]
    missing += [f"{al.OPERATION}:{module}.{name}" for module, names in al.KERAS_OPERATIONS.items()
                for name in names if name not in CONFIG_KEYS[al.OPERATION]
                and f"{al.OPERATION}:{module}.{name}" not in absent]
    assert not missing, missing
    assert {"filters", "kernel_size", "strides", "padding", "activation", "name"} <= accepted_config_keys(
        al.LAYER, "Conv2D")
    assert "function" in accepted_config_keys(al.TF_OP_LAYER, "TFOpLambda")
    assert "function" not in accepted_config_keys(al.LAYER, "Dense")


@pytest.mark.tensorflow
@pytest.mark.slow
def test_stored_config_keys_are_fresh(tmp_path: Path) -> None:
    """Regenerate the table from the installed Keras 3 and tf_keras: a Keras upgrade that adds
    or renames a constructor argument fails here until the table is regenerated with
    ``python -m tests.security.generate_config_keys``."""
    fresh = tmp_path / "config_keys.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tests.security.generate_config_keys", str(fresh)],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    stored, regenerated = json.loads(STORED.read_text()), json.loads(fresh.read_text())
    assert regenerated["keys"] == stored["keys"], (
        f"Keras {regenerated['keras_version']} / tf_keras {regenerated['tf_keras_version']} accept "
        f"other config keys than the stored table (Keras {stored['keras_version']}): run "
        "python -m tests.security.generate_config_keys")
