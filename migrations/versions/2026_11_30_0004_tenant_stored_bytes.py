"""tenants.stored_bytes: the bytes of a tenant's architectures, kept as they are added and deleted

Revision ID: 20261130_0004
Revises: 20261130_0003
Create Date: 2026-11-30 01:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261130_0004'
down_revision = '20261130_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stored_bytes', sa.BigInteger(), nullable=False, server_default='0'))
    op.execute(
        "UPDATE tenants SET stored_bytes = "
        "(SELECT COALESCE(SUM(byte_size), 0) FROM architectures WHERE architectures.tenant_id = tenants.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('stored_bytes')
