"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('secmod_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('module', sa.String(length=64), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('secmod_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secmod_audit_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_secmod_audit_user_id'), ['user_id'], unique=False)

    op.create_table('secmod_backup_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('code_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('used_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('secmod_backup_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secmod_backup_code_user_id'), ['user_id'], unique=False)

    op.create_table('secmod_enrolment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('module', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('audience', 'user_id', name='uq_enrolment_user')
    )
    with op.batch_alter_table('secmod_enrolment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secmod_enrolment_module'), ['module'], unique=False)

    op.create_table('secmod_pending',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('module', sa.String(length=64), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('secmod_pending', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secmod_pending_expires_at'), ['expires_at'], unique=False)

    op.create_table('secmod_throttle',
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('code_failures', sa.Integer(), nullable=False),
    sa.Column('backup_failures', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('audience', 'user_id')
    )


def downgrade() -> None:
    op.drop_table('secmod_throttle')
    with op.batch_alter_table('secmod_pending', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_secmod_pending_expires_at'))

    op.drop_table('secmod_pending')
    with op.batch_alter_table('secmod_enrolment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_secmod_enrolment_module'))

    op.drop_table('secmod_enrolment')
    with op.batch_alter_table('secmod_backup_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_secmod_backup_code_user_id'))

    op.drop_table('secmod_backup_code')
    with op.batch_alter_table('secmod_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_secmod_audit_user_id'))
        batch_op.drop_index(batch_op.f('ix_secmod_audit_at'))

    op.drop_table('secmod_audit')
