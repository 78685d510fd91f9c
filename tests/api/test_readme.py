"""The README's promises: its configuration table lists every setting, its commands exist, its
examples work as written on a large model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_table_lists_every_setting() -> None:
    result = subprocess.run([sys.executable, "scripts/config_table.py", "--check"], cwd=ROOT)
    assert result.returncode == 0, "README's configuration table is stale: run python scripts/config_table.py"


def test_readme_commands_are_the_makefile_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "pytest" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# -- the examples, verbatim, on a large model -------------------------------------------------

EXAMPLES_START, EXAMPLES_END = "## Examples\n", "## Where data lives"
README_SERVER = "http://127.0.0.1:8000"
#: Commands of the README that need a TensorFlow worker (minutes on ResNet50) or a production
#: setup; their paths are tested elsewhere (tests/reports/test_submit_training.py, tests/jobs).
NOT_RUN_HERE = {
    "convlens submit model.keras --measure-gradients",
    "convlens submit model.keras --train --steps 100",
    "convlens worker",
    "convlens db upgrade",
    "convlens keys create --tenant acme",
}


def _blocks(readme: str) -> list[tuple[str, str]]:
    """The fenced (language, code) blocks between "## Examples" and "## Where data lives"."""
    section = readme[readme.index(EXAMPLES_START):readme.index(EXAMPLES_END)]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", section, re.S)]


def _commands(code: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in code.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def resnet50_files(tmp_path_factory) -> tuple[Path, dict]:
    """A folder holding ResNet50 as model.json (190 KB) and as model.keras (its config; the
    weights change nothing the examples do), and what Keras says about the model."""
    from tests.fixtures.load import FIXTURES_DIR, load_config, load_expected

    folder = tmp_path_factory.mktemp("readme")
    config = load_config(FIXTURES_DIR / "applications" / "resnet50.json.gz")
    text = json.dumps(config)
    assert len(text) > 131_072  # longer than one shell argument may be (MAX_ARG_STRLEN)
    (folder / "model.json").write_text(text)
    with zipfile.ZipFile(folder / "model.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", text)
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
    return folder, load_expected(FIXTURES_DIR / "applications" / "resnet50.expected.json")


@pytest.mark.slow
def test_readme_examples_work_verbatim_on_resnet50(resnet50_files) -> None:
    """Every example of the README's Examples and Command line sections, as written (only the
    service's address is this test's), on ResNet50: the curl examples, the httpx one and the
    commands, against ``convlens serve`` started as ``make serve`` starts it."""
    from tests.reports.conftest import serve

    folder, keras = resnet50_files
    params = keras["totals"]["params"]
    blocks = _blocks((ROOT / "README.md").read_text())
    assert [language for language, _ in blocks] == ["bash", "bash", "bash", "python", "bash", "bash", "bash"]
    (folder / "service").mkdir(exist_ok=True)
    with serve(folder / "service") as base:
        port = base.rsplit(":", 1)[1]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               "CONVLENS_PORT": port, "CONVLENS_DATA_DIR": str(folder / "cli-data")}
        for name in ("CONVLENS_SERVER", "CONVLENS_PUBLIC_URL", "CONVLENS_HOST"):
            env.pop(name, None)

        def run(language: str, code: str) -> str:
            code = code.replace(README_SERVER, base)
            command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [
                sys.executable, "-c", code]
            done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (code, done.stdout[-2000:], done.stderr[-2000:])
            assert "convlens.dev/problems/" not in done.stdout, done.stdout[:2000]
            return done.stdout

        analysed = json.loads(run(*blocks[0]))
        assert analysed["status"] == "succeeded" and analysed["name"] == "my-model"
        assert analysed["report"]["summary"]["total_params"] == params

        uploaded = json.loads(run(*blocks[1]))
        assert uploaded["architecture"]["format"] == "keras"
        assert uploaded["input_shape"] == [224, 224, 3]
        assert uploaded["report"]["summary"]["total_params"] == params
        page = (folder / "report.html").read_text()
        assert "my-model" in page and len(page) > 100_000

        run_body = json.loads(run(*blocks[2]))
        assert run_body["status"] == "queued" and run_body["progress"]["steps"] == 30
        assert run_body["parameters"]["overfit_check"] is False
        trained = httpx.get(f"{base}/v1/analyses/{run_body['analysis_id']}", timeout=60).json()
        assert trained["report"]["summary"]["total_params"] == params

        printed = run(*blocks[3]).split()
        assert printed[0] == str(params)  # total parameters, field per axis, sees whole input
        assert printed[-1] == "True"

        first, retried = run(*blocks[4]).split()  # one Idempotency-Key sent twice: one analysis
        assert first == retried
        assert httpx.get(f"{base}/v1/analyses/{first}", timeout=60).json()["name"] == "my-model"

        commands = _commands(blocks[5][1])
        assert len(commands) == 4
        for command in commands:
            out = run("bash", command)
            if "--json" in command:
                assert json.loads((folder / "report.json").read_text())["summary"]["total_params"] == params
            elif "--html" in command:
                assert "conv5_block3_out" in (folder / "report.html").read_text()
            else:
                from app.reports.view import format_count

                assert format_count(params) in out and "conv5_block3_out" in out, out[:2000]
                if "submit" in command:
                    assert "succeeded" in out and f"{base}/v1/analyses/" in out
        assert set(_commands(blocks[6][1])) == NOT_RUN_HERE
