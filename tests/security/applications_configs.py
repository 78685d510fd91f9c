"""Write the config of every Keras Applications model (Keras 3 and tf.keras 2.x), weights=None.

Run as ``python -m tests.security.applications_configs OUT_DIR [keras|tf_keras]``: one
``<flavour>-<Model>.json`` per model, as ``model.to_json()`` returns it.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path


def write_configs(out_dir: Path, flavour: str) -> list[str]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if flavour == "keras":
        import keras as library
    else:
        import tf_keras as library
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(dir(library.applications)):
        builder = getattr(library.applications, name)
        if not name[0].isupper() or not callable(builder) or inspect.ismodule(builder):
            continue
        model = builder(weights=None)
        (out_dir / f"{flavour}-{name}.json").write_text(model.to_json())
        written.append(name)
        library.backend.clear_session()
    return written


if __name__ == "__main__":
    write_configs(Path(sys.argv[1]), sys.argv[2])
