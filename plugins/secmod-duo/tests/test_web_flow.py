"""A person logs in with Duo through the reference web host, the real client and the fake."""

from __future__ import annotations

import base64
import html
import json
import re
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's import-time notice about httpx
    from starlette.testclient import TestClient

from secmod.hookspecs import messages
from secmod.host.web import create_app

PASSWORD = "correct horse battery"
BASE_URL = "http://localhost"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def write_config(tmp_path: Path, duo: dict) -> Path:
    lines = [
        'database_url = "sqlite:///secmod.db"',
        "[loading]", 'allow = ["duo"]',
        "[sealing]", 'key_file = "secmod.keys"',
        "[web]", f'base_url = "{BASE_URL}"', 'session_secret = "test-session-secret"',
        "[modules.duo]", *(f"{key} = {json.dumps(value)}" for key, value in duo.items()),
    ]
    path = tmp_path / "secmod.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def post(client: TestClient, path: str, data: dict, *, page: str, follow: bool = True):
    token = _CSRF.search(client.get(page).text)
    assert token, f"no CSRF token on {page}"
    return client.post(path, data={"csrf_token": token.group(1), **data}, follow_redirects=follow)


def _client_for(tmp_path, fake, **duo):
    # No redirect_url: the host gives Duo its own callback, {web.base_url}/login/duo/callback.
    app = create_app(write_config(tmp_path, fake.settings("", clients=True, **duo)))
    return app, TestClient(app, base_url=BASE_URL)


@pytest.fixture
def web_client(tmp_path, fake):
    app, client = _client_for(tmp_path, fake)
    with client:
        yield client
    app.state.web.close()


def _redirect_uri(duo_url: str) -> str:
    request_jwt = parse_qs(urlsplit(duo_url).query)["request"][0]
    payload = request_jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["redirect_uri"]


def sign_up_and_enable_duo(client: TestClient) -> None:
    post(client, "/register", {"email": "ada@example.com", "name": "Ada", "password": PASSWORD,
                               "password_confirm": PASSWORD}, page="/register")
    post(client, "/login", {"email": "ada@example.com", "password": PASSWORD}, page="/login")
    done = post(client, "/account/security/setup", {"module": "duo"}, page="/account/security")
    assert messages.DUO_SETUP_NEXT_LOGIN in html.unescape(done.text)
    post(client, "/logout", {}, page="/clientarea")


def log_in(client: TestClient):
    return post(client, "/login", {"email": "ada@example.com", "password": PASSWORD}, page="/login", follow=False)


def test_log_in_through_duo(web_client, fake):
    sign_up_and_enable_duo(web_client)
    response = log_in(web_client)
    while response.status_code in (302, 303) and urlsplit(response.headers["location"]).netloc in ("", "localhost"):
        response = web_client.get(response.headers["location"], follow_redirects=False)
    duo_url = response.headers["location"]
    assert duo_url.startswith(f"https://{fake.api_hostname}/oauth/v1/authorize?")
    assert _redirect_uri(duo_url) == f"{BASE_URL}/login/duo/callback"  # built by the host
    back = fake.come_back(duo_url)  # the browser at Duo, approved
    landed = web_client.get("/login/duo/callback", params=back)
    assert landed.status_code == 200
    assert urlsplit(str(landed.url)).path == "/clientarea"
    assert fake.calls["token"] == 1


def test_a_denied_login_stays_out(web_client, fake):
    sign_up_and_enable_duo(web_client)
    response = log_in(web_client)
    while response.status_code in (302, 303) and urlsplit(response.headers["location"]).netloc in ("", "localhost"):
        response = web_client.get(response.headers["location"], follow_redirects=False)
    back = fake.come_back(response.headers["location"])
    fake.token = "deny"
    refused = web_client.get("/login/duo/callback", params=back)
    assert refused.status_code == 401
    assert "The second factor you supplied was incorrect" in html.unescape(refused.text)
    assert web_client.get("/clientarea", follow_redirects=False).status_code in (302, 303)


@pytest.mark.parametrize(("fail_mode", "lands_on"), [("open", "/clientarea"), ("closed", "/login/2fa")])
def test_duo_down_at_login_follows_the_operators_fail_mode(tmp_path, fake, fail_mode, lands_on):
    app, client = _client_for(tmp_path, fake, fail_mode=fail_mode)
    try:
        with client:
            sign_up_and_enable_duo(client)
            fake.health = "drop"
            landed = post(client, "/login", {"email": "ada@example.com", "password": PASSWORD}, page="/login")
            assert urlsplit(str(landed.url)).path == lands_on
            if fail_mode == "closed":
                assert messages.DUO_DISRUPTION in html.unescape(landed.text)
            reasons = [e.reason for e in app.state.web.host.audit_events(limit=50) if e.event == "challenge"]
            assert reasons[0] == ("fail_open" if fail_mode == "open" else "unavailable")
    finally:
        app.state.web.close()


def test_step_up_through_duo_before_removing_it(web_client, fake):
    """Issue 12 point 1: removing Duo asks for the password and a Duo approval first."""
    sign_up_and_enable_duo(web_client)
    response = log_in(web_client)
    while response.status_code in (302, 303) and urlsplit(response.headers["location"]).netloc in ("", "localhost"):
        response = web_client.get(response.headers["location"], follow_redirects=False)
    web_client.get("/login/duo/callback", params=fake.come_back(response.headers["location"]))
    refused = post(web_client, "/account/security/disable", {}, page="/account/security")
    assert refused.status_code == 403
    to_duo = post(web_client, "/account/security/step-up", {"password": PASSWORD}, page="/account/security",
                  follow=False)
    assert to_duo.headers["location"].startswith(f"https://{fake.api_hostname}/oauth/v1/authorize?")
    proved = web_client.get("/login/duo/callback", params=fake.come_back(to_duo.headers["location"]))
    assert proved.status_code == 200 and "you can now" in html.unescape(proved.text).lower()
    removed = post(web_client, "/account/security/disable", {}, page="/account/security")
    assert messages.DISABLED in html.unescape(removed.text)
