"""Lighter indexes on the request path: each stored analysis writes fewer index pages.

- ``architectures``: ``ix_architectures_tenant_id`` goes; the unique (tenant_id, sha256)
  constraint leads with tenant_id and serves the same lookups (a tenant's architectures, the
  tenants foreign key).
- ``jobs``: ``ix_jobs_parent_id`` keeps only the rows that have a parent (the measurements of
  an analysis); the queries ask for ``parent_id = :id``, which implies it, and an analysis or a
  training run (no parent) no longer adds an entry.
- ``storage_deltas``: the tenant's index also holds ``delta``, so the quota check's sum of a
  tenant's pending deltas reads the index alone.

Revision ID: 20261201_0005
Revises: 20261130_0004
Create Date: 2026-12-01 01:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261201_0005'
down_revision = '20261130_0004'
branch_labels = None
depends_on = None

_HAS_PARENT = sa.text('parent_id IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('architectures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_architectures_tenant_id'))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_parent_id'))
        batch_op.create_index('ix_jobs_parent_id', ['parent_id'], unique=False,
                              sqlite_where=_HAS_PARENT, postgresql_where=_HAS_PARENT)
    with op.batch_alter_table('storage_deltas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storage_deltas_tenant_id'))
        batch_op.create_index('ix_storage_deltas_tenant_delta', ['tenant_id', 'delta'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('storage_deltas', schema=None) as batch_op:
        batch_op.drop_index('ix_storage_deltas_tenant_delta')
        batch_op.create_index(batch_op.f('ix_storage_deltas_tenant_id'), ['tenant_id'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_parent_id')
        batch_op.create_index(batch_op.f('ix_jobs_parent_id'), ['parent_id'], unique=False)
    with op.batch_alter_table('architectures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_architectures_tenant_id'), ['tenant_id'], unique=False)
