"""Alembic environment: runs against the engine the host hands over."""

from alembic import context
from secmod.host import storage
from secmod.host.read_deadline import without_deadline

config = context.config
engine = config.attributes["engine"]

# A migration may rewrite or index a big table: it is not held to a login's deadlines.
with without_deadline(engine).begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    context.configure(
        connection=connection,
        target_metadata=storage.SQLModel.metadata,
        version_table="secmod_alembic_version",
        render_as_batch=True,  # SQLite needs batch mode to alter tables
    )
    with context.begin_transaction():
        context.run_migrations()
