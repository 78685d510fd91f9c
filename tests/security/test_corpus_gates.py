"""Every hostile case is stopped by the gate it targets, with its stable code; nothing runs."""

from __future__ import annotations

from collections import Counter

import pytest

from app.config import Settings
from tests.security.corpus import STAGES, Corpus
from tests.security.gates import first_refusal

REQUIRED_CASES = {
    # the attack families the service must withstand, at least one case each
    "lambda_marshal_json", "lambda_marshal_keras", "lambda_marshal_h5",
    "os_system_activation_json", "subprocess_popen_layer_json",
    "enable_unsafe_then_lambda_keras", "get_file_gadget_keras", "load_model_gadget_keras",
    "tfsm_layer_keras", "string_lookup_path_json", "h5_external_storage", "h5_external_link",
    "h5_soft_link", "h5_virtual_dataset", "h5_shape_bomb", "zip_bomb_member",
    "zip_traversal_member", "zip_duplicate_config", "keras_named_h5", "zip_truncated",
    "deep_json_object", "ten_thousand_digits", "nan_literal", "dense_2_31_units",
    "params_bomb_report",
}


def test_corpus_covers_every_attack_family(hostile_corpus: Corpus) -> None:
    names = {case.name for case in hostile_corpus.cases}
    assert REQUIRED_CASES <= names, REQUIRED_CASES - names
    assert set(Counter(case.stage for case in hostile_corpus.cases)) == set(STAGES)
    assert sum(case.carries_code for case in hostile_corpus.cases) >= 20


def test_every_case_is_refused_by_its_gate_with_its_code(hostile_corpus: Corpus,
                                                          tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    failures = []
    for case in hostile_corpus.cases:
        outcome = first_refusal(case.data, case.filename, settings)
        if outcome is None:
            failures.append(f"{case.name}: accepted")
            continue
        stage, error = outcome
        if (stage, error.status, error.code) != (case.stage, case.status, case.code):
            failures.append(f"{case.name}: expected {case.stage}/{case.status}/{case.code}, got "
                            f"{stage}/{error.status}/{error.code}: {error.detail[:200]}")
        if not error.detail or "Traceback" in error.detail:
            failures.append(f"{case.name}: no readable message")
    assert not failures, "\n".join(failures)
    assert hostile_corpus.canaries() == []


def test_unsafe_answers_name_the_layer_and_the_reason(hostile_corpus: Corpus, tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    by_name = {case.name: case for case in hostile_corpus.cases}
    expectations = {
        "lambda_marshal_json": ("payload", "Lambda"),
        "lambda_marshal_tf_keras_h5": ("payload", "Lambda"),
        "os_system_activation_json": ("conv", "os.system"),
        "tfsm_layer_keras": ("tfsm", "TFSMLayer"),
        "string_lookup_path_json": ("lookup", "/etc/passwd"),
        "tf_op_write_file_json": ("tf.math.multiply", "io.write_file"),
        "get_file_gadget_keras": ("head", "get_file"),
        # two payloads: the gate walks in document order and names the first (the __lambda__
        # regularizer of 'gap'; the enable_unsafe call kwarg of 'head' comes later)
        "enable_unsafe_public_api_json": ("gap", "__lambda__"),
    }
    for name, (layer, reason_part) in expectations.items():
        outcome = first_refusal(by_name[name].data, by_name[name].filename, settings,
                                with_engine=False)
        assert outcome is not None, name
        problem = outcome[1].to_problem()
        assert problem["code"] == "unsafe_architecture"
        assert problem["layer"] == layer, (name, problem)
        assert reason_part in problem["reason"], (name, problem)
        assert layer in problem["detail"] and "Received" in problem["detail"]


def test_benign_originals_pass_every_gate(hostile_corpus: Corpus, tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    for filename, data in hostile_corpus.benign().items():
        assert first_refusal(data, filename, settings) is None, filename


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_has_cases(hostile_corpus: Corpus, stage: str) -> None:
    assert any(case.stage == stage for case in hostile_corpus.cases)
