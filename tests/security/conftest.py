"""The hostile corpus, built once per test run (base models saved in a child interpreter)."""

from __future__ import annotations

import pytest

from tests.security.corpus import Corpus, build_corpus


@pytest.fixture(scope="session")
def hostile_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("hostile"))
