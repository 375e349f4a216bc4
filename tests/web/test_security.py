"""Web security: CSRF, cookies, session rotation, remember me, headers, no secrets shown."""

from __future__ import annotations

import re
from typing import Any

from .conftest import PASSWORD, csrf_token, enable_totp, log_in, log_out, post, sign_up, totp_code

SESSION = "secmod_session"


def _set_cookie(response: Any) -> str:
    headers = [value for name, value in response.headers.multi_items() if name == "set-cookie"]
    [cookie] = [value for value in headers if value.startswith(SESSION)]
    return cookie


def test_forms_without_the_csrf_token_are_refused(client: Any) -> None:
    sign_up(client)
    for path, data in (("/logout", {}), ("/account/security/disable", {"password": PASSWORD}),
                       ("/account/security/setup", {"module": "totp"})):
        for token in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data={**data, **token})
            assert response.status_code == 403, path
            assert "This form has expired" in response.text
    assert client.get("/clientarea").url.path == "/clientarea"  # still logged in


def test_login_needs_the_csrf_token_too(client: Any) -> None:
    sign_up(client)
    log_out(client)
    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 403


def test_security_headers(client: Any) -> None:
    for path in ("/login", "/api/v1/login-state", "/static/site.css"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        # Scripts from the site's own files only (the security-key ceremony), never inline.
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "default-src 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_pages_have_no_script(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    page = post(client, "/account/security/setup", {"module": "totp"}, page="/account/security")
    assert "<script" not in page.text.lower() and " on" + "click" not in page.text.lower()


def test_session_cookie_flags_and_rotation(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    secret, _ = enable_totp(client, fake_clock)
    log_out(client)
    client.get("/login")
    anonymous = client.cookies.get(SESSION)
    assert anonymous is None  # an anonymous browser has no server-side session at all
    password_step = post(client, "/login", {"email": "ada@example.com", "password": PASSWORD}, follow_redirects=False)
    cookie = _set_cookie(password_step)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age" not in cookie
    after_password = client.cookies[SESSION]
    assert after_password != anonymous

    fake_clock.advance(30)
    second = post(client, "/login/2fa", {"code": totp_code(secret, fake_clock)}, page="/login/2fa",
                  follow_redirects=False)
    assert second.headers["location"] == "/clientarea"
    assert client.cookies[SESSION] != after_password

    # The id from before the second factor no longer opens anything.
    client.cookies.clear()
    client.cookies.set(SESSION, after_password)
    assert client.get("/clientarea", follow_redirects=False).headers["location"] == "/login"


def test_remember_me_is_honoured_only_after_the_second_factor(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    secret, _ = enable_totp(client, fake_clock)
    log_out(client)
    password_step = log_in(client, remember=True)
    assert password_step.url.path == "/login/2fa"
    assert "Max-Age" not in _set_cookie(password_step.history[0])
    fake_clock.advance(30)
    second = post(client, "/login/2fa", {"code": totp_code(secret, fake_clock)}, page="/login/2fa",
                  follow_redirects=False)
    assert "Max-Age=2592000" in _set_cookie(second)


def test_secure_cookies_when_configured(config_file: Any, fake_clock: Any) -> None:
    from secmod.host.web import create_app

    from .conftest import TestClient

    config_file.write_text(config_file.read_text() + "secure_cookies = true\n")
    app = create_app(config_file, host_kwargs={"clock": fake_clock})
    try:
        with TestClient(app, base_url="https://testserver") as client:
            anonymous = client.get("/register").headers["set-cookie"]
            assert anonymous.startswith("secmod_csrf=") and "Secure" in anonymous
            assert "Secure" in _set_cookie(sign_up(client).history[0])
    finally:
        app.state.web.close()


def test_the_secret_is_shown_only_during_setup(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    secret, backup = enable_totp(client, fake_clock)
    for path in ("/clientarea", "/account/security"):
        page = client.get(path).text
        assert secret not in page and backup not in page
    log_out(client)
    challenge = log_in(client).text
    assert secret not in challenge


def test_access_log_lines_lose_their_query_string() -> None:
    import logging

    from secmod.host.web import HideQueryStrings

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/login/duo/callback?duo_code=SECRET&state=S", "1.1", 303), None)
    assert HideQueryStrings().filter(record)
    assert "SECRET" not in record.getMessage() and "/login/duo/callback?[query hidden]" in record.getMessage()


def test_head_of_the_front_page_answers_and_pages_have_a_favicon(client: Any) -> None:
    head = client.head("/", follow_redirects=False)
    assert head.status_code == 303 and head.headers["location"] == "/login"
    page = client.get("/login").text
    found = re.search(r'<link rel="icon" href="([^"]+)"', page)
    assert found, "no favicon link on the login page"
    icon = client.get(found.group(1))
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_a_csrf_token_planted_before_login_is_dead_after_it(make_client: Any, fake_clock: Any) -> None:
    """An attacker who knows the anonymous form token (planted in the victim's browser)
    cannot use it once the victim has logged in: the token changes with the session id."""
    victim = make_client()
    sign_up(victim)
    log_out(victim)
    planted = csrf_token(victim, "/login")
    log_in(victim)
    assert victim.get("/clientarea").url.path == "/clientarea"
    forged = victim.post("/account/security/setup", data={"csrf_token": planted, "module": "totp"})
    assert forged.status_code == 403
    assert csrf_token(victim, "/account/security") != planted


def test_every_session_rotation_issues_a_new_csrf_token(client: Any, fake_clock: Any) -> None:
    sign_up(client)
    enable_totp(client, fake_clock)
    log_out(client)
    before = csrf_token(client, "/login")
    assert log_in(client).url.path == "/login/2fa"
    after_password = csrf_token(client, "/login/2fa")
    assert after_password != before


def test_anonymous_page_views_write_no_session_rows(client: Any, web: Any, make_client: Any) -> None:
    """Issue 12 point 13: cookieless GETs must not be a cheap way to fill the disk."""
    import sqlalchemy as sa
    from secmod.host.web.accounts import StoredSession

    def rows() -> int:
        with web.accounts_engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(StoredSession.__table__)).scalar_one()

    for _ in range(40):
        for path in ("/login", "/register", "/admin/login", "/"):
            client.cookies.clear()
            assert client.get(path).status_code == 200
    assert rows() == 0
    # The anonymous form token still works: it travels in its own signed cookie.
    browser = make_client()
    sign_up(browser)
    assert rows() == 1
