"""The client area: sign-up, login, the second factor, backup codes, security settings."""

from __future__ import annotations

from typing import Any

import pytest

from secmod.hookspecs import messages

from .conftest import (
    PASSWORD,
    backup_codes_on,
    enable_totp,
    log_in,
    log_out,
    post,
    sign_up,
    text,
    totp_code,
)


def test_sign_up_logs_in_without_second_factor(client: Any) -> None:
    page = sign_up(client)
    assert page.url.path == "/clientarea"
    assert "Hello, Ada!" in page.text


def test_wrong_password_is_refused_without_saying_which_part(client: Any) -> None:
    sign_up(client)
    log_out(client)
    for email, password in (("ada@example.com", "wrong password"), ("nobody@example.com", PASSWORD)):
        page = log_in(client, email, password)
        assert page.status_code == 401
        assert "Login Details Incorrect. Please try again." in page.text


def test_enable_totp_then_log_in_with_a_code(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    secret, backup = enable_totp(client, fake_clock)
    assert len(backup.replace(" ", "").replace("-", "")) == 16
    log_out(client)

    challenge = log_in(client)
    assert challenge.url.path == "/login/2fa"
    assert messages.SECOND_FACTOR_REQUIRED_CLIENT in challenge.text
    assert "Can't Access Your 2nd Factor Device?" in text(challenge)
    assert client.get("/clientarea", follow_redirects=False).status_code == 303  # not in yet

    fake_clock.advance(30)  # the enrolment code was used; the next step's code is new
    page = post(client, "/login/2fa", {"code": totp_code(secret, fake_clock)}, page="/login/2fa")
    assert page.url.path == "/clientarea"
    assert 'id="two-factor-status" class="on">enabled<' in page.text


def test_wrong_code_shows_attempts_remaining_then_lockout(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    for left in (4, 3, 2, 1):
        page = post(client, "/login/2fa", {"code": "000000"}, page="/login/2fa")
        assert page.status_code == 401
        assert messages.WRONG_FACTOR_CLIENT.format(attempts=left) in page.text
    page = post(client, "/login/2fa", {"code": "000000"}, page="/login/2fa")
    assert page.status_code == 429
    assert "Login Attempts Exceeded. Please try again after" in page.text
    assert 'name="code"' not in page.text  # nothing more to type until the lockout ends


def test_clock_skew_is_explained_in_plain_words(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    secret, _ = enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    page = post(client, "/login/2fa", {"code": totp_code(secret, fake_clock, offset=-180)}, page="/login/2fa")
    assert "Your device's clock appears to be about 3 min" in text(page)
    assert "behind the server" in page.text


def test_backup_code_logs_in_once_and_shows_a_new_one(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    _, backup = enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    page = post(client, "/login/backup", {"code": backup}, page="/login/backup")
    assert "Login via Backup Code Successful" in page.text
    [fresh] = backup_codes_on(page.text)
    assert fresh != backup
    assert client.get("/clientarea").url.path == "/clientarea"

    log_out(client)
    log_in(client)
    reused = post(client, "/login/backup", {"code": backup}, page="/login/backup")
    assert reused.status_code == 401
    assert messages.WRONG_FACTOR in reused.text
    assert "Login via Backup Code Successful" in post(client, "/login/backup", {"code": fresh}, page="/login/backup").text


def test_disable_needs_the_password(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    enable_totp(client, fake_clock)
    wrong = post(client, "/account/security/disable", {"password": "not it"}, page="/account/security")
    assert wrong.status_code == 400
    assert messages.PASSWORD_INCORRECT in wrong.text
    right = post(client, "/account/security/disable", {"password": PASSWORD}, page="/account/security")
    assert messages.DISABLED in right.text
    log_out(client)
    assert log_in(client).url.path == "/clientarea"


def test_wrong_setup_code_keeps_the_same_secret(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    first = post(client, "/account/security/setup", {"module": "totp"}, page="/account/security")
    again = post(client, "/account/security/setup/confirm", {"code": "123456"}, page="/account/security")
    assert again.status_code == 400
    assert messages.TOTP_SETUP_MISMATCH in again.text
    from .conftest import secret_on

    assert secret_on(again.text) == secret_on(first.text)


def test_forced_client_is_sent_to_setup_before_anything_else(client: Any, web: Any, fake_clock: Any) -> None:
    sign_up(client)
    log_out(client)
    web.config_file.write_text(web.config_file.read_text().replace("[sealing]", "force_clients = true\n\n[sealing]"))
    web.reload()
    page = log_in(client)
    assert page.url.path == "/account/security"
    assert messages.FORCED_CLIENT in page.text
    assert client.get("/clientarea", follow_redirects=False).headers["location"] == "/account/security"
    enable_totp(client, fake_clock)
    assert client.get("/clientarea").url.path == "/clientarea"


@pytest.mark.parametrize("module", ["duo", "totp", "nosuchmodule"])
def test_a_cross_site_callback_link_mid_login_burns_no_attempt(
    client: Any, web: Any, fake_clock: Any, module: str
) -> None:
    """Attack: a TOTP user is at the code page; a link elsewhere makes their browser open
    a module callback. Nothing is judged, nothing counted, the login goes on."""
    sign_up(client)
    enable_totp(client, fake_clock)
    log_out(client)
    assert log_in(client).url.path == "/login/2fa"
    [ada] = web.accounts.list("client")
    before = len(web.host.audit_events(user=ada.as_user(), limit=1000))
    for _ in range(6):
        landed = client.get(f"/login/{module}/callback", params={"duo_code": "x", "state": "y", "code": "000000"},
                            follow_redirects=False)
        assert (landed.status_code, landed.headers["location"]) == (303, "/login/2fa")
    assert len(web.host.audit_events(user=ada.as_user(), limit=1000)) == before
    wrong = post(client, "/login/2fa", {"code": "000000"}, page="/login/2fa")
    assert "You have 4 attempts remaining" in text(wrong)


def test_duo_callback_without_a_pending_login_goes_to_the_login_page(client: Any) -> None:
    response = client.get("/login/duo/callback", params={"duo_code": "x", "state": "y"}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_second_factor_disabled_by_an_admin_meanwhile_lets_the_password_stand(
    client: Any, web: Any, fake_clock: Any
) -> None:
    sign_up(client)
    enable_totp(client, fake_clock)
    log_out(client)
    assert log_in(client).url.path == "/login/2fa"
    [ada] = web.accounts.list("client")
    web.host.disable(ada.as_user(), actor="admin:1")
    assert client.get("/login/2fa").url.path == "/clientarea"


def test_a_locked_person_is_told_until_when_at_the_next_login(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    enable_totp(client, fake_clock)
    log_out(client)
    log_in(client)
    for _ in range(5):
        post(client, "/login/2fa", {"code": "000000"}, page="/login/2fa")
    log_out(client)  # the pending login is dropped with the session
    page = log_in(client)
    assert "Login Attempts Exceeded. Please try again after 2027-01-15 08:15:00 UTC." in text(page)
    assert 'name="code"' not in page.text
    fake_clock.advance(15 * 60)
    assert 'name="code"' in client.get("/login/2fa").text


def test_duo_outage_leaves_the_backup_code(tmp_path: Any, fake_clock: Any) -> None:
    import tomlkit
    from secmod.host.web import create_app
    from secmod_duo.testing.fake import FakeDuo

    from .conftest import API_TOKEN, CONFIG, TestClient

    with FakeDuo() as duo:
        config = tmp_path / "secmod.toml"
        settings = duo.settings("http://localhost/login/duo/callback", clients=True)
        config.write_text(CONFIG.format(api_token=API_TOKEN) + "\n" + tomlkit.dumps({"modules": {"duo": settings}}))
        app = create_app(config, host_kwargs={"clock": fake_clock})
        try:
            with TestClient(app) as client:
                sign_up(client)
                post(client, "/account/security/setup", {"module": "duo"}, page="/account/security")
                log_out(client)
                duo.health = "fail"
                page = log_in(client)
        finally:
            app.state.web.close()
    assert page.url.path == "/login/2fa"
    assert messages.DUO_DISRUPTION in text(page)
    assert "Login using Backup Code" in text(page)
