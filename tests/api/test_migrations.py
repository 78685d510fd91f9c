"""Migrations: upgrade to head matches the models exactly, and downgrade/upgrade round-trips,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app import db
from app.models import Base


def test_models_and_migrations_agree(any_settings) -> None:
    db.upgrade(any_settings)
    with db.get_engine(any_settings).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], diff


def test_downgrade_and_upgrade_round_trip(any_settings) -> None:
    db.upgrade(any_settings)
    db.downgrade(any_settings, "base")
    assert db.migration_state(any_settings)[0] is None
    db.upgrade(any_settings)
    current, head = db.migration_state(any_settings)
    assert current == head is not None
