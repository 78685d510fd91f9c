"""Position fuzz: code planted at every position of real saved configs is refused or stripped.

The documents are what Keras would read from real saved models (``tests/fixtures/seed``):
Keras 3 JSON, tf_keras JSON, the ``config.json`` of a ``.keras`` archive and the
``model_config`` of a legacy ``.h5``. Every payload of :mod:`tests.security.fuzz` (function
references of the kind a ``compile_config`` carries, a canary-writing Lambda and marshalled
bytecode, references to ``subprocess`` and ``os``) is planted at every position of each
document. Each case must be refused with ``unsafe_architecture`` or come out of the gate with
no trace of the payload. The bulk runs the gate in process; a sample goes through the real
containers (zip, HDF5 child), over HTTP on SQLite and PostgreSQL, and through the worker's
gate into Keras, which must never see a payload. No canary file may appear.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.errors import UnsafeArchitecture
from app.ingest import read_architecture
from app.security import gate_architecture
from tests.security import fuzz

SETTINGS = Settings()


@pytest.fixture(scope="module")
def canary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("convlens-probe-canaries")


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return fuzz.real_documents()


def _outcome(config: Any, marks: list[str]) -> str:
    """'refused' or 'stripped'; anything else fails the test with what happened."""
    try:
        sanitised = gate_architecture(config, SETTINGS)
    except UnsafeArchitecture:
        return "refused"
    if fuzz.contains(sanitised, marks):
        return "accepted with the payload"
    return "stripped"


def _sample(tree: Any, cases: list[fuzz.Case], count: int, kinds: dict[str, Any]) -> list[fuzz.Case]:
    """``count`` cases spread over the document (refused ones, as most are), plus two whose
    payload the gate strips (under compile_config where the document has one)."""
    def stripped(case: fuzz.Case) -> bool:
        config = fuzz.planted(tree, case.position, kinds[case.payload])
        return _outcome(config, fuzz.markers(kinds[case.payload], tree)) == "stripped"

    def preference(case: fuzz.Case) -> int:  # stripped where the rest stays analysable first
        kind, path = case.position
        return 0 if "compile_config" in path else 1 if path[-1:] == ("build_config",) else 2

    ordered = sorted(cases, key=preference)
    kept = [case for case in ordered if stripped(case)][:2]
    step = max(1, len(cases) // count)
    return kept + cases[::step][:count]


def test_every_position_of_every_real_document_is_refused_or_stripped(
        documents: dict[str, dict[str, Any]], canary_dir: Path) -> None:
    kinds = fuzz.payloads(canary_dir)
    failures: list[str] = []
    tally: Counter[tuple[str, str]] = Counter()
    for name, document in documents.items():
        marks = {payload: fuzz.markers(kinds[payload], document) for payload in kinds}
        assert gate_architecture(document, SETTINGS), name  # the original passes
        for case in fuzz.plant_everywhere(name, document, kinds):
            outcome = _outcome(fuzz.planted(document, case.position, kinds[case.payload]),
                               marks[case.payload])
            tally[(name, outcome)] += 1
            if outcome not in ("refused", "stripped"):
                failures.append(f"{case.label()}: {outcome}")
    assert not failures, f"{len(failures)} cases:\n" + "\n".join(failures[:40])
    for name in documents:  # every document was fuzzed at hundreds of positions
        assert tally[(name, "refused")] + tally[(name, "stripped")] > 1000, (name, tally)
    # the .keras and .h5 documents carry compile_config: payloads there are stripped unread
    assert tally[("example2.keras", "stripped")] > 0 and tally[("example1.h5", "stripped")] > 0
    assert list(canary_dir.iterdir()) == []


@pytest.mark.parametrize("document", ["example2.keras", "example1.h5", "example3.json"])
def test_a_sample_through_the_real_containers(document: str, documents: dict[str, dict[str, Any]],
                                              canary_dir: Path, tmp_path: Path) -> None:
    """The same outcome when the document arrives inside its container: a zip read in
    place with its weights inspected, an HDF5 file read by the sandboxed child."""
    kinds = fuzz.payloads(canary_dir)
    tree = documents[document]
    cases = _sample(tree, list(fuzz.plant_everywhere(document, tree, kinds)), 4, kinds)
    outcomes = Counter()
    for case in cases:
        config = fuzz.planted(tree, case.position, kinds[case.payload])
        filename, data = fuzz.upload_bytes(document, config, tmp_path / "scratch.h5")
        read = read_architecture(data, filename=filename, settings=SETTINGS)
        outcome = _outcome(read.config, fuzz.markers(kinds[case.payload], tree))
        assert outcome in ("refused", "stripped"), (case.label(), outcome)
        assert outcome == _outcome(config, fuzz.markers(kinds[case.payload], tree)), case.label()
        outcomes[outcome] += 1
    assert outcomes["refused"] and outcomes["stripped"], outcomes
    assert list(canary_dir.iterdir()) == []


@pytest.mark.postgres
def test_a_sample_over_http(any_client: Any, any_settings: Settings, documents: dict[str, dict[str, Any]],
                            canary_dir: Path, tmp_path: Path) -> None:
    """Over HTTP (SQLite and PostgreSQL): a refusal is a 422 ``unsafe_architecture`` that
    leaves no row, blob or upload behind; an accepted upload is stored without the payload."""
    from tests.api.helpers import assert_problem, row_counts

    client, settings = any_client, any_settings
    kinds = fuzz.payloads(canary_dir)
    accepted = 0
    for document in ("example3.json", "example2.keras", "example1.h5"):
        tree = documents[document]
        for case in _sample(tree, list(fuzz.plant_everywhere(document, tree, kinds)), 3, kinds):
            config = fuzz.planted(tree, case.position, kinds[case.payload])
            marks = fuzz.markers(kinds[case.payload], tree)
            filename, data = fuzz.upload_bytes(document, config, tmp_path / "scratch.h5")
            before = row_counts(settings)
            blobs = set(settings.blob_dir.glob("*")) if settings.blob_dir.exists() else set()
            response = client.post("/v1/analyses", files={"file": (filename, data, "application/octet-stream")})
            expected = _outcome(config, marks)
            if response.status_code == 422:
                # refused by the gate, or stripped and then not analysable (a gutted layer)
                body = assert_problem(response, 422, "unsafe_architecture" if expected == "refused"
                                      else "invalid_architecture")
                assert body["reason" if expected == "refused" else "detail"], body
                assert row_counts(settings) == before, case.label()
                now = set(settings.blob_dir.glob("*")) if settings.blob_dir.exists() else set()
                assert now == blobs, case.label()
            else:
                assert response.status_code == 201, (case.label(), response.text[:300])
                architecture = client.get(f"/v1/architectures/{response.json()['architecture']['id']}").json()
                assert not fuzz.contains(architecture, marks), case.label()
                accepted += 1
            uploads = settings.data_dir / "uploads"
            assert not uploads.exists() or not list(uploads.iterdir()), case.label()
    assert accepted > 0  # the compile_config cases
    assert list(canary_dir.iterdir()) == []


@pytest.mark.tensorflow
def test_the_worker_gate_keeps_every_payload_from_keras(
        documents: dict[str, dict[str, Any]], canary_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if planted configs reached the jobs table untouched (a tampered database), a
    gradients job refuses them at the worker's gate or builds the model from the sanitised
    config and takes only the weights from the uploaded file: Keras never deserialises a
    payload, never reads the file's own config and never compiles, whatever the blob holds."""
    import keras
    from keras.src.saving import serialization_lib

    from app import db
    from app.jobs import handlers, repository
    from app.models import DEFAULT_TENANT, Architecture, Job
    from tests.conftest import make_settings

    seen: list[str] = []
    original = serialization_lib.deserialize_keras_object

    def recording(config: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(json.dumps(config, default=str))
        return original(config, *args, **kwargs)

    monkeypatch.setattr(serialization_lib, "deserialize_keras_object", recording)
    compiled: list[Any] = []
    monkeypatch.setattr(keras.Model, "compile_from_config", lambda self, config: compiled.append(config))
    files_loaded: list[Any] = []  # the uploaded file as a model: its own config read by Keras
    monkeypatch.setattr(keras.saving, "load_model", lambda *args, **kwargs: files_loaded.append(args))

    settings = make_settings(tmp_path)
    db.upgrade(settings)
    kinds = fuzz.payloads(canary_dir)
    floatx = keras.config.floatx()
    statuses: Counter[str] = Counter()
    for document in ("example2.keras", "example1.h5"):
        tree = documents[document]
        fmt = document.rsplit(".", 1)[1]
        for index, case in enumerate(_sample(tree, list(fuzz.plant_everywhere(document, tree, kinds)), 2, kinds)):
            config = fuzz.planted(tree, case.position, kinds[case.payload])
            _, data = fuzz.upload_bytes(document, config, tmp_path / "scratch.h5")
            blob = tmp_path / f"{document}-{index}.{fmt}"
            blob.write_bytes(data)  # the blob carries the planted config too
            with db.session_scope(settings) as session:
                row = Architecture(tenant_id=DEFAULT_TENANT, sha256=f"{document}{index}".ljust(64, "0"),
                                   format=fmt, name=case.label()[:200], byte_size=len(data),
                                   config=config, has_weights=True, blob_path=str(blob))
                session.add(row)
                session.flush()
                job = Job(tenant_id=DEFAULT_TENANT, kind="gradients", architecture_id=row.id,
                          parameters={"batches": 1, "batch_size": 2})
                session.add(job)
                session.flush()
                job_id = job.id
            with db.session_scope(settings) as session:
                held = repository.claim(session, job_id, "fuzz-worker", stale_before=repository.utc_cutoff(60))
            assert held is not None
            status = handlers.execute(settings, held, pool=handlers.InProcessTensorFlow())  # Keras instrumented here
            with db.session_scope(settings) as session:
                error = session.get(Job, job_id).error
            refused = _outcome(config, fuzz.markers(kinds[case.payload], tree)) == "refused"
            if refused:
                assert status == "failed" and error["code"] == "unsafe_architecture", (case.label(), error)
                statuses["refused"] += 1
            else:  # stripped: built from the sanitised config, unless stripping gutted a layer
                assert status == "succeeded" or error["code"] == "invalid_architecture", (case.label(), error)
                statuses[status] += 1
            marks = fuzz.markers(kinds[case.payload], tree)
            assert not any(mark in text for text in seen for mark in marks), case.label()
    assert statuses["refused"] and statuses["succeeded"], statuses
    assert seen, "the instrumentation saw Keras deserialise the stripped models"
    assert compiled == [] and files_loaded == [] and keras.config.floatx() == floatx
    assert list(canary_dir.iterdir()) == []
