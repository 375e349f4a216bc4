"""The reference host's own people and sessions: secmod itself knows neither.

Accounts (clients and administrators, argon2 password hashes) and server-side sessions
live in their own tables (``webhost_*``), in ``[web] accounts_database_url`` or, by
default, beside secmod's tables in the same database. A host application that embeds
secmod has its own versions of both; these are the smallest real ones.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from secmod.hookspecs import Audience, User
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = ["Account", "AccountExists", "AccountStore", "Session", "SessionStore", "stored_secret"]

# A registry of our own: these tables are the web host's, not secmod's, so they stay out of
# secmod's metadata and migrations.
_web_registry = registry()


class _WebTable(SQLModel, registry=_web_registry):
    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers


class Account(_WebTable, table=True):
    """A person who can log in to the reference host: a client or an administrator."""

    __tablename__ = "webhost_account"
    __table_args__ = (sa.UniqueConstraint("audience", "email"),)

    id: int | None = Field(default=None, primary_key=True)
    audience: str = Field(max_length=16)
    email: str = Field(max_length=255)
    name: str = Field(default="", max_length=255)
    password_hash: str = Field(max_length=255, repr=False)
    created_at: float

    def as_user(self) -> User:
        """The person as secmod sees them: an id, an audience and a label."""
        return User(id=str(self.id), audience=Audience(self.audience), email=self.email, name=self.name)


class StoredSession(_WebTable, table=True):
    """A session, found by the SHA-256 of its cookie token (a leaked table cannot be replayed)."""

    __tablename__ = "webhost_session"

    token_hash: str = Field(primary_key=True, max_length=64)
    data: str
    expires_at: float = Field(index=True)


class WebSecret(_WebTable, table=True):
    """A secret the web host made for itself (the session cookie key when none is configured)."""

    __tablename__ = "webhost_secret"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=255, repr=False)


def stored_secret(engine: Engine, name: str) -> str:
    """The secret called ``name``, made on first use and kept, so restarts keep sessions."""
    _web_registry.metadata.create_all(engine)
    table = WebSecret.__table__
    with engine.begin() as conn:
        value = conn.execute(sa.select(table.c.value).where(table.c.name == name)).scalar()
        if value is None:
            value = secrets.token_urlsafe(32)
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(name=name, value=value))
            except sa.exc.IntegrityError:  # another process made it first: use theirs
                value = conn.execute(sa.select(table.c.value).where(table.c.name == name)).scalar_one()
    return value


class AccountExists(Exception):
    """An account with this email already exists for the audience."""


def _normalise_email(email: str) -> str:
    return email.strip().lower()


class AccountStore:
    """Create accounts and check passwords."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self.hasher = PasswordHasher()
        # Checked against when the email is unknown, so a wrong email costs as long as a
        # wrong password and the timing does not tell which accounts exist.
        self._decoy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        _web_registry.metadata.create_all(engine)

    def create(self, audience: Audience, email: str, password: str, *, name: str = "") -> Account:
        email = _normalise_email(email)
        account = Account(
            audience=Audience(audience).value, email=email, name=name.strip(),
            password_hash=self.hasher.hash(password), created_at=self.clock(),
        )
        table = Account.__table__
        try:
            with self.engine.begin() as conn:
                account.id = conn.execute(
                    table.insert().values(**account.model_dump(exclude={"id"})).returning(table.c.id)
                ).scalar_one()
        except sa.exc.IntegrityError:
            raise AccountExists(f"An account already exists for {email}.") from None
        return account

    def get(self, account_id: int, audience: Audience) -> Account | None:
        table = Account.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table).where(table.c.id == account_id, table.c.audience == Audience(audience).value)
            ).first()
        return Account(**row._mapping) if row else None

    def find(self, audience: Audience, email: str) -> Account | None:
        table = Account.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table).where(table.c.audience == Audience(audience).value,
                                       table.c.email == _normalise_email(email))
            ).first()
        return Account(**row._mapping) if row else None

    def list(self, audience: Audience) -> list[Account]:
        table = Account.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.audience == Audience(audience).value).order_by(table.c.id)
            ).all()
        return [Account(**row._mapping) for row in rows]

    def count(self, audience: Audience) -> int:
        table = Account.__table__
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).where(table.c.audience == Audience(audience).value)
            ).scalar_one()

    def authenticate(self, audience: Audience, email: str, password: str) -> Account | None:
        """The account when the password is right, else ``None``."""
        account = self.find(audience, email)
        return account if self.check_password(account, password) else None

    def check_password(self, account: Account | None, password: str) -> bool:
        try:
            self.hasher.verify(account.password_hash if account else self._decoy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return account is not None


@dataclass
class Session:
    """One browser's session: a dict of plain JSON values, saved after the response."""

    token: str | None
    data: dict[str, Any]
    persistent: bool = False
    changed: bool = False
    rotated_from: str | None = None
    ended: bool = False

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.changed = True

    def pop(self, key: str, default: Any = None) -> Any:
        self.changed = True
        return self.data.pop(key, default)

    def rotate(self) -> None:
        """A new session id for the same data (after each login step: no fixation)."""
        if self.token is not None and self.rotated_from is None:
            self.rotated_from = self.token
        self.token = None
        self.changed = True

    def end(self) -> None:
        """Log out: the data is dropped and the id forgotten."""
        self.ended = True
        self.data = {}
        self.changed = True


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Server-side sessions: the cookie holds only a random token."""

    def __init__(self, engine: Engine, *, idle_seconds: float, remember_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.idle_seconds = idle_seconds
        self.remember_seconds = remember_seconds
        self.clock = clock
        _web_registry.metadata.create_all(engine)

    def load(self, token: str | None) -> Session:
        if not token:
            return Session(token=None, data={})
        table = StoredSession.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table.c.data, table.c.expires_at).where(table.c.token_hash == _hash(token))
            ).first()
        if row is None or row.expires_at <= self.clock():
            return Session(token=None, data={})
        stored = json.loads(row.data)
        return Session(token=token, data=stored["data"], persistent=stored.get("persistent", False))

    def save(self, session: Session) -> str | None:
        """Write the session (when changed); returns the token to set, or ``None`` if ended."""
        table = StoredSession.__table__
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.expires_at <= now))
            for old in {session.rotated_from, session.token if session.ended else None}:
                if old is None:
                    continue
                conn.execute(table.delete().where(table.c.token_hash == _hash(old)))
            if session.ended:
                return None
            if session.token is None:
                session.token = secrets.token_urlsafe(32)
                conn.execute(table.insert().values(token_hash=_hash(session.token), data="{}", expires_at=now))
            lifetime = self.remember_seconds if session.persistent else self.idle_seconds
            conn.execute(
                table.update().where(table.c.token_hash == _hash(session.token)).values(
                    data=json.dumps({"data": session.data, "persistent": session.persistent}),
                    expires_at=now + lifetime,
                )
            )
        return session.token
