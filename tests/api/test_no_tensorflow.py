"""Serving requests never imports TensorFlow or Keras (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serving_requests_never_imports_tensorflow(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from fastapi.testclient import TestClient
        from app.main import create_app
        from tests.conftest import make_settings
        from tests.api.helpers import seed_bytes, seed_config, upload

        settings = make_settings(Path({str(tmp_path)!r}))
        with TestClient(create_app(settings)) as client:
            for n in (1, 2, 3):
                assert client.post("/v1/analyses", json={{"architecture": seed_config(n)}}).status_code == 201
                for fmt in ("keras", "h5"):
                    r = upload(client, seed_bytes(n, fmt), f"m.{{fmt}}")
                    assert r.status_code == 201, r.text
                    assert client.get(r.headers["location"]).status_code == 200
            client.get("/v1/analyses")
            client.get("/openapi.json")
            client.get("/readyz")
        frameworks = {{"tensorflow", "keras", "tf_keras", "jax", "torch"}}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in frameworks)
        print("LOADED", loaded)
        assert not loaded, loaded
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "LOADED []" in result.stdout
