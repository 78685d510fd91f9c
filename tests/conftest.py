"""Shared fixtures: settings on SQLite (a temp file) and on the real PostgreSQL server,
and a TestClient over the full application (lifespan included: migrations run)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.config import Settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
POSTGRES_ADMIN_URL = os.environ.get(
    "CONVLENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CONVLENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TABLES = ("job_events", "jobs", "architectures", "api_keys", "tenants")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end. Never skipped:
    the server runs on this machine and in CI."""
    name = f"convlens_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        from app.db import dispose_engines

        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_settings(tmp_path: Path, database_url: str = "", **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "local_workers": 0,
        "log_json": False,
        "demo_data": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _clean_postgres(url: str) -> None:
    from app import db

    settings = Settings(database_url=url)
    db.upgrade(settings)
    with db.get_engine(settings).begin() as connection:
        connection.execute(text("TRUNCATE " + ", ".join(TABLES) + " CASCADE"))
    db.ensure_default_tenant(settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults on a temporary SQLite file, no worker subprocesses."""
    return make_settings(tmp_path)


@pytest.fixture
def pg_settings(tmp_path: Path, postgres_url: str) -> Settings:
    _clean_postgres(postgres_url)
    return make_settings(tmp_path, postgres_url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return make_settings(tmp_path)
    url = request.getfixturevalue("postgres_url")
    _clean_postgres(url)
    return make_settings(tmp_path, url)


def _client(settings: Settings) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(settings: Settings) -> Iterator[object]:
    yield from _client(settings)


@pytest.fixture
def any_client(any_settings: Settings) -> Iterator[object]:
    yield from _client(any_settings)


# --- Markers match what a test needs -------------------------------------------------------
# A test that imports TensorFlow or Keras (itself, through a fixture, or through the code it
# calls in this process) must be marked ``tensorflow``, so that ``-m "not tensorflow"`` runs
# without them; a test module must not import them when it is collected. Checked on every
# test that runs while they are not yet imported (all of them under ``-m "not tensorflow"``).

HEAVY_MODULES = ("tensorflow", "keras", "tf_keras")
_HEAVY_BEFORE = pytest.StashKey[tuple[str, ...]]()


def heavy_modules_loaded() -> tuple[str, ...]:
    """The TensorFlow/Keras top-level modules imported in this process so far."""
    import sys

    return tuple(name for name in HEAVY_MODULES if name in sys.modules)


def _unmarked_heavy_import(item: pytest.Item) -> str | None:
    if item.get_closest_marker("tensorflow") is not None:
        return None
    before = item.stash.get(_HEAVY_BEFORE, ())
    loaded = [name for name in heavy_modules_loaded() if name not in before]
    if not loaded:
        return None
    return (
        f"{item.nodeid} imported {', '.join(loaded)} but is not marked tensorflow: mark it "
        "@pytest.mark.tensorflow, or keep it off TensorFlow (stored configs, app/analysis)"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item):  # type: ignore[no-untyped-def]
    item.stash[_HEAVY_BEFORE] = heavy_modules_loaded()
    result = yield
    if problem := _unmarked_heavy_import(item):
        pytest.fail(problem, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    result = yield
    if problem := _unmarked_heavy_import(item):
        pytest.fail(problem, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    before = heavy_modules_loaded()
    report = yield
    loaded = [name for name in heavy_modules_loaded() if name not in before]
    if loaded and isinstance(collector, pytest.Module) and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{collector.nodeid} imports {', '.join(loaded)} when collected: import it inside the tests "
            "marked tensorflow, so that -m 'not tensorflow' runs without TensorFlow"
        )
    return report


def _needs_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return "postgres_url" in getattr(item, "fixturenames", ()) or (
        callspec is not None and "postgres" in callspec.params.values()
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that runs against PostgreSQL (its fixtures or a ``postgres`` parameter) is marked
    ``postgres``, so that ``-m "not postgres"`` runs without the server."""
    unmarked = [item.nodeid for item in items if _needs_postgres(item) and item.get_closest_marker("postgres") is None]
    if unmarked:
        raise pytest.UsageError(
            "tests that use PostgreSQL without the postgres marker: " + ", ".join(unmarked[:10])
        )


# --- Every report the suite produces matches the typed schema ------------------------------
# The engine's reports and the measured gradient flow (measured by the worker tests), as
# this process produces them, are validated against app.analysis.schema with extra
# fields forbidden: a change to the report that the schema does not describe fails the test
# that produced it.


def _validating(function, validate):  # type: ignore[no-untyped-def]
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        value = function(*args, **kwargs)
        validate(value)
        return value

    wrapper.__validated__ = True  # type: ignore[attr-defined]
    return wrapper


def _validate_measured(measured: object) -> None:
    from app.analysis.schema import MeasuredGradientFlow

    MeasuredGradientFlow.model_validate(measured)


def _validate_training(result: object) -> None:
    from app.training.results import TrainingResult

    TrainingResult.model_validate(result)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens", action="store_true", default=False,
        help="rewrite the golden reports (tests/fixtures/**/*.report.json) from the engine; "
        "review the diff before committing",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Wrap the report builder, the gradient measurement and the training run before any test
    module imports them (none of these imports loads TensorFlow)."""
    from app.analysis import report as report_module
    from app.analysis.schema import validate_report
    from app.worker import gradients, training

    if not getattr(report_module.build_report, "__validated__", False):
        report_module.build_report = _validating(report_module.build_report, validate_report)
    if not getattr(gradients.measure, "__validated__", False):
        gradients.measure = _validating(gradients.measure, _validate_measured)
    if not getattr(training.run_training, "__validated__", False):
        training.run_training = _validating(training.run_training, _validate_training)
