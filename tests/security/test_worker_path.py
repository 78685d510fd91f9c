"""The worker path: Keras (safe_mode=True) is reached only by configs the validator accepted.

Every code-bearing case goes through what the service does before a job ever sees a config
(ingestion, validator, static limits) and then the worker's loader; Keras's deserialiser and
``keras.saving.load_model`` are instrumented and must never be called for those cases. A
benign model through the same path does reach them (the instrumentation works).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from tests.security.corpus import Corpus
from tests.security.gates import first_refusal

pytestmark = pytest.mark.tensorflow


@pytest.fixture
def keras_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import keras
    from keras.src.saving import serialization_lib

    calls: list[str] = []

    def record(name: str, original):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append(name)
            return original(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(serialization_lib, "deserialize_keras_object",
                        record("deserialize_keras_object",
                               serialization_lib.deserialize_keras_object))
    monkeypatch.setattr(keras.saving, "load_model",
                        record("load_model", keras.saving.load_model))
    return calls


def _worker_path(data: bytes, filename: str, settings: Settings, blob_dir: Path):
    """Gates first, then the worker loader exactly as a job would call it."""
    from app.ingest import ingest_bytes
    from app.worker.loader import load_model

    refusal = first_refusal(data, filename, settings, with_engine=False)
    if refusal is not None:
        return refusal
    ingested = ingest_bytes(data, filename=filename, settings=settings)
    blob = None
    if ingested.format != "json":
        blob = blob_dir / f"{ingested.sha256}.{ingested.format}"
        blob.write_bytes(data)
    return load_model(ingested.config, blob, ingested.format)


def test_code_bearing_cases_are_refused_before_any_keras_call(
        hostile_corpus: Corpus, keras_calls: list[str], tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    code_cases = [case for case in hostile_corpus.cases if case.carries_code]
    assert len(code_cases) >= 20
    for case in code_cases:
        outcome = _worker_path(case.data, case.filename, settings, tmp_path)
        assert isinstance(outcome, tuple), f"{case.name} reached Keras and built {outcome!r}"
        stage, error = outcome
        assert stage in {"ingest", "validate"}, (case.name, stage)
        assert (error.status, error.code) == (case.status, case.code), (case.name, error.detail)
        assert keras_calls == [], (case.name, keras_calls)
        assert hostile_corpus.canaries() == [], case.name


def test_benign_models_do_reach_keras_through_the_same_path(
        hostile_corpus: Corpus, keras_calls: list[str], tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    for filename, data in hostile_corpus.benign().items():
        if filename == "tf_keras.json":
            continue  # TFOpLambda: Keras 3 has no such layer; the engine reads it statically
        keras_calls.clear()
        model = _worker_path(data, filename, settings, tmp_path)
        assert not isinstance(model, tuple), (filename, model)
        assert model.count_params() > 0
        assert keras_calls, filename  # the instrumentation sees Keras being used


def test_keras_safe_mode_alone_is_not_the_defence(hostile_corpus: Corpus, tmp_path: Path) -> None:
    """Without the gate, Keras itself parses the hostile archive: the validator must come first.

    The duplicate-config archive hides the Lambda config behind a benign one; Keras reads the
    last member and only its own safe mode stands between the payload and execution."""
    import keras

    case = next(c for c in hostile_corpus.cases if c.name == "zip_duplicate_config")
    path = tmp_path / "dup.keras"
    path.write_bytes(case.data)
    with pytest.raises(Exception, match="(?i)lambda|unsafe|safe_mode"):
        keras.saving.load_model(path, safe_mode=True, compile=False)
    assert hostile_corpus.canaries() == []
