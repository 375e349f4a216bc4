"""Secrets at rest in the web host (issue 12 point 5): nothing in the database or in
secmod.toml that forges a cookie or replays a step, and database files only for us."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from itsdangerous import Signer
from secmod.host.storage import open_engine
from secmod.host.web import create_app
from secmod.host.web.accounts import StoredSession, WebSecret
from typer.testing import CliRunner

from .conftest import API_TOKEN, TestClient, post, sign_up

SESSION = "secmod_session"


def test_the_generated_cookie_key_is_sealed_in_the_database(tmp_path: Path, fake_clock: Any) -> None:
    config = tmp_path / "secmod.toml"
    config.write_text('database_url = "sqlite:///secmod.db"\n[sealing]\nkey_file = "secmod.keys"\n')
    app = create_app(config, host_kwargs={"clock": fake_clock})
    try:
        with TestClient(app) as client:
            sign_up(client)
            cookie = client.cookies[SESSION]
        web = app.state.web
        with web.accounts_engine.connect() as conn:
            stored = conn.execute(sa.select(WebSecret.__table__.c.value)).scalar_one()
        token = cookie.rsplit(".", 1)[0]
        # A copy of the database alone does not sign a cookie the host accepts.
        forged = Signer(stored, salt="secmod.web.session").sign(token).decode()
        assert forged != cookie
        assert stored.startswith(web.host.keyring.primary + "$")
    finally:
        app.state.web.close()
    # And the key survives a restart: the cookie still opens the session.
    again = create_app(config, host_kwargs={"clock": fake_clock})
    try:
        with TestClient(again) as client:
            client.cookies.set(SESSION, cookie)
            assert client.get("/clientarea", follow_redirects=False).status_code == 200
    finally:
        again.state.web.close()


def test_session_rows_hold_no_raw_step_tokens(client: Any, web: Any) -> None:
    sign_up(client)
    setup = post(client, "/account/security/setup", {"module": "totp"}, page="/account/security")
    assert setup.status_code == 200
    [slot] = [value for value in _session_data(client, web).values() if isinstance(value, dict)]
    setup_id = slot["setup_id"]
    with web.accounts_engine.connect() as conn:
        rows = conn.execute(sa.select(StoredSession.__table__.c.data)).scalars().all()
    assert rows and all(setup_id not in row and "setup_id" not in row for row in rows)


def _session_data(client: Any, web: Any) -> dict[str, Any]:
    from secmod.host.web.app import _unsign

    token = _unsign(web.cookie_signer, client.cookies[SESSION])
    return web.sessions.load(token).data


def test_sqlite_files_are_created_for_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "secmod.db"
    engine = open_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        for suffix in ("", "-wal", "-shm"):
            file = Path(f"{path}{suffix}")
            assert file.exists(), suffix
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, suffix
    engine.dispose()


def test_api_token_and_session_secret_sealed_in_the_config(config_file: Path, fake_clock: Any) -> None:
    from secmod.host.cli import app as cli

    config_file.write_text('database_url = "sqlite:///secmod.db"\n[sealing]\nkey_file = "secmod.keys"\n')
    runner = CliRunner()
    for key, value in (("api_token", API_TOKEN), ("session_secret", "a session secret")):
        result = runner.invoke(cli, ["--config", str(config_file), "seal", "web", key, "--write"], input=value + "\n")
        assert result.exit_code == 0, result.output
    written = config_file.read_text()
    assert API_TOKEN not in written and "a session secret" not in written
    assert written.count("sealed:") == 2 and "[web]" in written
    app = create_app(config_file, host_kwargs={"clock": fake_clock})
    try:
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {API_TOKEN}"}
            assert client.post("/api/v1/login-state", json={"user": {"id": "1"}}, headers=headers).status_code == 200
            sealed = {"Authorization": "Bearer " + written.split('api_token = "')[1].split('"')[0]}
            assert client.post("/api/v1/login-state", json={"user": {"id": "1"}}, headers=sealed).status_code == 401
            sign_up(client)
            cookie = client.cookies[SESSION]
            token = cookie.rsplit(".", 1)[0]
            assert Signer("a session secret", salt="secmod.web.session").sign(token).decode() == cookie
    finally:
        app.state.web.close()


def test_a_cookie_key_kept_in_plain_text_by_an_older_version_is_sealed_in_place(tmp_path: Path) -> None:
    from secmod.host.sealing import KeyRing
    from secmod.host.web.accounts import stored_secret

    engine = open_engine(f"sqlite:///{tmp_path / 'old.db'}", migrate=False)
    ring = KeyRing.open(tmp_path / "keys")
    stored_secret(engine, "other", ring)  # creates the table
    with engine.begin() as conn:
        conn.execute(WebSecret.__table__.insert().values(name="session_cookie", value="plain-old-secret"))
    assert stored_secret(engine, "session_cookie", ring) == "plain-old-secret"  # sessions survive the upgrade
    with engine.connect() as conn:
        now = conn.execute(sa.select(WebSecret.__table__.c.value).where(WebSecret.__table__.c.name == "session_cookie"))
        sealed = now.scalar_one()
    assert "plain-old-secret" not in sealed and sealed.startswith(ring.primary + "$")
    assert stored_secret(engine, "session_cookie", ring) == "plain-old-secret"
    engine.dispose()
