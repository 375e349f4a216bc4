"""Tables and the database engine.

SQLite (WAL) by default, any SQLAlchemy URL otherwise; PostgreSQL lets several host
processes share one state. The schema is owned by the Alembic migrations in
``host/migrations``; :func:`open_engine` brings a database to the newest revision.
Module state, pending steps and backup-code hashes are stored sealed or hashed only.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from .errors import StoreUnavailable
from .read_deadline import watch_statements

__all__ = ["AuditEvent", "BackupCode", "Enrolment", "HostRecord", "PendingStep", "Throttle", "open_engine"]

log = logging.getLogger("secmod.host")


class Enrolment(SQLModel, table=True):
    """One person's second factor: module name and sealed, versioned module state."""

    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers
    __tablename__ = "secmod_enrolment"
    __table_args__ = (sa.UniqueConstraint("audience", "user_id", name="uq_enrolment_user"),)

    id: int | None = Field(default=None, primary_key=True)
    audience: str = Field(max_length=16)
    user_id: str = Field(max_length=255)
    module: str = Field(max_length=64, index=True)
    state: str = Field(sa_type=sa.Text, repr=False)
    version: int = 1
    created_at: float
    updated_at: float


class PendingStep(SQLModel, table=True):
    """An enrolment step or a login challenge waiting for its answer, sealed, expiring."""

    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers
    __tablename__ = "secmod_pending"

    id: str = Field(primary_key=True, max_length=64)  # SHA-256 of the token the person holds
    kind: str = Field(max_length=16)  # "setup" or "challenge"
    audience: str = Field(max_length=16)
    user_id: str = Field(max_length=255)
    module: str = Field(max_length=64)
    data: str = Field(sa_type=sa.Text, repr=False)
    expires_at: float = Field(index=True)


class BackupCode(SQLModel, table=True):
    """A one-use backup code, stored only as a salted scrypt hash."""

    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers
    __tablename__ = "secmod_backup_code"

    id: int | None = Field(default=None, primary_key=True)
    audience: str = Field(max_length=16)
    user_id: str = Field(max_length=255, index=True)
    code_hash: str = Field(max_length=255, repr=False)
    created_at: float
    used_at: float | None = Field(default=None, index=True)


class Throttle(SQLModel, table=True):
    """A failure budget: per person and kind (``code:``/``backup:``) or per client address.

    ``max_failures`` and ``lock_seconds`` are the policy the last attempt was counted
    under; the reservation statement reads them from its own row (see ``host/store.py``).
    """

    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers
    __tablename__ = "secmod_throttle"

    key: str = Field(primary_key=True, max_length=320)
    failures: int = 0
    locked_until: float | None = None
    last_at: float = 0.0
    max_failures: int = 0
    lock_seconds: float = 0.0


class AuditEvent(SQLModel, table=True):
    """One decision. Holds reasons and names, never a code or a secret."""

    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers
    __tablename__ = "secmod_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    audience: str = Field(max_length=16)
    user_id: str = Field(max_length=255, index=True)
    module: str = Field(default="", max_length=64)
    event: str = Field(max_length=32)  # enrol, verify, lockout, recover, disable, ...
    outcome: str = Field(max_length=16)  # ok, fail, info
    reason: str = Field(default="", max_length=64)
    actor: str = Field(default="", max_length=255)
    detail: str = Field(default="", max_length=500)
    client_ip: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=255)


class HostRecord(SQLModel, table=True):
    """A host sharing this database, with a digest of its effective settings (host/fleet.py)."""

    __tablename__ = "secmod_host"
    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers

    name: str = Field(primary_key=True, max_length=255)  # machine, or machine:port for a web host
    fingerprint: str = Field(max_length=64)
    seen_at: float


# How long a SQLite writer waits for another to finish before giving up.
SQLITE_BUSY_SECONDS = 30


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; NORMAL is durable in WAL across
    # application crashes, which is the failure that matters for a login service.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _create_private(database: Path) -> None:
    """Create the SQLite file readable by its owner only, before SQLite does (0644).

    SQLite gives the -wal and -shm files it makes later the database file's mode.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# A database that is down or stalled must become a clear refusal within seconds, not a
# hung login page: bounded connect, statement and pool waits, and a client-side deadline
# for a server that stops answering (host/read_deadline.py). No pre-ping: it would cost a
# round trip per checkout; a dead connection fails its statement instead, SQLAlchemy then
# drops the whole pool, and the next request connects afresh.
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_SECONDS = 10.0  # [database_timeout_seconds]
POOL_WAIT_SECONDS = 5
# The client waits a little longer than the server, so that a statement that is merely
# slow ends with the server's own timeout and its connection stays usable.
CLIENT_GRACE_SECONDS = 1.0


# Every statement of secmod's is a lookup by key, and psycopg prepares the hot ones, so a
# generic plan is made once per connection and kept until the table is next analyzed. On
# a young table (a new install, or one the bench fills) the planner's default page costs
# chose whole-table scans of secmod_throttle for the reset after an accepted code, plans
# that then scanned every row on every verify as the table grew, until autovacuum got
# round to it: about 110 µs a verify at 2,000 rows. 1.1 is the figure commonly used for
# SSDs; an operator's own ``options`` in the URL still win.
_PLANNER_OPTIONS = "-c random_page_cost=1.1"


def _postgresql_session(url: str, statement_timeout_seconds: float) -> dict[str, object]:
    options = sa.engine.make_url(url).query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    milliseconds = round(statement_timeout_seconds * 1000)
    return {
        "connect_timeout": max(2, min(CONNECT_TIMEOUT_SECONDS, round(statement_timeout_seconds))),  # libpq: 2 at least
        "options": f"{_PLANNER_OPTIONS} {options} -c statement_timeout={milliseconds}".replace("  ", " "),
    }


def open_engine(url: str, *, migrate: bool = True, timeout_seconds: float = STATEMENT_TIMEOUT_SECONDS) -> Engine:
    """An engine for ``url`` with the schema at the newest migration; on PostgreSQL no
    statement waits longer than about ``timeout_seconds``, even on a server that froze."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            _create_private(Path(database))
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(url, pool_timeout=min(POOL_WAIT_SECONDS, timeout_seconds),
                                  connect_args=_postgresql_session(url, timeout_seconds))
        watch_statements(engine, timeout_seconds + CLIENT_GRACE_SECONDS)
    if migrate:
        from .migrations import upgrade

        try:
            upgrade(engine)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
            # The first contact with the database: say it cannot be reached, in one line
            # (the driver's first line names host and port, never a password).
            engine.dispose()
            cause = str(getattr(error, "orig", None) or type(error).__name__).strip().splitlines()
            raise StoreUnavailable(f"the database cannot be reached ({(cause or ['?'])[0][:200]})") from None
    return engine
