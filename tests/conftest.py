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


@pytest.fixture(params=["sqlite", "postgres"])
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
