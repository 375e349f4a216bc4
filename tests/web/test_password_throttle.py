"""Passwords are throttled per account and per client address (issue 12 point 3).

The attempt is reserved in one atomic statement before the password hash is looked at,
so no burst (threads, processes) gets more than the limit judged, on SQLite and on
PostgreSQL (``database``, from tests/conftest.py); a right password sent after the limit
is refused like a wrong one.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from secmod.hookspecs import Audience, messages
from secmod.host.storage import open_engine
from secmod.host.web.accounts import AccountStore

from .conftest import PASSWORD, log_in, log_out, sign_up, text

LIMIT = 5
BURST = 50


def _store(url: str, now: float) -> AccountStore:
    return AccountStore(open_engine(url, migrate=False), clock=lambda: now, per_account=LIMIT, per_address=1000)


def _outcome(store: AccountStore, password: str, address: str = "192.0.2.1") -> str:
    result = store.log_in(Audience.CLIENT, "ada@example.com", password, client_ip=address)
    if result.locked_until is not None:
        return "refused"
    return "right" if result.account is not None else "wrong"


def test_a_burst_of_threads_gets_at_most_the_limit_judged(database: str, fake_clock: Any) -> None:
    store = _store(database, fake_clock())
    store.create(Audience.CLIENT, "ada@example.com", PASSWORD)
    judged = Counter[str]()
    lock = threading.Lock()
    barrier = threading.Barrier(BURST - 1)
    limit_reached = threading.Event()

    def guess(index: int) -> None:
        barrier.wait(timeout=60)
        outcome = _outcome(store, f"guess {index}")
        with lock:
            judged[outcome] += 1
            if sum(judged.values()) >= LIMIT:
                limit_reached.set()

    def owner() -> None:
        # The right password, sent in the middle of the burst once the limit is used up.
        assert limit_reached.wait(timeout=60)
        outcome = _outcome(store, PASSWORD)
        with lock:
            judged[f"owner {outcome}"] += 1

    threads = [threading.Thread(target=guess, args=(index,)) for index in range(BURST - 1)]
    threads.append(threading.Thread(target=owner))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(judged.values()) == BURST
    assert judged["wrong"] == LIMIT
    assert judged["owner refused"] == 1 and judged["refused"] == BURST - 1 - LIMIT
    # Once over the limit, the right password is refused too, unjudged.
    assert _outcome(store, PASSWORD) == "refused"
    store.engine.dispose()


def _guess_in_a_process(url: str, now: float, guesses: int, barrier: Any, results: Any) -> None:
    store = _store(url, now)
    barrier.wait(timeout=60)
    for index in range(guesses):
        results.put(_outcome(store, f"wrong {index}"))
    store.engine.dispose()


def test_a_burst_from_several_processes_gets_at_most_the_limit_judged(database: str, fake_clock: Any) -> None:
    store = _store(database, fake_clock())
    store.create(Audience.CLIENT, "ada@example.com", PASSWORD)
    context = multiprocessing.get_context("fork")
    processes, guesses = 5, BURST // 5
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_guess_in_a_process, args=(database, fake_clock(), guesses, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = Counter(results.get(timeout=120) for _ in range(processes * guesses))
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert outcomes["wrong"] == LIMIT and outcomes["refused"] == BURST - LIMIT
    assert _outcome(store, PASSWORD) == "refused"
    store.engine.dispose()


def test_the_address_limit_spans_accounts(tmp_path: Path, fake_clock: Any) -> None:
    store = AccountStore(open_engine(f"sqlite:///{tmp_path / 'a.db'}", migrate=False), clock=fake_clock,
                         per_account=LIMIT, per_address=8)
    outcomes = [store.log_in(Audience.CLIENT, f"user{index}@example.com", "guess", client_ip="198.51.100.7")
                for index in range(10)]
    assert [result.locked_until is None for result in outcomes] == [True] * 8 + [False] * 2
    # Another address is not held back by this one.
    assert store.log_in(Audience.CLIENT, "user0@example.com", "guess", client_ip="198.51.100.8").locked_until is None
    store.engine.dispose()


def test_the_web_login_says_login_attempts_exceeded_and_lifts_after_the_window(
    client: Any, web: Any, fake_clock: Any
) -> None:
    sign_up(client)
    log_out(client)
    for _ in range(LIMIT):
        assert log_in(client, password="wrong password").status_code == 401
    refused = log_in(client)  # the right password, over the limit
    assert refused.status_code == 429
    assert "Login Attempts Exceeded" in text(refused)
    assert refused.url.path == "/login"
    events = web.host.audit_events(limit=20)
    assert any(event.event == "password_lockout" for event in events)
    assert all(PASSWORD not in repr(event) for event in events)
    fake_clock.advance(15 * 60 + 1)
    assert log_in(client).url.path == "/clientarea"


def test_admin_login_is_throttled_too(admin_password: str, make_client: Any) -> None:
    browser = make_client()
    for _ in range(LIMIT):
        assert log_in(browser, "root@example.com", "wrong", admin=True).status_code == 401
    refused = log_in(browser, "root@example.com", admin_password, admin=True)
    assert refused.status_code == 429 and messages.LOCKED.split(".")[0] in text(refused)


def test_a_right_password_resets_the_accounts_count(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    log_out(client)
    for _round in range(3):
        for _ in range(LIMIT - 1):
            assert log_in(client, password="wrong password").status_code == 401
        assert log_in(client).url.path == "/clientarea"
        log_out(client)


def test_an_address_over_its_limit_cannot_fill_the_table_with_invented_emails(tmp_path: Path, fake_clock: Any) -> None:
    import sqlalchemy as sa
    from secmod.host.web.accounts import LoginAttempts

    store = AccountStore(open_engine(f"sqlite:///{tmp_path / 'a.db'}", migrate=False), clock=fake_clock,
                         per_account=LIMIT, per_address=3)
    for index in range(50):
        store.log_in(Audience.CLIENT, f"invented{index}@example.com", "guess", client_ip="203.0.113.9")
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(LoginAttempts.__table__)).scalar_one()
    assert rows == 1 + 3  # the address, and the three emails it was allowed to try
    store.engine.dispose()
