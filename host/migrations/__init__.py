"""Alembic migrations for secmod's tables; ``upgrade`` brings a database to the newest."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

HERE = Path(__file__).parent


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("version_table", "secmod_alembic_version")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head() -> str:
    current = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current is None:
        raise RuntimeError("secmod's migrations have no head revision")
    return current


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": "secmod_alembic_version"}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate ``engine``'s database; a no-op (one query) when it is already current."""
    if revision == "head" and current(engine) == head():
        return
    command.upgrade(alembic_config(engine), revision)
