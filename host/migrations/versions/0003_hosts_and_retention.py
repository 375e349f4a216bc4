"""hosts sharing the database (settings fingerprints); index for purging used backup codes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secmod_host",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("secmod_backup_code", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_secmod_backup_code_used_at"), ["used_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("secmod_backup_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secmod_backup_code_used_at"))
    op.drop_table("secmod_host")
