"""The database going away: nobody is let in, the Host says so with its own exception
(never SQLAlchemy's), within seconds, and service resumes when the database returns."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from secmod.host import Host, StoreUnavailable
from secmod.settings import SecmodSettings
from secmod.testing.proxy import TcpProxy
from support import ALICE, enrol_totp

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied_url(postgres_url):
    url = sa.engine.make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def test_a_database_outage_refuses_clearly_and_service_resumes(proxied_url, fake_clock, tmp_path):
    proxy, url = proxied_url
    host = Host(SecmodSettings(database_url=url, sealing={"key_file": str(tmp_path / "k")}), clock=fake_clock)
    totp, codes = enrol_totp(host, ALICE, fake_clock)
    proxy.cut()
    started = time.monotonic()
    for call in (lambda: host.verify(ALICE, {"code": totp.at(fake_clock.now)}),
                 lambda: host.recover(ALICE, {"code": codes[0]}),
                 lambda: host.login_state(ALICE)):
        with pytest.raises(StoreUnavailable, match="temporarily unavailable"):
            call()
    assert time.monotonic() - started < 30
    proxy.restore()
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted  # no restart needed
    host.close()


def test_one_lost_connection_retires_every_pooled_connection_made_before_it(proxied_url, fake_clock, tmp_path):
    """A database that restarted leaves every pooled connection dead. The first login to
    find out costs one refusal; the pool then drops all of them, so the next login does
    not meet another dead one (the attempt path runs on the driver's own cursor, past
    SQLAlchemy's own disconnect handling)."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    proxy, url = proxied_url
    host = Host(SecmodSettings(database_url=url, sealing={"key_file": str(tmp_path / "k")}), clock=fake_clock)
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    pooled = 4
    together = Barrier(pooled)

    def hold_a_connection(_: int) -> None:
        with host.store.engine.connect():
            together.wait(timeout=10)

    with ThreadPoolExecutor(max_workers=pooled) as pool:
        list(pool.map(hold_a_connection, range(pooled)))
    assert host.store.engine.pool.checkedin() >= pooled
    proxy.cut()  # the server side of every pooled connection is gone
    proxy.restore()
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(host.verify(ALICE, {"code": totp.at(fake_clock.now)}).outcome.value)
        except StoreUnavailable:
            outcomes.append("unavailable")
    assert outcomes[0] == "unavailable"
    assert outcomes[1:] == ["accepted", "rejected"]  # the same code again: already used
    host.close()


def test_a_stalled_database_becomes_a_refusal_once_the_pool_wait_runs_out(proxied_url, fake_clock, tmp_path):
    """A frozen server holds the connections it has; every further request gives up after
    the bounded pool wait instead of queueing forever."""
    from concurrent.futures import ThreadPoolExecutor

    from secmod.host.storage import POOL_WAIT_SECONDS, open_engine

    proxy, url = proxied_url
    open_engine(url).dispose()  # the schema, migrated
    engine = sa.create_engine(url, pool_size=1, max_overflow=0, pool_timeout=POOL_WAIT_SECONDS)
    host = Host(SecmodSettings(database_url=url, sealing={"key_file": str(tmp_path / "k")}), clock=fake_clock,
                engine=engine)
    enrol_totp(host, ALICE, fake_clock)
    proxy.freeze()
    with ThreadPoolExecutor(max_workers=2) as pool:
        stuck = pool.submit(host.login_state, ALICE)  # holds the only connection
        time.sleep(0.5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            host.login_state(ALICE)
        assert time.monotonic() - started < POOL_WAIT_SECONDS + 5
        proxy.restore()
        stuck.result(timeout=30)
    host.close()



def test_a_frozen_database_cannot_hold_a_request_that_already_has_its_connection(proxied_url, fake_clock, tmp_path):
    """The server's statement_timeout cannot fire on a server that stopped answering: the
    client-side deadline (database_timeout_seconds plus a second) ends the wait itself."""
    proxy, url = proxied_url
    settings = SecmodSettings(database_url=url, database_timeout_seconds=1, sealing={"key_file": str(tmp_path / "k")})
    host = Host(settings, clock=fake_clock)
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    proxy.freeze()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        host.verify(ALICE, {"code": totp.at(fake_clock.now)})
    assert time.monotonic() - started < 5
    proxy.restore()
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted  # the same pool, no restart
    host.close()


def test_the_read_deadline_spares_connections_that_are_idle_or_merely_slow(postgres_url):
    """Only a connection waiting on the server is cut, and only past the server's own
    timeout: a caller holding an idle connection keeps it, and a slow statement ends with
    the server's cancellation on a connection that stays usable."""
    from secmod.host.storage import open_engine

    engine = open_engine(postgres_url, timeout_seconds=1)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        time.sleep(2.8)  # past the client deadline, but idle
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            conn.execute(sa.text("SELECT pg_sleep(3)"))
        conn.rollback()
        assert not conn.invalidated
        assert conn.execute(sa.text("SELECT 2")).scalar() == 2
    engine.dispose()


def test_a_migration_may_run_longer_than_a_login_may_wait(postgres_url):
    """A migration may rewrite or index a big table for longer than a login may wait: its
    statements run without the statement timeout and without the client-side deadline,
    while logins on the same engine keep both."""
    from secmod.host.migrations import upgrade
    from secmod.host.storage import open_engine

    engine = open_engine(postgres_url, migrate=False, timeout_seconds=1)
    slowed: list[str] = []

    @sa.event.listens_for(engine, "after_cursor_execute")
    def a_big_table(conn, _cursor, statement, *_):  # the first CREATE TABLE takes 2.5 s
        if statement.lstrip().startswith("CREATE TABLE") and not slowed:
            slowed.append(statement)
            conn.exec_driver_sql("SELECT pg_sleep(2.5)")

    upgrade(engine)
    assert slowed
    with pytest.raises(sa.exc.OperationalError, match="statement timeout"), engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_sleep(2.5)"))
    engine.dispose()
