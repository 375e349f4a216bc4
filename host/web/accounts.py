"""The reference host's own people and sessions: secmod itself knows neither.

Accounts (clients and administrators, argon2 password hashes) and server-side sessions
live in their own tables (``webhost_*``), in ``[web] accounts_database_url`` or, by
default, beside secmod's tables in the same database. A host application that embeds
secmod has its own versions of both; these are the smallest real ones.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from secmod.hookspecs import Audience, User
from secmod.host.sealing import KeyRing, SealError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "Account", "AccountExists", "AccountStore", "PasswordCheck", "PasswordThrottle", "Session", "SessionStore",
    "new_csrf_token", "stored_secret",
]

# A registry of our own: these tables are the web host's, not secmod's, so they stay out of
# secmod's metadata and migrations.
_web_registry = registry()


class _WebTable(SQLModel, registry=_web_registry):
    __table__: ClassVar[sa.Table]  # set by SQLAlchemy; declared for type checkers


# INSERT ... ON CONFLICT DO UPDATE, the one statement that reserves an attempt.
_UPSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


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


class LoginAttempts(_WebTable, table=True):
    """Password attempts in the current window, per account or per client address."""

    __tablename__ = "webhost_login_attempts"

    scope: str = Field(primary_key=True, max_length=64)  # SHA-256 of "account:..." or "address:..."
    attempts: int = 0
    window_ends: float


class OneTimePassword(_WebTable, table=True):
    """An account whose password must be replaced at its next login (a table of its own:
    ``create_all`` adds tables to an existing database, never columns)."""

    __tablename__ = "webhost_one_time_password"

    account_id: int = Field(primary_key=True)
    set_at: float


class WebSecret(_WebTable, table=True):
    """A secret the web host made for itself (the session cookie key when none is configured)."""

    __tablename__ = "webhost_secret"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=255, repr=False)


def stored_secret(engine: Engine, name: str, keyring: KeyRing) -> str:
    """The secret called ``name``, made on first use and kept, so restarts keep sessions.

    Stored sealed with the host's key ring: a copy of the database alone forges nothing.
    A value kept in plain text by an older version is sealed in place.
    """
    _web_registry.metadata.create_all(engine)
    table = WebSecret.__table__
    context = f"webhost_secret:{name}"
    with engine.begin() as conn:
        stored = conn.execute(sa.select(table.c.value).where(table.c.name == name)).scalar()
        if stored is None:
            value = secrets.token_urlsafe(32)
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(name=name, value=keyring.seal(value.encode(), context=context)))
            except sa.exc.IntegrityError:  # another process made it first: use theirs
                stored = conn.execute(sa.select(table.c.value).where(table.c.name == name)).scalar_one()
        if stored is not None:
            if "$" in stored:
                value = keyring.unseal(stored, context=context).decode()
            else:
                value = stored
                conn.execute(table.update().where(table.c.name == name, table.c.value == stored)
                             .values(value=keyring.seal(value.encode(), context=context)))
    return value


class AccountExists(Exception):
    """An account with this email already exists for the audience."""


def _normalise_email(email: str) -> str:
    return email.strip().lower()


def _storable(text: str) -> bool:
    """Whether every database can hold ``text`` (PostgreSQL refuses NUL; UTF-8 lone surrogates)."""
    return "\x00" not in text and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _scope(kind: str, *parts: str) -> str:
    # Hashed: a fixed-size key whatever was typed (NUL bytes, lone surrogates, 10 kB).
    return hashlib.sha256(":".join((kind, *parts)).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The answer to a login attempt.

    :param account: set when the password was right.
    :param locked_until: set when the attempt was refused unjudged: too many recent
        attempts for this account (``scope == "account"``) or from this address.
    :param first_refusal: this is the attempt that crossed the limit (audit it once).
    """

    account: Account | None = None
    locked_until: float | None = None
    scope: str = ""
    first_refusal: bool = False


class PasswordThrottle:
    """Counts password attempts per account and per client address, exactly.

    Each attempt is reserved in one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
    statement before the password hash is looked at, so concurrent requests on any
    number of processes each see their own count and at most ``per_account`` passwords
    are ever judged per account and window. A right password gives its reservation
    back (WHMCS resets the count on success); a refused one is never judged.
    """

    def __init__(self, engine: Engine, *, per_account: int, per_address: int, window_seconds: float,
                 clock: Callable[[], float]) -> None:
        if engine.dialect.name not in _UPSERTS:
            raise ValueError(f"the web host's accounts need SQLite or PostgreSQL, not {engine.dialect.name}")
        self.engine = engine
        self.limits = {"account": per_account, "address": per_address}
        self.window_seconds = window_seconds
        self.clock = clock
        self._insert = _UPSERTS[engine.dialect.name]

    def reserve(self, audience: Audience, email: str, client_ip: str) -> tuple[dict[str, str], PasswordCheck | None]:
        """Count one attempt; returns the scopes counted and, over a limit, the refusal."""
        # The address first: one over its limit stops there, so it cannot make a row for
        # every email it invents.
        scopes = {"address": _scope("address", client_ip)} if client_ip else {}
        scopes["account"] = _scope("account", Audience(audience).value, _normalise_email(email))
        now = self.clock()
        table = LoginAttempts.__table__
        expired = table.c.window_ends <= now
        refusal: PasswordCheck | None = None
        with self.engine.begin() as conn:
            for kind, scope in scopes.items():
                statement = self._insert(table).values(scope=scope, attempts=1, window_ends=now + self.window_seconds)
                attempts, window_ends = conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=[table.c.scope],
                        set_={
                            "attempts": sa.case((expired, 1), else_=table.c.attempts + 1),
                            "window_ends": sa.case((expired, now + self.window_seconds), else_=table.c.window_ends),
                        },
                    ).returning(table.c.attempts, table.c.window_ends)
                ).one()
                if attempts == 1:  # a new window: forget the windows that are over
                    conn.execute(table.delete().where(table.c.window_ends <= now))
                limit = self.limits[kind]
                if attempts > limit:
                    refusal = PasswordCheck(locked_until=window_ends, scope=kind, first_refusal=attempts == limit + 1)
                    break
        return scopes, refusal

    def succeeded(self, scopes: dict[str, str]) -> None:
        """The password was right: the account starts again, the address gets its attempt back."""
        table = LoginAttempts.__table__
        with self.engine.begin() as conn:
            conn.execute(table.update().where(table.c.scope == scopes["account"]).values(attempts=0))
            if "address" in scopes:
                conn.execute(
                    table.update().where(table.c.scope == scopes["address"], table.c.attempts > 0)
                    .values(attempts=table.c.attempts - 1)
                )


class AccountStore:
    """Create accounts and check passwords."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time, per_account: int = 5,
                 per_address: int = 20, window_seconds: float = 15 * 60) -> None:
        self.engine = engine
        self.clock = clock
        self.hasher = PasswordHasher()
        self.throttle = PasswordThrottle(engine, per_account=per_account, per_address=per_address,
                                         window_seconds=window_seconds, clock=lambda: self.clock())
        # Checked against when the email is unknown, so a wrong email costs as long as a
        # wrong password and the timing does not tell which accounts exist.
        self._decoy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        _web_registry.metadata.create_all(engine)

    def create(self, audience: Audience, email: str, password: str, *, name: str = "", one_time: bool = False) -> Account:
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
                if one_time:
                    conn.execute(OneTimePassword.__table__.insert().values(account_id=account.id, set_at=self.clock()))
        except sa.exc.IntegrityError:
            raise AccountExists(f"An account already exists for {email}.") from None
        return account

    def set_password(self, account: Account, password: str, *, one_time: bool = False) -> None:
        """Replace the password; ``one_time`` makes its owner change it at the next login."""
        accounts, once = Account.__table__, OneTimePassword.__table__
        with self.engine.begin() as conn:
            conn.execute(accounts.update().where(accounts.c.id == account.id)
                         .values(password_hash=self.hasher.hash(password)))
            conn.execute(once.delete().where(once.c.account_id == account.id))
            if one_time:
                conn.execute(once.insert().values(account_id=account.id, set_at=self.clock()))

    def must_change_password(self, account_id: int) -> bool:
        once = OneTimePassword.__table__
        with self.engine.connect() as conn:
            return conn.execute(sa.select(once.c.account_id).where(once.c.account_id == account_id)).first() is not None

    def get(self, account_id: int, audience: Audience) -> Account | None:
        if not -(2**63) <= account_id < 2**63:
            return None  # beyond any database's integer: no such account
        table = Account.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table).where(table.c.id == account_id, table.c.audience == Audience(audience).value)
            ).first()
        return Account(**row._mapping) if row else None

    def find(self, audience: Audience, email: str) -> Account | None:
        if not _storable(email):
            return None  # no account can have it
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

    def log_in(self, audience: Audience, email: str, password: str, *, client_ip: str) -> PasswordCheck:
        """Check a password at a login form: throttled per account and per ``client_ip``.

        Over a limit the password is not looked at: the answer says until when.
        """
        scopes, refusal = self.throttle.reserve(audience, email, client_ip)
        if refusal is not None:
            return refusal
        account = self.find(audience, email)
        if not self.check_password(account, password):
            return PasswordCheck()
        self.throttle.succeeded(scopes)
        return PasswordCheck(account=account)

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
        """A new session id for the same data (after each login step: no fixation).

        The form token changes with it: one planted in the anonymous session before the
        login must not be valid after it.
        """
        if self.token is not None and self.rotated_from is None:
            self.rotated_from = self.token
        self.token = None
        self.data["csrf"] = new_csrf_token()
        self.changed = True

    def end(self) -> None:
        """Log out: the data is dropped and the id forgotten."""
        self.ended = True
        self.data = {}
        self.changed = True


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Server-side sessions: the cookie holds only a random token."""

    def __init__(self, engine: Engine, *, keyring: KeyRing, idle_seconds: float, remember_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        # Sessions hold setup and challenge tokens: sealed, a copy of the table replays nothing.
        self.keyring = keyring
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
        try:
            stored = self.keyring.unseal_json(row.data, context=f"webhost_session:{_hash(token)}")
        except (SealError, ValueError):
            return Session(token=None, data={})  # sealed by a key since removed, or tampered with
        if not isinstance(stored, dict):
            return Session(token=None, data={})
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
            token_hash = _hash(session.token)
            conn.execute(
                table.update().where(table.c.token_hash == token_hash).values(
                    data=self.keyring.seal_json({"data": session.data, "persistent": session.persistent},
                                                context=f"webhost_session:{token_hash}"),
                    expires_at=now + lifetime,
                )
            )
        return session.token
