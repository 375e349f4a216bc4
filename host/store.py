"""All of secmod's SQL: enrolments, pending steps, backup codes, throttles and the audit log.

The Host decides; the Store remembers. Every guarantee that needs the database to be
atomic lives here, in one statement where it can be:

- **Reserve before judging.** An attempt is counted as a failure *before* the module
  sees it (:meth:`Store.begin_attempt`), in one ``INSERT ... ON CONFLICT DO UPDATE ...
  RETURNING`` that also refuses once the budget is spent. However many requests race,
  at most ``max_failures`` answers are ever judged per window. A right answer then
  gives its reservation back (:meth:`Store.settle_accepted`), a wrong one has already
  paid, and one the person is not to blame for is released (:meth:`Store.release`). A
  process that dies mid-judgement leaves its reservation counted: it fails closed.
- **Compare-and-set.** Accepted module state is written only over the version that was
  judged, so one code is accepted once.

On PostgreSQL the hot path is two round trips per verify, in autocommit: the load and
the reservation in one statement, then the write-back, the throttle reset and the audit
row in another (data-modifying CTEs); the reservation commits without waiting for its WAL
flush, the write-back waits. SQLite has no such CTEs; there the same steps run as two
short transactions, which cost no round trips in-process. Both run on the driver's own
cursor (:meth:`Store._cursor`), past SQLAlchemy's execution layer.

A future backend implements this class's public methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from secmod.hookspecs import User
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from .context import RequestContext
from .errors import StoreUnavailable
from .read_deadline import arm_driver_connection
from .storage import SQLITE_BUSY_SECONDS, AuditEvent, BackupCode, Enrolment, PendingStep, Throttle

__all__ = ["Attempt", "AuditRow", "Budget", "Enrolled", "Store", "StoredEnrolment"]

log = logging.getLogger("secmod.host")

# What a database that is down, stalled or locked raises through SQLAlchemy; the Store
# adds its driver's own (the attempt path runs on the driver's cursor).
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def _unavailable(error: Exception) -> StoreUnavailable:
    log.error("database unavailable: %s", type(getattr(error, "orig", None) or error).__name__)
    return StoreUnavailable("The authentication service is temporarily unavailable. Please try again shortly.")

_enrolment = Enrolment.__table__
_pending = PendingStep.__table__
_backup = BackupCode.__table__
_throttle = Throttle.__table__
_audit = AuditEvent.__table__


@dataclass(frozen=True, slots=True)
class Budget:
    """How many failures a throttle key may have before it locks, and for how long.

    ``key`` is ``code:<audience>:<user id>``, ``backup:<audience>:<user id>`` or
    ``address:<client ip>``.
    """

    key: str
    max_failures: int
    lock_seconds: float


class Enrolled(enum.Enum):
    """What :meth:`Store.enrol` did."""

    NEW = "new"  # a first enrolment, or one replacing another module's: backup codes stored
    UPDATED = "updated"  # the same module's state replaced; the backup codes kept
    STEP_GONE = "step_gone"  # the setup step was already used or has expired: nothing written
    STATE_CHANGED = "state_changed"  # the state the module built on changed meanwhile: not written


@dataclass(frozen=True, slots=True)
class StoredEnrolment:
    """One person's enrolment row, and when their wrong-code lockout ends."""

    id: int
    module: str
    state: str = field(repr=False)
    version: int
    created_at: float
    locked_until: float | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reserved attempt: who, which budgets, and what each reservation counted.

    ``counts`` maps each reserved key to its failure count including this attempt;
    ``refused`` lists the keys whose budget was already spent (nothing was judged).
    """

    user: User
    enrolment: StoredEnrolment | None
    budgets: tuple[Budget, ...]
    counts: Mapping[str, int]
    refused: tuple[str, ...]

    @property
    def reserved(self) -> bool:
        return not self.refused

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRow:
    """One audit event. Reasons and names only, never a code or a secret."""

    at: float
    audience: str
    user_id: str
    module: str
    event: str
    outcome: str
    reason: str = ""
    actor: str = ""
    detail: str = ""
    client_ip: str = ""
    user_agent: str = ""

    @classmethod
    def about(cls, user: User | None, now: float, context: RequestContext | None = None, **fields: Any) -> AuditRow:
        """A row about ``user`` (``None``: the ``system`` audience), from ``context``'s client."""
        context = context or RequestContext()
        return cls(at=now, audience=user.audience.value if user is not None else "system",
                   user_id=user.id if user is not None else "", client_ip=context.client_ip,
                   user_agent=context.user_agent, **fields)

    def but(self, **changes: Any) -> AuditRow:
        """This row with ``changes``."""
        return dataclasses.replace(self, **changes)

    def values(self) -> dict[str, Any]:
        return {
            "at": datetime.fromtimestamp(self.at, UTC), "audience": self.audience[:16],
            "user_id": self.user_id[:255], "module": self.module[:64], "event": self.event[:32],
            "outcome": self.outcome[:16], "reason": self.reason[:64], "actor": self.actor[:255],
            "detail": self.detail[:500], "client_ip": self.client_ip[:64], "user_agent": self.user_agent[:255],
        }


# -- statements, built once: building a statement costs more than running it on SQLite --

_FRESH = (
    "((secmod_throttle.locked_until IS NOT NULL AND secmod_throttle.locked_until <= excluded.last_at)"
    " OR (secmod_throttle.locked_until IS NULL"
    " AND secmod_throttle.last_at <= excluded.last_at - excluded.lock_seconds))"
)
_NEXT_COUNT = f"(CASE WHEN {_FRESH} THEN 1 ELSE secmod_throttle.failures + 1 END)"


@cache
def _reserve_sql(keys: int) -> str:
    """Count one more failure on each key unless its budget is spent; return the counts."""
    rows = ", ".join(
        f"(:key{i}, 1, CASE WHEN 1 >= :max{i} THEN :now + :lock{i} ELSE NULL END, :now, :max{i}, :lock{i})"
        for i in range(keys)
    )
    return (
        "INSERT INTO secmod_throttle (key, failures, locked_until, last_at, max_failures, lock_seconds)"
        f" VALUES {rows}"
        " ON CONFLICT (key) DO UPDATE SET"
        f" failures = {_NEXT_COUNT},"
        f" locked_until = CASE WHEN {_NEXT_COUNT} >= excluded.max_failures"
        " THEN excluded.last_at + excluded.lock_seconds ELSE NULL END,"
        " last_at = excluded.last_at, max_failures = excluded.max_failures,"
        " lock_seconds = excluded.lock_seconds"
        f" WHERE {_FRESH} OR (secmod_throttle.locked_until IS NULL"
        " AND secmod_throttle.failures < excluded.max_failures)"
        " RETURNING key, failures"
    )


def _reserve_params(budgets: Sequence[Budget], now: float) -> dict[str, Any]:
    params: dict[str, Any] = {"now": float(now)}
    for i, budget in enumerate(budgets):
        params[f"key{i}"] = budget.key
        params[f"max{i}"] = int(budget.max_failures)
        params[f"lock{i}"] = float(budget.lock_seconds)
    return params


_LOAD_SQL = (
    "SELECT e.id, e.module, e.state, e.version, e.created_at, t.locked_until"
    " FROM secmod_enrolment e LEFT OUTER JOIN secmod_throttle t ON t.key = :code_key"
    " WHERE e.audience = :audience AND e.user_id = :user_id"
)
_LOAD = sa.text(_LOAD_SQL)

# PostgreSQL: the load and the reservation in one round trip. The reservation commits
# without waiting for its WAL flush (synchronous_commit off for this one statement,
# about 130 µs a verify): every host sees it at once, as ever, and only a crash of the
# database server itself can lose the last fraction of a second of reservations, a few
# wrong guesses uncounted. An accepted write-back stays synchronous: a used code never
# comes back, and its flush carries every reservation before it.
_PG_LOAD_AND_RESERVE = {
    keys: sa.text(
        "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true)),"
        f" reserved AS ({_reserve_sql(keys)})"
        " SELECT e.id, e.module, e.state, e.version, e.created_at, reserved.key, reserved.failures"
        " FROM (SELECT 1 AS one) AS o CROSS JOIN async_commit"
        " LEFT JOIN secmod_enrolment e ON e.audience = :audience AND e.user_id = :user_id"
        " LEFT JOIN reserved ON true"
    )
    for keys in (1, 2)
}

_RELEASE_SQL = (
    "UPDATE secmod_throttle SET failures = failures - 1,"
    " locked_until = CASE WHEN failures - 1 < max_failures THEN NULL ELSE locked_until END"
    " WHERE key IN (:release_a, :release_b) AND failures > 0"
)
_RESET_SQL = (
    "UPDATE secmod_throttle SET failures = 0, locked_until = NULL"
    " WHERE key IN (:reset_a, :reset_b)"
)
_AUDIT_COLUMNS = (
    "at", "audience", "user_id", "module", "event", "outcome", "reason", "actor", "detail",
    "client_ip", "user_agent",
)
_AUDIT_INSERT = _audit.insert()
_CAS_SQL = (
    "UPDATE secmod_enrolment SET state = :e_state, version = :e_new_version, updated_at = :e_now"
    " WHERE id = :e_id AND version = :e_version"
)


def _audit_values_sql(outcome: str, reason: str) -> str:
    columns = ", ".join(_AUDIT_COLUMNS)
    values = ", ".join(
        {"outcome": outcome, "reason": reason}.get(column, f":a_{column}") for column in _AUDIT_COLUMNS
    )
    return f"INSERT INTO secmod_audit ({columns}) VALUES ({values})"


_AUDIT_SQL = _audit_values_sql(":a_outcome", ":a_reason")


# PostgreSQL: write-back, throttle reset and audit in one round trip. The audit row says
# whether the compare-and-set won, so a replay that lost the race is recorded as one.
# Keyed by (new state to write, reservations to give back).
_WON = "EXISTS (SELECT 1 FROM cas)"
_PG_SETTLE_ACCEPTED = {
    (with_state, with_release): sa.text(
        "WITH cas AS ("
        + (
            "UPDATE secmod_enrolment SET state = :e_state, version = :e_new_version, updated_at = :e_now"
            " WHERE id = :e_id AND version = :e_version RETURNING id"
            if with_state
            else "SELECT id FROM secmod_enrolment WHERE id = :e_id"
        )
        + "),"
        f" reset AS ({_RESET_SQL} AND {_WON} RETURNING 1),"
        + (f" released AS ({_RELEASE_SQL} AND {_WON} RETURNING 1)," if with_release else "")
        + " audited AS ("
        + _audit_values_sql(
            f"CASE WHEN {_WON} THEN 'ok' ELSE 'fail' END",
            f"CASE WHEN {_WON} THEN :a_reason ELSE 'replayed' END",
        )
        + " RETURNING 1)"
        " SELECT count(*) FROM cas"
    )
    for with_state in (True, False)
    for with_release in (True, False)
}
_PG_RELEASE_AND_AUDIT = sa.text(
    f"WITH released AS ({_RELEASE_SQL} RETURNING 1),"
    f" audited AS ({_audit_values_sql(':a_outcome', ':a_reason')} RETURNING 1)"
    " SELECT 1"
)


_DRIVER_CURSOR = "secmod_driver_cursor"  # in a pooled connection's info


class Store:
    """secmod's state in one SQL database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgresql = engine.dialect.name == "postgresql"
        # One statement needs no transaction: on PostgreSQL autocommit saves the BEGIN
        # and COMMIT round trips. SQLite keeps its default (each call is short).
        self._single = engine.execution_options(isolation_level="AUTOCOMMIT") if self.is_postgresql else engine
        at_type = _audit.c.at.type.dialect_impl(engine.dialect)
        self._audit_at = at_type.bind_processor(engine.dialect)
        # SQLite has one writer at a time. Threads of this process queue for the attempt
        # path here, where the next wakes the moment the last commits; in SQLite's busy
        # handler they would sleep 1, 2, 5, 10 ... ms between tries.
        self._writer = None if self.is_postgresql else threading.Lock()
        driver = engine.dialect.loaded_dbapi
        self._unavailable_errors = (*_UNAVAILABLE, driver.OperationalError, driver.InterfaceError)
        # The attempt path's statements in the driver's own parameter style.
        self._sql: dict[str, str] = {}
        if self.is_postgresql:
            def compiled(clause: sa.TextClause) -> str:
                return str(clause.compile(dialect=engine.dialect))

            self._sql = {
                "release": compiled(_RELEASE), "audit": compiled(sa.text(_AUDIT_SQL)),
                "release_and_audit": compiled(_PG_RELEASE_AND_AUDIT),
                **{f"reserve{keys}": compiled(clause) for keys, clause in _PG_LOAD_AND_RESERVE.items()},
                **{f"settle{int(state)}{int(release)}": compiled(clause)
                   for (state, release), clause in _PG_SETTLE_ACCEPTED.items()},
            }

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _connect(self, *, single: bool = False) -> Iterator[Connection]:
        """A connection for one statement (``single``) or a transaction; database failures become
        :class:`StoreUnavailable`, whose message holds no statement or parameter."""
        # Autocommit (PostgreSQL) needs no transaction; elsewhere even one statement runs
        # in a transaction so that it commits.
        autocommit = single and self.is_postgresql
        try:
            with self._single.connect() if autocommit else self.engine.begin() as conn:
                yield conn
        except self._unavailable_errors as error:
            raise _unavailable(error) from None

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        """The driver's own cursor, for the attempt path: there SQLAlchemy's execution layer
        costs more than the database takes to run a statement (SQLite: about 27 µs against
        10; PostgreSQL: about 110 µs, more than the round trip itself).

        On SQLite the block is one transaction. On PostgreSQL it runs in autocommit, one
        statement per block, each under the read deadline (SQLAlchemy's events, which arm
        it elsewhere, do not see this cursor).
        """
        try:
            if self._writer is None:
                with self._driver_cursor() as cursor:
                    yield cursor
                return
            # Bounded like SQLite's own wait: a writer of another process holding the
            # database must not queue this process's threads forever.
            if not self._writer.acquire(timeout=SQLITE_BUSY_SECONDS):
                raise _unavailable(TimeoutError())
            try:
                with self._driver_cursor() as cursor:
                    yield cursor
            finally:
                self._writer.release()
        except self._unavailable_errors as error:
            raise _unavailable(error) from None

    @contextlib.contextmanager
    def _driver_cursor(self) -> Iterator[Any]:
        raw = self.engine.raw_connection()
        driver: Any = raw.driver_connection
        try:
            # One cursor per connection, kept with it in the pool (making one costs
            # about as much as a prepared statement's Python side).
            cursor = raw.info.get(_DRIVER_CURSOR)
            if cursor is None:
                cursor = raw.info[_DRIVER_CURSOR] = driver.cursor()
            if self.is_postgresql:
                driver.autocommit = True
                try:
                    arm_driver_connection(self.engine, driver)
                    yield cursor
                finally:
                    if not driver.closed:
                        driver.autocommit = False  # as the pool lends it to SQLAlchemy
            else:
                yield cursor
                raw.commit()
        except self._unavailable_errors as error:
            if getattr(driver, "broken", False):
                # Lost or cut: as SQLAlchemy does on a disconnect, retire every
                # connection made before it too (the server may have restarted).
                self.engine.pool._invalidate(raw, error)
            raise
        finally:
            raw.close()  # back to the pool, rolled back unless committed

    def _audit_params(self, row: AuditRow) -> dict[str, Any]:
        """``row`` as the parameters of the audit statements written in SQL (``:a_at`` ...)."""
        params = {f"a_{key}": value for key, value in row.values().items()}
        if self._audit_at is not None:
            params["a_at"] = self._audit_at(params["a_at"])
        return params

    # -- enrolments ---------------------------------------------------------------

    @staticmethod
    def code_key(user: User) -> str:
        return f"code:{user.audience.value}:{user.id}"

    @staticmethod
    def backup_key(user: User) -> str:
        return f"backup:{user.audience.value}:{user.id}"

    @staticmethod
    def _who(table: sa.Table, user: User) -> tuple[sa.ColumnElement[bool], ...]:
        return (table.c.audience == user.audience.value, table.c.user_id == user.id)

    def load(self, user: User) -> StoredEnrolment | None:
        """The person's enrolment, with their wrong-code lockout."""
        params = {"audience": user.audience.value, "user_id": user.id, "code_key": self.code_key(user)}
        with self._connect(single=True) as conn:
            row = conn.execute(_LOAD, params).first()
        return StoredEnrolment(*row) if row is not None else None

    def enrolment_counts(self) -> dict[str, int]:
        query = sa.select(_enrolment.c.module, sa.func.count()).group_by(_enrolment.c.module)
        with self._connect(single=True) as conn:
            return {module: count for module, count in conn.execute(query)}

    def lockouts(self, user: User, now: float) -> dict[str, float]:
        """The person's lockouts still running: ``{"code"|"backup": until}``."""
        keys = {self.code_key(user): "code", self.backup_key(user): "backup"}
        with self._connect(single=True) as conn:
            rows = conn.execute(
                sa.select(_throttle.c.key, _throttle.c.locked_until).where(
                    _throttle.c.key.in_(list(keys)), _throttle.c.locked_until > now
                )
            ).all()
        return {keys[row.key]: row.locked_until for row in rows}

    def backup_codes_left(self, user: User) -> int:
        with self._connect(single=True) as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).where(*self._who(_backup, user), _backup.c.used_at.is_(None))
            ).scalar_one())

    def enrol(
        self, user: User, module: str, sealed_state: str, backup_hashes: Sequence[str], now: float,
        *, setup_token_id: str | None, built_on: int | None, audit: AuditRow,
    ) -> Enrolled:
        """Store a finished enrolment in one transaction, so a crash leaves either the old
        second factor or the new one, never none.

        Enrolling again with the module the person has replaces its state and keeps the
        backup codes; another module replaces everything and stores ``backup_hashes``.
        ``built_on`` is the version of the state the module was handed (``None``: it was
        handed none); the new state is written only over that version, so a login that
        changed the state meanwhile is never overwritten.
        """
        with self._connect() as conn:
            if setup_token_id is not None:
                taken = conn.execute(
                    _pending.delete().where(_pending.c.id == setup_token_id, _pending.c.kind == "setup")
                ).rowcount
                if taken != 1:
                    return Enrolled.STEP_GONE
            previous = conn.execute(sa.select(_enrolment.c.module).where(*self._who(_enrolment, user))).scalar()
            if built_on is not None and previous != module:
                return Enrolled.STATE_CHANGED
            if previous == module:
                same_version = _enrolment.c.version == built_on if built_on is not None else sa.true()
                updated = conn.execute(
                    _enrolment.update().where(*self._who(_enrolment, user), same_version)
                    .values(state=sealed_state, version=_enrolment.c.version + 1, updated_at=now)
                ).rowcount
                if updated != 1:
                    return Enrolled.STATE_CHANGED
                conn.execute(_AUDIT_INSERT, audit.values() | {"reason": "updated"})
                return Enrolled.UPDATED
            conn.execute(_enrolment.delete().where(*self._who(_enrolment, user)))
            conn.execute(
                _enrolment.insert().values(
                    audience=user.audience.value, user_id=user.id, module=module, state=sealed_state,
                    version=1, created_at=now, updated_at=now,
                )
            )
            self._replace_backup_codes(conn, user, backup_hashes, now)
            conn.execute(_throttle.delete().where(_throttle.c.key.in_([self.code_key(user), self.backup_key(user)])))
            conn.execute(_AUDIT_INSERT, audit.values() | {"reason": f"replaced:{previous}" if previous else "ok"})
        return Enrolled.NEW

    def bulk_enrol(self, rows: Sequence[tuple[User, str, str]], now: float) -> None:
        """Add many new enrolments (person, module, sealed state) at once: imports and the
        bench's million people. No audit rows and no backup codes; the people must be new.
        PostgreSQL gets them through COPY, one stream instead of a statement per row."""
        columns = ("audience", "user_id", "module", "state", "version", "created_at", "updated_at")
        values = [(user.audience.value, user.id, module, state, 1, now, now) for user, module, state in rows]
        if not self.is_postgresql:
            with self._connect() as conn:
                conn.execute(_enrolment.insert(), [dict(zip(columns, row, strict=True)) for row in values])
            return
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cursor, cursor.copy(  # type: ignore[attr-defined]
                f"COPY {_enrolment.name} ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for row in values:
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()

    def _replace_backup_codes(self, conn: Connection, user: User, hashes: Sequence[str], now: float) -> None:
        conn.execute(_backup.delete().where(*self._who(_backup, user)))
        if hashes:
            conn.execute(
                _backup.insert(),
                [{"audience": user.audience.value, "user_id": user.id, "code_hash": h, "created_at": now} for h in hashes],
            )

    def disable(self, user: User, audit: AuditRow) -> StoredEnrolment | None:
        """Remove the person's enrolment, backup codes, throttles and pending steps."""
        with self._connect() as conn:
            row = conn.execute(
                _LOAD, {"audience": user.audience.value, "user_id": user.id, "code_key": self.code_key(user)}
            ).first()
            if row is None:
                return None
            stored = StoredEnrolment(*row)
            for table in (_enrolment, _backup, _pending):
                conn.execute(table.delete().where(*self._who(table, user)))
            conn.execute(_throttle.delete().where(_throttle.c.key.in_([self.code_key(user), self.backup_key(user)])))
            conn.execute(_AUDIT_INSERT, audit.values() | {"module": stored.module})
        return stored

    # -- attempts: reserve, then settle -----------------------------------------------

    def begin_attempt(self, user: User, budgets: Sequence[Budget], now: float) -> Attempt:
        """Load the person's enrolment and reserve one attempt on every budget.

        When any budget is spent, nothing stays reserved: the keys that were counted are
        released again and :attr:`Attempt.refused` names the spent ones.
        """
        budgets = tuple(budgets)
        params = _reserve_params(budgets, now) | {"audience": user.audience.value, "user_id": user.id}
        counts: dict[str, int] = {}
        enrolment: StoredEnrolment | None = None
        if self.is_postgresql:
            with self._cursor() as cursor:
                rows = cursor.execute(self._sql[f"reserve{len(budgets)}"], params).fetchall()
            for row in rows:
                if row[0] is not None and enrolment is None:
                    enrolment = StoredEnrolment(row[0], row[1], row[2], row[3], row[4])
                if row[5] is not None:
                    counts[row[5]] = row[6]
        else:
            with self._cursor() as cursor:
                # The write first: SQLite then holds the write lock, and the load that
                # follows sees the state the reservation was made against.
                counts = dict(cursor.execute(_reserve_sql(len(budgets)), params).fetchall())
                loaded = cursor.execute(
                    _LOAD_SQL, {"audience": user.audience.value, "user_id": user.id, "code_key": budgets[0].key}
                ).fetchone()
                enrolment = StoredEnrolment(*loaded) if loaded is not None else None
        refused = tuple(b.key for b in budgets if b.key not in counts)
        attempt = Attempt(user=user, enrolment=enrolment, budgets=budgets, counts=counts, refused=refused)
        if refused and counts:
            self.release(attempt)
        return attempt

    def lock_of(self, key: str, now: float) -> float | None:
        """When ``key``'s lockout ends, if it is locked now."""
        with self._connect(single=True) as conn:
            until = conn.execute(
                sa.select(_throttle.c.locked_until).where(_throttle.c.key == key, _throttle.c.locked_until > now)
            ).scalar()
        return float(until) if until is not None else None

    @staticmethod
    def _pair(keys: Sequence[str], prefix: str) -> dict[str, str]:
        padded = [*keys, "", ""][:2]
        return {f"{prefix}_a": padded[0], f"{prefix}_b": padded[1]}

    def release(self, attempt: Attempt, audit: AuditRow | None = None) -> None:
        """Give back an attempt the person is not to blame for (and record why)."""
        release = self._pair(list(attempt.counts), "release")
        if self.is_postgresql:
            with self._cursor() as cursor:
                if audit is None:
                    cursor.execute(self._sql["release"], release)
                else:
                    cursor.execute(self._sql["release_and_audit"], release | self._audit_params(audit))
            return
        with self._cursor() as cursor:
            cursor.execute(_RELEASE_SQL, release)
            if audit is not None:
                cursor.execute(_AUDIT_SQL, self._audit_params(audit))

    def settle_accepted(
        self, attempt: Attempt, sealed_state: str | None, now: float, audit: AuditRow, *, reset: Sequence[str],
        release: Sequence[str],
    ) -> bool:
        """Write an accepted answer back: the new state with a compare-and-set over the
        version judged, the person's throttles in ``reset`` cleared, the ``release``
        reservations (the address's) given back, and the audit row, all or nothing.

        :returns: False when another submission changed the state first (a replay); its
            reservation then stays counted and the audit row says ``replayed``.
        """
        enrolment = attempt.enrolment
        assert enrolment is not None
        params: dict[str, Any] = {
            "e_id": enrolment.id, "e_version": enrolment.version, "e_state": sealed_state,
            "e_new_version": enrolment.version + 1, "e_now": now,
            **self._pair(reset, "reset"), **self._pair(release, "release"), **self._audit_params(audit),
        }
        if self.is_postgresql:
            with self._cursor() as cursor:
                statement = self._sql[f"settle{int(sealed_state is not None)}{int(bool(release))}"]
                return bool(cursor.execute(statement, params).fetchone()[0])
        with self._cursor() as cursor:
            won = sealed_state is None or cursor.execute(_CAS_SQL, params).rowcount == 1
            if won:
                cursor.execute(_RESET_SQL, params)
                if release:
                    cursor.execute(_RELEASE_SQL, params)
                cursor.execute(_AUDIT_SQL, params)
            else:
                cursor.execute(_AUDIT_SQL, params | {"a_outcome": "fail", "a_reason": "replayed"})
        return won

    # -- backup codes -------------------------------------------------------------------

    def unused_backup_codes(self, user: User) -> list[tuple[int, str]]:
        with self._connect(single=True) as conn:
            return [
                (row.id, row.code_hash)
                for row in conn.execute(
                    sa.select(_backup.c.id, _backup.c.code_hash).where(*self._who(_backup, user), _backup.c.used_at.is_(None))
                )
            ]

    def use_backup_code(
        self, user: User, code_id: int, new_hash: str, now: float, audit: AuditRow, *, reset: Sequence[str],
        release: Sequence[str],
    ) -> bool:
        """Mark a backup code used (once, whoever races) and store its replacement."""
        with self._connect() as conn:
            used = conn.execute(
                _backup.update().where(_backup.c.id == code_id, _backup.c.used_at.is_(None)).values(used_at=now)
            ).rowcount == 1
            if not used:
                conn.execute(_AUDIT_INSERT, audit.values() | {"outcome": "fail", "reason": "replayed"})
                return False
            conn.execute(
                _backup.insert().values(audience=user.audience.value, user_id=user.id, code_hash=new_hash, created_at=now)
            )
            conn.execute(_RESET, self._pair(reset, "reset"))
            conn.execute(_RELEASE, self._pair(release, "release"))
            conn.execute(_AUDIT_INSERT, audit.values())
        return True

    # -- pending steps ------------------------------------------------------------------

    def add_pending(
        self, token_id: str, kind: str, user: User, module: str, data: str, expires_at: float, now: float
    ) -> None:
        with self._connect() as conn:
            conn.execute(_pending.delete().where(_pending.c.expires_at <= now))
            conn.execute(
                _pending.insert().values(
                    id=token_id, kind=kind, audience=user.audience.value, user_id=user.id,
                    module=module, data=data, expires_at=expires_at,
                )
            )

    def find_pending(self, token_id: str, kind: str, user: User, now: float) -> Any:
        with self._connect(single=True) as conn:
            return conn.execute(
                sa.select(_pending).where(
                    _pending.c.id == token_id, _pending.c.kind == kind, *self._who(_pending, user),
                    _pending.c.expires_at > now,
                )
            ).first()

    def update_pending(self, token_id: str, data: str) -> None:
        with self._connect(single=True) as conn:
            conn.execute(_pending.update().where(_pending.c.id == token_id).values(data=data))

    def take_pending(self, token_id: str, user: User, module: str, now: float) -> Any:
        """Consume a challenge's pending row: once, by its owner, before it expires."""
        with self._connect(single=True) as conn:
            row = conn.execute(
                _pending.delete()
                .where(_pending.c.id == token_id, _pending.c.kind == "challenge", *self._who(_pending, user),
                       _pending.c.module == module)
                .returning(_pending.c.kind, _pending.c.module, _pending.c.data, _pending.c.expires_at)
            ).first()
        return row if row is not None and row.expires_at > now else None

    # -- audit --------------------------------------------------------------------------

    def audit(self, *rows: AuditRow) -> None:
        if not self.is_postgresql:
            with self._cursor() as cursor:
                cursor.executemany(_AUDIT_SQL, [self._audit_params(row) for row in rows])
        elif len(rows) == 1:
            with self._cursor() as cursor:
                cursor.execute(self._sql["audit"], self._audit_params(rows[0]))
        else:  # SQLAlchemy makes several rows one statement, atomic in autocommit
            with self._connect(single=True) as conn:
                conn.execute(_AUDIT_INSERT, [row.values() for row in rows])

    def audit_events(self, *, user: User | None = None, limit: int = 100) -> list[AuditEvent]:
        query = sa.select(_audit).order_by(_audit.c.id.desc()).limit(limit)
        if user is not None:
            query = query.where(*self._who(_audit, user))
        with self._connect(single=True) as conn:
            return [AuditEvent(**row._mapping) for row in conn.execute(query)]

    # -- keys -----------------------------------------------------------------------

    def sealed_key_ids(self, *, sample: int = 1000) -> set[str]:
        """The ids of the keys that sealed the newest stored values (the part before ``$``).

        A sample, not a scan: a lost key file shows in every row, and a row sealed with
        some other unknown key still fails closed when it is read.
        """
        ids: set[str] = set()
        with self._connect(single=True) as conn:
            for column, order in ((_enrolment.c.state, _enrolment.c.id), (_pending.c.data, _pending.c.expires_at)):
                newest = sa.select(column.label("sealed")).order_by(order.desc()).limit(sample).subquery()
                if self.is_postgresql:
                    key_id = sa.func.split_part(newest.c.sealed, "$", 1)
                else:
                    key_id = sa.func.substr(newest.c.sealed, 1, sa.func.instr(newest.c.sealed, "$") - 1)
                ids.update(conn.execute(sa.select(key_id).distinct()).scalars())
        return ids

    def sealed_rows(self) -> tuple[list[Any], list[Any]]:
        with self._connect() as conn:
            enrolments = conn.execute(sa.select(_enrolment.c.id, _enrolment.c.audience, _enrolment.c.user_id,
                                                _enrolment.c.module, _enrolment.c.state)).all()
            pendings = conn.execute(sa.select(_pending)).all()
        return list(enrolments), list(pendings)

    def reseal_enrolment(self, row_id: int, old: str, new: str) -> int:
        """Replace a sealed state only if unchanged since read; keeps its version."""
        with self._connect() as conn:
            return conn.execute(
                _enrolment.update().where(_enrolment.c.id == row_id, _enrolment.c.state == old).values(state=new)
            ).rowcount

    def reseal_pending(self, row_id: str, old: str, new: str) -> int:
        with self._connect() as conn:
            return conn.execute(
                _pending.update().where(_pending.c.id == row_id, _pending.c.data == old).values(data=new)
            ).rowcount


_RELEASE = sa.text(_RELEASE_SQL)
_RESET = sa.text(_RESET_SQL)
