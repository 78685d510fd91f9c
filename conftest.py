"""Doctests: every docstring example in ``app/`` runs as part of the suite.

``python -m pytest`` collects ``tests/`` and ``app/`` (``testpaths``); the modules of
``app/`` are collected for their doctests only (``--doctest-modules`` would also import every
helper module under ``tests/``). Docstring examples see ``report`` (the seed's Example 3),
``report_1`` and ``report_2`` (Examples 1 and 2), as the engine reports them. An example
whose every line is ``# doctest: +SKIP`` (the worker's, which need TensorFlow and a model) is
an illustration, not a test: it is left out instead of counted as skipped.
"""

from __future__ import annotations

import doctest
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from _pytest.doctest import DoctestItem, DoctestModule

APP = Path(__file__).resolve().parent / "app"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".py" and file_path.is_relative_to(APP):
        return DoctestModule.from_parent(parent, path=file_path)  # type: ignore[no-any-return]
    return None


def _all_skipped(item: DoctestItem) -> bool:
    examples = item.dtest.examples if item.dtest is not None else []
    return bool(examples) and all(example.options.get(doctest.SKIP) for example in examples)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    illustrations = [item for item in items if isinstance(item, DoctestItem) and _all_skipped(item)]
    if illustrations:
        config.hook.pytest_deselected(items=illustrations)
        items[:] = [item for item in items if item not in illustrations]


@cache
def _seed_reports() -> dict[str, Any]:
    from app.analysis import analyze
    from app.api.docs import seed_config

    return {
        "report": analyze(seed_config("example3")),
        "report_1": analyze(seed_config("example1")),
        "report_2": analyze(seed_config("example2")),
    }


@pytest.fixture(autouse=True)
def _doctest_reports(request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, DoctestItem):
        request.getfixturevalue("doctest_namespace").update(_seed_reports())
