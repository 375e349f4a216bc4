"""Fixtures for the web host: an app on a temporary secmod.toml, and a browser-like client."""

from __future__ import annotations

import html
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

with warnings.catch_warnings():
    # Starlette asks for the httpx2 package at import time; httpx (the test extra) works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from secmod.hookspecs import Audience
from secmod.host.web import create_app

API_TOKEN = "test-api-token-0123456789"
PASSWORD = "correct horse battery"
CONFIG = """\
# secmod.toml for the web host tests: this comment must survive the admin's edits.
database_url = "sqlite:///secmod.db"

[sealing]
key_file = "secmod.keys"

[web]
api_token = "{api_token}"
session_secret = "test-session-secret"
"""

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'id="setup-secret">([A-Z2-7]+)<')
_BACKUP = re.compile(r'class="code[^"]*"[^>]*>([0-9a-z]{4}(?:[ -][0-9a-z]{4}){3})<')


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "secmod.toml"
    path.write_text(CONFIG.format(api_token=API_TOKEN))
    return path


@pytest.fixture
def app(config_file: Path, fake_clock: Any) -> Iterator[Any]:
    application = create_app(config_file, host_kwargs={"clock": fake_clock})
    yield application
    application.state.web.close()


@pytest.fixture
def web(app: Any) -> Any:
    return app.state.web


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_client(app: Any) -> Iterator[Any]:
    """Another browser (its own cookies) on the same app."""
    clients: list[TestClient] = []

    def factory() -> TestClient:
        clients.append(TestClient(app).__enter__())
        return clients[-1]

    yield factory
    for made in clients:
        made.__exit__(None, None, None)


def text(response: Any) -> str:
    """The page as a person reads it (entities such as &#39; decoded)."""
    return html.unescape(response.text)


def csrf_token(client: TestClient, page: str = "/login") -> str:
    response = client.get(page)
    found = _CSRF.search(response.text)
    assert found, f"no CSRF token on {page} ({response.status_code})"
    return found.group(1)


def post(client: TestClient, path: str, data: dict[str, str] | None = None, *, page: str = "/login",
         follow_redirects: bool = True) -> Any:
    """Submit a form as a browser would: with the token from a page of this session."""
    return client.post(path, data={"csrf_token": csrf_token(client, page), **(data or {})},
                       follow_redirects=follow_redirects)


def sign_up(client: TestClient, email: str = "ada@example.com", password: str = PASSWORD, name: str = "Ada") -> Any:
    """Register, then log in (registering answers the same for taken emails, so it cannot)."""
    response = post(client, "/register", {"email": email, "name": name, "password": password,
                                          "password_confirm": password}, page="/register")
    assert response.status_code == 200 and response.url.path == "/login", response.text
    return log_in(client, email, password)


def log_in(client: TestClient, email: str = "ada@example.com", password: str = PASSWORD, *, admin: bool = False,
           remember: bool = False) -> Any:
    prefix = "/admin" if admin else ""
    data = {"email": email, "password": password, **({"remember": "on"} if remember else {})}
    return post(client, f"{prefix}/login", data, page=f"{prefix}/login")


def log_out(client: TestClient, *, admin: bool = False) -> None:
    prefix = "/admin" if admin else ""
    home = "/admin/2fa" if admin else "/clientarea"
    post(client, f"{prefix}/logout", page=home)


def secret_on(page: str) -> str:
    found = _SECRET.search(page)
    assert found, "no TOTP secret on the setup page"
    return found.group(1)


def backup_codes_on(page: str) -> list[str]:
    return _BACKUP.findall(page)


def totp_code(secret: str, clock: Any, *, offset: float = 0) -> str:
    return pyotp.TOTP(secret).at(clock() + offset)


def enable_totp(client: TestClient, clock: Any, *, admin: bool = False) -> tuple[str, str]:
    """Enrol the logged-in person with TOTP; returns (secret, backup code)."""
    security = "/admin/account/security" if admin else "/account/security"
    setup = post(client, f"{security}/setup", {"module": "totp"}, page=security)
    assert setup.status_code == 200, setup.text
    secret = secret_on(setup.text)
    done = post(client, f"{security}/setup/confirm", {"code": totp_code(secret, clock)}, page=security)
    assert "Two-Factor Authentication is now enabled" in text(done)
    [backup] = backup_codes_on(done.text)
    return secret, backup


@pytest.fixture
def admin_password(web: Any) -> str:
    web.accounts.create(Audience.ADMIN, "root@example.com", PASSWORD, name="Root")
    return PASSWORD


def serve_in_thread(app: Any, listener: socket.socket) -> Callable[[], None]:
    """Run ``app`` with uvicorn on ``listener`` (a bound loopback socket) in a daemon
    thread; wait, bounded, until it answers. Returns the function that stops it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop
