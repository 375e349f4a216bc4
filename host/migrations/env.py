"""Alembic environment: runs against the engine the host hands over."""

from alembic import context
from secmod.host import storage

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=storage.SQLModel.metadata,
        version_table="secmod_alembic_version",
        render_as_batch=True,  # SQLite needs batch mode to alter tables
    )
    with context.begin_transaction():
        context.run_migrations()
