"""Throwaway PostgreSQL schemas, so tests sharing one database never see each other."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import sqlalchemy as sa


@contextlib.contextmanager
def postgres_schema_url(base_url: str) -> Iterator[str]:
    """A URL on ``base_url``'s database whose search_path is a fresh, empty schema."""
    schema = f"secmod_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.engine.make_url(base_url)
        options = f"-csearch_path={schema}"
        yield url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
