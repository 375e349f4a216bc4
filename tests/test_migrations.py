"""The schema is owned by the migrations: they build exactly the tables the code uses."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from secmod.host import migrations
from secmod.host.storage import SQLModel, open_engine


def schema_drift(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "secmod_alembic_version"})
        return [diff for diff in compare_metadata(context, SQLModel.metadata)]


def test_migrations_match_the_models_on_sqlite(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'm.db'}")
    assert migrations.current(engine) == migrations.head()
    assert schema_drift(engine) == []


def test_migrations_match_the_models_on_postgresql(postgres_url):
    engine = open_engine(postgres_url)
    assert migrations.current(engine) == migrations.head()
    assert schema_drift(engine) == []
    engine.dispose()


def test_opening_a_current_database_runs_no_migration(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    open_engine(url).dispose()
    monkeypatch.setattr(migrations.command, "upgrade", lambda *a, **k: (_ for _ in ()).throw(AssertionError("upgraded")))
    open_engine(url).dispose()
