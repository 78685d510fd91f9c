"""Every hostile case POSTed to /v1/analyses: a 4xx problem+json with the case's stable code,
no canary, no rows written, the service still healthy, and a benign request right after."""

from __future__ import annotations

import json

from tests.api.helpers import assert_problem, row_counts, upload
from tests.security.corpus import Corpus

BODY_STAGES = {"validate", "limits", "report"}  # cases whose content is well-formed JSON


def _check_refused(client, settings, corpus: Corpus, response, case, variant: str,
                   before: dict[str, int]) -> list[str]:
    problems: list[str] = []
    try:
        body = assert_problem(response, case.status, case.code)
        if case.code == "unsafe_architecture":
            assert body.get("reason"), body
    except AssertionError as exc:
        problems.append(f"{case.name} ({variant}): {exc}")
    if row_counts(settings) != before:
        problems.append(f"{case.name} ({variant}): rows written {before} -> {row_counts(settings)}")
    if corpus.canaries():
        problems.append(f"{case.name} ({variant}): canary written {corpus.canaries()}")
    health = client.get("/healthz")
    if health.status_code != 200:
        problems.append(f"{case.name} ({variant}): /healthz answered {health.status_code}")
    return problems


def test_every_hostile_case_over_http(any_client, any_settings, hostile_corpus: Corpus) -> None:
    client, settings = any_client, any_settings
    benign = hostile_corpus.benign()["base.json"]
    failures: list[str] = []
    for case in hostile_corpus.cases:
        before = row_counts(settings)
        response = upload(client, case.data, case.filename)
        failures += _check_refused(client, settings, hostile_corpus, response, case, "multipart",
                                   before)
        if case.filename.endswith(".json") and case.stage in BODY_STAGES:
            response = client.post(
                "/v1/analyses", content=b'{"architecture": ' + case.data + b"}",
                headers={"content-type": "application/json"})
            failures += _check_refused(client, settings, hostile_corpus, response, case,
                                       "json body", before)
        after = client.post("/v1/analyses", json={"architecture": json.loads(benign)})
        if after.status_code != 201:
            failures.append(f"{case.name}: the benign request after it got {after.status_code}: "
                            f"{after.text[:300]}")
    assert not failures, "\n".join(failures)


def test_benign_originals_are_accepted_over_http(client, hostile_corpus: Corpus) -> None:
    for filename, data in hostile_corpus.benign().items():
        response = upload(client, data, filename)
        assert response.status_code == 201, (filename, response.text[:500])
        report = response.json()["report"]
        assert report["summary"]["total_params"] > 0
