"""Enrol many TOTP users fast: bulk inserts of states sealed one by one, as the Host seals them.

Each person gets their own secret (derived from their id, so a load generator can make
their codes without a lookup) and their own sealed state (own nonce, bound to their row
by the sealing context). Backup codes are left out: scrypt makes each cost ~50 ms on
purpose, and no verify reads them.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import sqlalchemy as sa

from secmod.hookspecs import Audience, User
from secmod.host import Host
from secmod.host.storage import Enrolment, Throttle

BATCH = 20_000


def user_id(index: int, prefix: str = "u") -> str:
    return f"{prefix}{index}"


def secret_for(user: str) -> str:
    """The person's TOTP secret (base32, 160 bits), derived from their id."""
    return (
        base64.b32encode(hashlib.blake2b(user.encode(), digest_size=20).digest())
        .decode()
        .rstrip("=")
    )


def _rows(
    host: Host, first: int, last: int, prefix: str, now: float
) -> Iterator[tuple[dict, dict]]:
    for index in range(first, last):
        uid = user_id(index, prefix)
        user = User(id=uid, audience=Audience.CLIENT)
        state = {"secret": secret_for(uid), "last_step": 0, "drift": 0}
        sealed = host._seal_state(user, "totp", state)  # the Host's own sealing context
        yield (
            {
                "audience": "client",
                "user_id": uid,
                "module": "totp",
                "state": sealed,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            },
            {
                "audience": "client",
                "user_id": uid,
                "code_failures": 0,
                "backup_failures": 0,
                "locked_until": None,
            },
        )


def fill_totp_users(host: Host, count: int, *, prefix: str = "u", start: int = 0) -> float:
    """Enrol ``count`` people with TOTP; returns the seconds it took."""
    began = time.perf_counter()
    now = time.time()
    engine = host.engine
    for first in range(start, start + count, BATCH):
        last = min(first + BATCH, start + count)
        enrolments, throttles = zip(*_rows(host, first, last, prefix, now), strict=True)
        if engine.dialect.name == "postgresql":
            _copy_postgresql(engine, enrolments, throttles)
        else:
            with engine.begin() as conn:
                conn.execute(Enrolment.__table__.insert(), list(enrolments))
                conn.execute(Throttle.__table__.insert(), list(throttles))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE secmod_enrolment"))
            conn.execute(sa.text("ANALYZE secmod_throttle"))
    return time.perf_counter() - began


def _copy_postgresql(
    engine: sa.Engine, enrolments: tuple[dict, ...], throttles: tuple[dict, ...]
) -> None:
    # COPY is PostgreSQL's bulk path: one stream instead of a statement per batch of rows.
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = ("audience", "user_id", "module", "state", "version", "created_at", "updated_at")
        with cursor.copy(f"COPY secmod_enrolment ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in enrolments:
                copy.write_row([row[column] for column in columns])
        throttle_columns = (
            "audience",
            "user_id",
            "code_failures",
            "backup_failures",
            "locked_until",
        )
        with cursor.copy(
            f"COPY secmod_throttle ({', '.join(throttle_columns)}) FROM STDIN"
        ) as copy:  # type: ignore[attr-defined]
            for row in throttles:
                copy.write_row([row[column] for column in throttle_columns])
        raw.commit()
    finally:
        raw.close()
