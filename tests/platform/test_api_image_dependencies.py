"""The API image installs only ``[project].dependencies`` (no worker extras): everything the
API process imports while serving must come from those distributions or their requirements."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from tests.platform.containers import ROOT, base_env

#: Modules a dependency imports only when present (``try: import x except ImportError``):
#: installed here for other reasons, not needed by the API image.
OPTIONAL_IMPORTS = {"sniffio": "anyio uses it when installed and works without it"}

SERVE_AND_REPORT = r"""
import json, sys, tempfile, pathlib
from fastapi.testclient import TestClient
from app.main import create_app
from app.config import Settings
data = pathlib.Path(tempfile.mkdtemp())
settings = Settings(data_dir=data, local_workers=0)
examples = sorted(pathlib.Path("app/api/examples").glob("seed_example*.json"))
with TestClient(create_app(settings)) as client:
    for example in examples:
        body = {"architecture": json.loads(example.read_text())}
        assert client.post("/v1/analyses", json=body).status_code == 201
    keras_file = pathlib.Path("tests/fixtures/seed/example3.keras").read_bytes()
    files = {"file": ("example3.keras", keras_file, "application/octet-stream")}
    assert client.post("/v1/analyses", files=files).status_code == 201
    assert client.get("/v1/analyses").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/readyz").status_code == 200
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(requirements: list[str]) -> set[str]:
    """Installed distributions reachable from ``requirements`` (markers and extras honoured)."""

    def applies(requirement: Requirement, parent_extras: frozenset[str]) -> bool:
        if requirement.marker is None:
            return True
        return any(requirement.marker.evaluate({"extra": e}) for e in (parent_extras or {""}))

    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(Requirement(text), frozenset[str]()) for text in requirements]
    while pending:
        requirement, parent_extras = pending.pop()
        if not applies(requirement, parent_extras):
            continue
        key = (_normalise(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        pending.extend((Requirement(text), frozenset(requirement.extras)) for text in requires)
    return {name for name, _ in seen}


def test_the_api_imports_only_what_the_api_image_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = dependency_closure(project["dependencies"])
    worker_only = dependency_closure(project["optional-dependencies"]["worker"]) - allowed
    assert "tensorflow" in worker_only and "fastapi" in allowed

    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    owners = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    missing: dict[str, list[str]] = {}
    for module in imported:
        if module in stdlib or module in OPTIONAL_IMPORTS or module in ("app", "__main__"):
            continue
        if module.startswith("_"):
            continue
        distributions = {_normalise(d) for d in owners.get(module, [])}
        if not distributions:
            continue  # a module of no installed distribution (e.g. a vendored helper)
        if not distributions & allowed:
            missing[module] = sorted(distributions)
    assert not missing, f"imported by the API but not installed in the API image: {missing}"
    assert not {"tensorflow", "keras", "tf_keras"} & set(imported)
