"""Database engine, sessions and migrations (SQLAlchemy 2 + Alembic).

SQLite (the embedded default) runs in WAL mode with a busy timeout so that the API
and the local worker processes can share the file. Every call is bounded by
``settings.database_timeout_s`` (PostgreSQL ``statement_timeout``/``lock_timeout``, the SQLite
busy timeout, the wait for a pooled connection) and new connections by
``database_connect_timeout_s``, so a request never hangs on the database.

Example::

    with session_scope(settings) as session:
        session.add(obj)          # committed when the block ends, rolled back on error
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    return apply


def get_engine(settings: Settings) -> Engine:
    """One engine per database URL (and timeouts) and process."""
    url = settings.database_url
    key = _key(settings)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            timeout_s = settings.database_timeout_s
            if url.startswith("sqlite"):
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                engine = create_engine(
                    url,
                    connect_args={"check_same_thread": False, "timeout": timeout_s},
                    pool_size=20,
                    max_overflow=20,
                    pool_timeout=timeout_s,
                )
                event.listen(engine, "connect", _sqlite_pragmas(int(timeout_s * 1000)))
            else:
                timeout_ms = int(timeout_s * 1000)
                engine = create_engine(
                    url,
                    pool_pre_ping=True,
                    pool_size=10,
                    max_overflow=20,
                    pool_timeout=timeout_s,
                    connect_args={
                        "connect_timeout": max(1, math.ceil(settings.database_connect_timeout_s)),
                        "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
                    },
                )
            _engines[key] = engine
        return engine


def get_sessionmaker(settings: Settings) -> sessionmaker[Session]:
    key = _key(settings)
    with _lock:
        maker = _sessionmakers.get(key)
    if maker is None:
        maker = sessionmaker(bind=get_engine(settings), expire_on_commit=False)
        with _lock:
            _sessionmakers[key] = maker
    return maker


def _key(settings: Settings) -> str:
    return f"{settings.database_url}|{settings.database_timeout_s}|{settings.database_connect_timeout_s}"


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back on any error."""
    session = get_sessionmaker(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close every pooled connection (tests, and before a process forks)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _sessionmakers.clear()


# -- migrations ----------------------------------------------------------------


def alembic_config(settings: Settings) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to ``revision`` (``convlens db upgrade``; on start in embedded mode)."""
    from alembic import command

    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = alembic_config(settings)
    with get_engine(settings).begin() as connection:
        if connection.dialect.name == "postgresql":  # a migration may take longer than a request
            connection.execute(text("SET LOCAL statement_timeout = 0"))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    ensure_default_tenant(settings)


def downgrade(settings: Settings, revision: str) -> None:
    from alembic import command

    config = alembic_config(settings)
    with get_engine(settings).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def migration_state(settings: Settings) -> tuple[str | None, str | None]:
    """(current revision of the database, head revision of the code)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(settings))
    head = script.get_current_head()
    with get_engine(settings).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


def ensure_default_tenant(settings: Settings) -> None:
    from sqlalchemy.exc import IntegrityError

    from app.models import DEFAULT_TENANT, Tenant

    with session_scope(settings) as session:
        if session.scalar(select(Tenant).where(Tenant.id == DEFAULT_TENANT)) is not None:
            return
    try:
        with session_scope(settings) as session:
            session.add(Tenant(id=DEFAULT_TENANT, name=DEFAULT_TENANT))
    except IntegrityError:
        pass  # created concurrently by another process
