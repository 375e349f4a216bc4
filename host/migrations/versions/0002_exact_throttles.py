"""exact throttles: one budget row per key; request context in the audit log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

The per-person row with two counters becomes one row per budget (``code:``,
``backup:`` and ``address:`` keys) that an attempt is reserved on before it is judged.
Running counts and lockouts are carried over.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LOCK_SECONDS = 15 * 60  # the default; the next attempt rewrites it from the settings


def upgrade() -> None:
    op.rename_table("secmod_throttle", "secmod_throttle_0001")
    op.create_table(
        "secmod_throttle",
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("max_failures", sa.Integer(), nullable=False),
        sa.Column("lock_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    for kind, column, limit in (("code", "code_failures", 5), ("backup", "backup_failures", 3)):
        op.execute(
            "INSERT INTO secmod_throttle (key, failures, locked_until, last_at, max_failures, lock_seconds)"
            f" SELECT '{kind}:' || audience || ':' || user_id, {column}, locked_until,"
            f" COALESCE(locked_until, 0), {limit}, {_LOCK_SECONDS}"
            f" FROM secmod_throttle_0001 WHERE {column} > 0 OR locked_until IS NOT NULL"
        )
    op.drop_table("secmod_throttle_0001")
    with op.batch_alter_table("secmod_audit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_ip", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("user_agent", sa.String(length=255), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("secmod_audit", schema=None) as batch_op:
        batch_op.drop_column("user_agent")
        batch_op.drop_column("client_ip")
    op.drop_table("secmod_throttle")
    op.create_table(
        "secmod_throttle",
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("code_failures", sa.Integer(), nullable=False),
        sa.Column("backup_failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("audience", "user_id"),
    )
