"""tenants.stored_bytes and storage_deltas: the bytes of a tenant's architectures, kept as they
are added and deleted

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
    op.create_table('storage_deltas',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('delta', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                            name=op.f('fk_storage_deltas_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_storage_deltas')),
    )
    with op.batch_alter_table('storage_deltas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storage_deltas_tenant_id'), ['tenant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('storage_deltas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storage_deltas_tenant_id'))
    op.drop_table('storage_deltas')
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('stored_bytes')
