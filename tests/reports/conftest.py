"""Reports built by the real engine from the stored fixtures (Keras truth alongside)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.load import load_config, load_expected

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SEED = FIXTURES / "seed"
APPLICATIONS = FIXTURES / "applications"


def seed_config(number: int) -> dict[str, Any]:
    return load_config(SEED / f"example{number}.json")


def seed_expected(number: int) -> dict[str, Any]:
    return load_expected(SEED / f"example{number}.expected.json")


def engine_report(config: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    from app.analysis import analyze

    return analyze(config, **kwargs)


@pytest.fixture(scope="session")
def seed_reports() -> dict[int, dict[str, Any]]:
    """The engine's reports of the seed's three examples (Keras 3 JSON)."""
    return {number: engine_report(seed_config(number)) for number in (1, 2, 3)}


@pytest.fixture(scope="session")
def resnet50_report() -> dict[str, Any]:
    return engine_report(load_config(APPLICATIONS / "resnet50.json.gz"))


def rename_layer(config: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A copy of a Keras 3 functional config with one layer renamed everywhere it is referenced."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return new if value == old else value

    return walk(copy.deepcopy(config))
