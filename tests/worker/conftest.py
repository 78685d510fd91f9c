"""Worker tests build real Keras models: marked ``tensorflow``, run with TF_CPP_MIN_LOG_LEVEL=2."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/worker" in str(item.fspath):
            item.add_marker(pytest.mark.tensorflow)
