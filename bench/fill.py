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

import sqlalchemy as sa

from secmod.hookspecs import Audience, User
from secmod.host import Host

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


def fill_totp_users(host: Host, count: int, *, prefix: str = "u", start: int = 0) -> float:
    """Enrol ``count`` people with TOTP through the Store; returns the seconds it took."""
    began = time.perf_counter()
    now = time.time()
    for first in range(start, start + count, BATCH):
        rows = []
        for index in range(first, min(first + BATCH, start + count)):
            uid = user_id(index, prefix)
            user = User(id=uid, audience=Audience.CLIENT)
            state = {"secret": secret_for(uid), "last_step": 0, "drift": 0}
            rows.append((user, "totp", host.sealed.seal_state(user, "totp", state)))
        host.store.bulk_enrol(rows, now)
    if host.store.is_postgresql:
        with host.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE secmod_enrolment"))
    return time.perf_counter() - began
