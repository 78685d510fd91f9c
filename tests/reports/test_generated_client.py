"""A Python client generated from ``/openapi.json`` with openapi-python-client works.

The generator runs offline on the service's own document; the generated package is imported
and used as a platform team would: an analysis from JSON and from an uploaded ``.keras``
file, read back as typed objects (``report.summary.total_params`` against Keras's count, a
layer's receptive field against the field measured on the Keras model), and a training run,
created and read back typed, also in one request from the model JSON or an uploaded file
(and, with a TensorFlow worker, an uploaded file's run to its finished result and verdict).
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.fixtures.load import load_config
from tests.reports.conftest import SEED, seed_expected

pytestmark = pytest.mark.slow

PACKAGE = "convlens_client"


def generate_client(spec: dict[str, Any], into: Path) -> ModuleType:
    """Generate the client package from ``spec`` under ``into`` and import it."""
    (into / "openapi.json").write_text(json.dumps(spec))
    bin_dir = Path(sys.executable).parent
    completed = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(into / "openapi.json"),
         "--meta", "none", "--output-path", str(into / PACKAGE)],
        capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(into)},
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Warning" not in output, output  # every operation and schema generated
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(into))


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[ModuleType]:
    yield from _generated(tmp_path)


def _generated(tmp_path: Path) -> Iterator[ModuleType]:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(tmp_path))) as client:
        spec = client.get("/openapi.json").json()
    package = generate_client(spec, tmp_path)
    try:
        yield package
    finally:
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _api(tag: str) -> Any:
    """The generated operations of one tag, by operation id (``_api("analyses").get_analysis``)."""

    class Operations:
        def __getattr__(self, operation: str) -> ModuleType:
            return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation}")

    return Operations()


def _oracle_field(layer: str) -> list[dict[str, int]]:
    """The receptive field of ``layer`` measured on the Keras model (tests/fixtures/oracle.py)."""
    return seed_expected(3)["receptive_fields"]["layers"][layer]["axes"]  # type: ignore[no-any-return]


def test_a_generated_client_analyses_json_and_uploads_and_reads_typed_reports(generated, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    analyses, training = _api("analyses"), _api("training")
    keras_params = seed_expected(3)["totals"]["params"]

    with TestClient(create_app(make_settings(tmp_path / "service", max_concurrent_training_per_tenant=5))) as transport:
        client = importlib.import_module(PACKAGE).Client(base_url="http://testserver")
        client.set_httpx_client(transport)

        body = models.AnalysisCreate.from_dict(
            {"architecture": load_config(SEED / "example3.json"), "name": "example3 from JSON"}
        )
        created = analyses.create_analysis.sync_detailed(client=client, body=body)
        assert created.status_code == 201, created.content[:500]
        from_json = created.parsed
        assert isinstance(from_json, models.AnalysisOut) and from_json.status == "succeeded"
        assert isinstance(from_json.report, models.Report)
        assert from_json.report.summary.total_params == keras_params

        payload = (SEED / "example3.keras").read_bytes()
        uploaded = analyses.upload_analysis.sync_detailed(client=client, body=models.UploadAnalysisBody(
            file=types.File(payload=io.BytesIO(payload), file_name="example3.keras"),
            name="example3 uploaded"))
        assert uploaded.status_code == 201, uploaded.content[:500]
        report = uploaded.parsed.report
        assert uploaded.parsed.architecture.format_ == "keras"
        assert report.summary.total_params == keras_params
        assert isinstance(report.summary.macs, int) and report.summary.flops == 2 * report.summary.macs

        for analysis in (from_json, uploaded.parsed):
            layers = {layer.name: layer for layer in analysis.report.layers}
            for name in ("conv2d", "conv2d_1", "add", "conv2d_5"):
                field = layers[name].receptive_field
                assert isinstance(field, models.LayerField)
                assert [(a.size, a.stride, a.padding) for a in field.axes] == [
                    (a["size"], a["stride"], a["padding"]) for a in _oracle_field(name)], name
            codes = {finding.code for finding in analysis.report.findings}
            assert "stages" in codes
            stages = next(f for f in analysis.report.findings if f.code == "stages")
            assert stages.details.stages[0].index == 1  # typed details of a typed finding

        got = analyses.get_analysis.sync(analysis_id=from_json.id, client=client)
        assert got.report.to_dict() == created.parsed.report.to_dict()
        page = analyses.list_analyses.sync(client=client)
        assert page.total == 2 and {item.summary.total_params for item in page.items} == {keras_params}

        run_body = models.TrainingRunCreate(analysis_id=from_json.id, steps=5, batch_size=4)
        started = training.create_run.sync_detailed(client=client, body=run_body)
        assert started.status_code == 202, started.content[:500]
        run = started.parsed
        assert isinstance(run, models.TrainingRunOut) and run.status == "queued"
        assert run.progress.steps == 5 and run.progress.steps_done == 0
        read = training.get_run.sync(run_id=run.id, client=client)
        assert read.id == run.id and read.analysis_id == from_json.id and read.result is None
        cancelled = training.cancel_run.sync(run_id=run.id, client=client)
        assert cancelled.cancel_requested is True or cancelled.status == "cancelled"

        # a training run in one request: the model JSON inline, or an uploaded model file
        inline = training.create_run.sync_detailed(client=client, body=models.TrainingRunCreate.from_dict(
            {"architecture": load_config(SEED / "example1.json"), "steps": 3, "name": "example1 inline"}))
        assert inline.status_code == 202, inline.content[:500]
        assert isinstance(inline.parsed, models.TrainingRunOut) and inline.parsed.status == "queued"
        trained = analyses.get_analysis.sync(analysis_id=inline.parsed.analysis_id, client=client)
        assert trained.name == "example1 inline"
        assert trained.report.summary.total_params == seed_expected(1)["totals"]["params"]
        assert trained.architecture.id == inline.parsed.architecture_id
        upload_run = training.upload_training_run.sync_detailed(client=client, body=models.UploadTrainingRunBody(
            file=types.File(payload=io.BytesIO(payload), file_name="example3.keras"), steps=3))
        assert upload_run.status_code == 202, upload_run.content[:500]
        # the same file as the upload above: the same stored architecture, a new analysis
        assert upload_run.parsed.architecture_id == uploaded.parsed.architecture.id
        assert upload_run.parsed.analysis_id not in (None, uploaded.parsed.id)
        assert analyses.get_analysis.sync(
            analysis_id=upload_run.parsed.analysis_id, client=client).report.summary.total_params == keras_params


@pytest.mark.tensorflow
def test_a_generated_client_follows_a_real_training_run_to_its_typed_verdict(
    live_service_with_worker, tmp_path
) -> None:
    spec = httpx.get(f"{live_service_with_worker}/openapi.json", timeout=60).json()
    package = generate_client(spec, tmp_path)
    try:
        models = importlib.import_module(f"{PACKAGE}.models")
        analyses, training = _api("analyses"), _api("training")
        client = package.Client(base_url=live_service_with_worker, timeout=httpx.Timeout(120))
        types = importlib.import_module(f"{PACKAGE}.types")
        # one request: the uploaded .keras file is analysed, stored and trained (its weights)
        run = training.upload_training_run.sync(client=client, body=models.UploadTrainingRunBody(
            file=types.File(payload=io.BytesIO((SEED / "example2.keras").read_bytes()),
                            file_name="example2.keras"),
            name="example2 for training", steps=12, batch_size=8, overfit_steps=10, probe_every=6))
        assert isinstance(run, models.TrainingRunOut) and run.status == "queued", run
        analysis = analyses.get_analysis.sync(analysis_id=run.analysis_id, client=client)
        assert analysis.name == "example2 for training" and analysis.architecture.has_weights
        deadline = time.monotonic() + 600  # a worker's first TensorFlow start on a busy machine
        while run.status in ("queued", "running"):
            assert time.monotonic() < deadline, run.to_dict()
            time.sleep(0.5)
            run = training.get_run.sync(run_id=run.id, client=client)
        assert run.status == "succeeded", run.to_dict()
        result = run.result
        assert isinstance(result, models.TrainingResult)
        assert result.steps_completed == 12 and len(result.history.loss) == 12
        assert isinstance(result.verdict, models.TrainingVerdict)
        assert result.verdict.summary.endswith(".") and isinstance(result.verdict.loss_decreased, bool)
        assert result.overfit_one_batch.steps == 10
    finally:
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]
