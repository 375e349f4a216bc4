"""Racing processes: a code is accepted once, and failure counters stay exact.

Each test starts 8 processes with their own Host on one database, holds them at a
barrier, then lets them submit at the same instant — on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
import sqlalchemy as sa
from support import ALICE, enrol_totp

from secmod.host import Host
from secmod.host.storage import Throttle
from secmod.settings import SecmodSettings

PROCESSES = 8


def _submit(settings: dict, now: float, method: str, answer: dict, barrier, results) -> None:
    host = Host(SecmodSettings(**settings), clock=lambda: now)
    barrier.wait(timeout=60)
    if method == "verify":
        result = host.verify(ALICE, answer)
    else:
        result = host.recover(ALICE, answer)
    results.put(f"{result.outcome.value}:{result.reason}")
    host.close()


def race(settings: dict, now: float, method: str, answer: dict) -> Counter:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(target=_submit, args=(settings, now, method, answer, barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = Counter(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return outcomes


@pytest.fixture
def shared(database, tmp_path, fake_clock):
    settings = {"database_url": database, "sealing": {"key_file": str(tmp_path / "race.keys")}}
    host = Host(SecmodSettings(**settings), clock=fake_clock)
    yield settings, host
    host.close()


def test_one_code_submitted_by_eight_processes_is_accepted_once(shared, fake_clock):
    settings, host = shared
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    outcomes = race(settings, fake_clock.now, "verify", {"code": totp.at(fake_clock.now)})
    assert outcomes["accepted:ok"] == 1
    # The others are replays, lost at the compare-and-set (replayed) or seen by TOTP after the
    # winner's write (already_used); replays count as failures, so the last of them may lock.
    replays = outcomes["rejected:replayed"] + outcomes["rejected:already_used"]
    assert replays + outcomes["locked:locked"] == PROCESSES - 1
    assert [e.outcome for e in host.audit_events() if e.event == "verify"].count("ok") == 1


def test_one_backup_code_used_by_eight_processes_logs_in_once(shared, fake_clock):
    settings, host = shared
    _, codes = enrol_totp(host, ALICE, fake_clock)
    outcomes = race(settings, fake_clock.now, "recover", {"code": codes[0]})
    assert outcomes["accepted:backup_code"] == 1
    # The losers count as failures: 3 lock, so a replay storm ends in a lockout.
    assert sum(outcomes.values()) == PROCESSES
    assert host.status(ALICE).backup_codes_left == 1


def test_failure_counters_are_exact_under_concurrency(shared, fake_clock, tmp_path):
    settings, host = shared
    enrol_totp(host, ALICE, fake_clock)
    outcomes = race({**settings, "throttle": {"max_code_failures": 5}}, fake_clock.now, "verify", {"code": "000000"})
    # Exactly five are judged (counts 1-4 are plain rejections, 5 locks); 6-8 are refused unjudged.
    assert outcomes["rejected:wrong_code"] == 4
    assert outcomes["locked:locked"] == PROCESSES - 4
    assert [e.reason for e in host.audit_events() if e.event == "verify"].count("wrong_code") == 5
    lockouts = [e for e in host.audit_events() if e.event == "lockout"]
    assert len(lockouts) == 1


def test_counter_reaches_exactly_the_number_of_failures(shared, fake_clock):
    settings, host = shared
    enrol_totp(host, ALICE, fake_clock)
    race({**settings, "throttle": {"max_code_failures": 100}}, fake_clock.now, "verify", {"code": "000000"})
    table = Throttle.__table__
    with host.engine.connect() as conn:
        count = conn.execute(sa.select(table.c.failures).where(table.c.key == f"code:client:{ALICE.id}")).scalar_one()
    assert count == PROCESSES


def test_threads_queued_behind_another_process_s_sqlite_writer_give_up_within_the_busy_timeout(
    tmp_path, fake_clock, monkeypatch
):
    """Threads of one process take turns at SQLite's single write lock in the Store, not in
    SQLite's sleeping busy handler; a writer of another process holding the database
    must still refuse each of them within the busy timeout, not one timeout per thread
    queued ahead."""
    import sqlite3
    import time
    from concurrent.futures import ThreadPoolExecutor

    from secmod.host import StoreUnavailable, store, storage

    busy = 0.3
    monkeypatch.setattr(storage, "SQLITE_BUSY_SECONDS", busy)
    monkeypatch.setattr(store, "SQLITE_BUSY_SECONDS", busy)
    database = tmp_path / "s.db"
    host = Host(SecmodSettings(database_url=f"sqlite:///{database}", sealing={"key_file": str(tmp_path / "k")}),
                clock=fake_clock)
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    other_process = sqlite3.connect(database, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # holds the write lock

    def verify() -> float:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            host.verify(ALICE, {"code": totp.at(fake_clock.now)})
        return time.monotonic() - started

    threads = 6
    with ThreadPoolExecutor(max_workers=threads) as pool:
        waits = list(pool.map(lambda _: verify(), range(threads)))
    other_process.rollback()
    # Unbounded turns would make the last thread wait `threads` busy timeouts.
    assert max(waits) < 3 * busy
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted
    host.close()
