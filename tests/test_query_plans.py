"""How secmod's statements reach PostgreSQL's rows: by key, from a new install's first login."""

from __future__ import annotations

import time

import pyotp
import pytest
import sqlalchemy as sa
from secmod.hookspecs import Audience, User
from secmod.host import Host
from secmod.settings import SecmodSettings

pytestmark = pytest.mark.postgres

PEOPLE = 40


def table_counts(url: str, table: str, *, until_inserted: int) -> tuple[int, int]:
    """(seq_scan, idx_scan) of ``table`` once the statistics of the sessions that ended
    show ``until_inserted`` rows inserted (sessions report their counts as they end)."""
    engine = sa.create_engine(url)
    query = sa.text("SELECT seq_scan, idx_scan, n_tup_ins FROM pg_stat_user_tables WHERE relid = CAST(:t AS regclass)")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SET stats_fetch_consistency = none"))
            deadline = time.monotonic() + 10
            while True:
                seq_scan, idx_scan, inserted = conn.execute(query, {"t": table}).one()
                if inserted >= until_inserted or time.monotonic() > deadline:
                    return seq_scan, idx_scan
                time.sleep(0.05)
    finally:
        engine.dispose()


def test_accepted_codes_find_throttle_rows_by_key_while_the_table_is_young(postgres_url, fake_clock, tmp_path):
    """psycopg prepares a statement on its fifth run, and PostgreSQL then keeps one
    generic plan for it until the table is next analyzed. With the planner's default
    costs a young ``secmod_throttle`` got plans that read the whole table (a few rows
    then), and every accepted code went on reading it whole as it grew, until autovacuum
    got round to analyzing it: about 110 µs a verify at 2,000 people in ``make bench``."""
    host = Host(SecmodSettings(database_url=postgres_url, sealing={"key_file": str(tmp_path / "k")}),
                clock=fake_clock)
    people = [User(id=f"person{i}", audience=Audience.CLIENT) for i in range(PEOPLE)]
    secrets = {person.id: pyotp.random_base32() for person in people}
    host.store.bulk_enrol([
        (person, "totp", host.sealed.seal_state(person, "totp", {"secret": secrets[person.id], "last_step": 0,
                                                                  "drift": 0}))
        for person in people
    ], fake_clock.now)
    for person in people:
        assert host.verify(person, {"code": pyotp.TOTP(secrets[person.id]).at(fake_clock.now)}).accepted
    host.close()

    seq_scan, idx_scan = table_counts(postgres_url, "secmod_throttle", until_inserted=PEOPLE)
    # Migrating the schema reads it once; plans that scanned it read it twice a verify
    # (81 times here before the fix).
    assert seq_scan <= 1
    assert idx_scan >= PEOPLE
